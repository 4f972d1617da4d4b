"""The shipped dashboards and rules: promtool accepts and tests them, the committed dashboards are what the code
builds, every alert explains itself and links a runbook section, and every metric they name is served."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from portal.config import PROJECT_ROOT
from tests.conftest import require
from tests.observability.queries import (
    DASHBOARDS,
    RULE_FILES,
    RULE_TESTS,
    RULES,
    metric_names,
    panel_expressions,
    recorded_names,
    rule_expressions,
    rules,
    runbook_anchors,
)
from tests.observability.scrape import scrape

RUNBOOK = PROJECT_ROOT / "docs" / "RUNBOOK.md"


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path is None:
        require("promtool", "not on PATH (Debian package prometheus)")
    return path


def _run(*args):
    return subprocess.run(args, cwd=RULES, capture_output=True, text=True, timeout=300)


def test_promtool_accepts_the_rule_files(promtool):
    result = _run(promtool, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_rule_tests_pass(promtool):
    result = _run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_config_example_is_valid(promtool):
    result = _run(promtool, "check", "config", "scrape.example.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet():
    tests = (RULES / "alerts_test.yml").read_text(encoding="utf-8")
    import yaml

    cases = [case for group in yaml.safe_load(tests)["tests"] for case in group.get("alert_rule_test", [])]
    for _, rule in rules():
        if "alert" not in rule:
            continue
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} is never shown firing"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} is never shown quiet"


def test_the_committed_dashboards_are_what_the_code_builds():
    # grafana-foundation-sdk is a dev dependency (`pip install -e '.[dev]'`): without it this fails, never skips.
    result = subprocess.run([sys.executable, str(DASHBOARDS / "generate.py"), "--check"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_alert_explains_itself_and_links_a_runbook_section():
    anchors = runbook_anchors(RUNBOOK)
    alerts = [rule for _, rule in rules() if "alert" in rule]
    assert len({rule["alert"] for rule in alerts}) >= 20
    for rule in alerts:
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/RUNBOOK.md" and anchor in anchors, f"{rule['alert']}: {annotations['runbook_url']}"


def test_every_alert_the_runbook_names_exists_and_the_runbook_names_every_alert():
    text = RUNBOOK.read_text(encoding="utf-8")
    named = set(re.findall(r"alert\s+`(\w+)`", text))
    shipped = {rule["alert"] for _, rule in rules() if "alert" in rule}
    assert len(named) >= 12 and named - shipped == set(), "the runbook names alerts that are not shipped"
    assert {name for name in shipped if f"`{name}`" not in text} == set(), "alerts the runbook does not mention"


def test_each_panel_and_rule_names_only_metrics_that_are_served(client):
    served = scrape(client).names() | recorded_names()
    expressions = panel_expressions() + rule_expressions()
    assert len(panel_expressions()) >= 50
    unknown = {(e.where, name) for e in expressions for name in metric_names(e.expr) if name not in served}
    assert unknown == set()


def test_the_metric_name_reader_finds_names_and_only_names():
    expr = ('histogram_quantile(0.95, sum by (le, endpoint) (rate(http_request_duration_seconds_bucket'
            '{status=~"5..", endpoint!="x"}[5m] offset 1h))) / on (tenant) group_left max(up) > 1e-3 '
            'and slo:webhook_errors:ratio_rate5m > bool 0.0144 or vector(0)')
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up", "slo:webhook_errors:ratio_rate5m"}
