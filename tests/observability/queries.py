"""Every PromQL expression the project ships: dashboard panel targets and rule expressions, and the metric names
each one reads."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from portal.config import PROJECT_ROOT

DASHBOARDS = PROJECT_ROOT / "dashboards"
RULES = DASHBOARDS / "prometheus"
RULE_FILES = ("recording.yml", "alerts.yml")
RULE_TESTS = ("recording_test.yml", "alerts_test.yml")
#: What Grafana puts in for the dashboards' variables when every studio is selected.
VARIABLES = {"$tenant": ".*", "${datasource}": "prometheus"}

_FUNCTION_OR_KEYWORD = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "inf", "nan",
}


@dataclass(frozen=True)
class Expression:
    where: str   # "bookings.json: Confirmed bookings" or "alerts.yml: PaidUnconfirmedBookings"
    expr: str
    kind: str    # panel | alert | record


def panel_expressions() -> list[Expression]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                found.append(Expression(f"{path.name}: {panel['title']} [{target['refId']}]", expr, "panel"))
    return found


def rules() -> list[tuple[str, dict]]:
    found = []
    for name in RULE_FILES:
        document = yaml.safe_load((RULES / name).read_text(encoding="utf-8"))
        for group in document["groups"]:
            found += [(name, rule) for rule in group["rules"]]
    return found


def rule_expressions() -> list[Expression]:
    return [Expression(f"{name}: {rule.get('alert') or rule['record']}", rule["expr"],
                       "alert" if "alert" in rule else "record") for name, rule in rules()]


def recorded_names() -> set[str]:
    return {rule["record"] for _, rule in rules() if "record" in rule}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers left once strings, label matchers, grouping clauses,
    durations and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or word.lower() in _FUNCTION_OR_KEYWORD:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent of a number such as 1e-3
        names.add(word)
    return names


def as_bool(expr: str) -> str:
    """An alert expression with its comparisons made `bool`, so it returns its series whether it fires or not."""
    return re.sub(r"\s(>|<|==|!=|>=|<=)\s(?!bool)", r" \1 bool ", expr)


def runbook_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the runbook's headings."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors
