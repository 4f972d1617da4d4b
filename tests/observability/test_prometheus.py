"""A real Prometheus scrapes the real app (gunicorn, two workers, multiprocess metrics) while traffic is driven
through it; every dashboard panel query and every rule expression then evaluates there without error and returns
series, and the recording rules record."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import timedelta

import pytest
import yaml

from portal import tenancy
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import db
from portal.models import Role, Studio, User
from portal.payments import get_provider
from portal.services import bookings, checkout
from stripe_standin import sign
from tests.conftest import STRIPE_WEBHOOK_SECRET, TEST_SECRET, build_app, empty_tables, require, stripe_env
from tests.factories import make_studio, make_user
from tests.observability.queries import RULE_FILES, RULES, as_bool, panel_expressions, recorded_names, rules
from tests.payments.helpers import events, pay
from tests.support.processes import python_env

#: Queries that are empty until something that did not happen here happens, and why.
EMPTY_UNTIL = {
    "http.json: Server errors (5xx) by route [A]": "a server error",
    "alerts.yml: RefundSpike": "a day of history (it compares with the day before, offset 15 minutes)",
}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(what: str, check, seconds: float = 60, log=None):
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds}s" + (f":\n{log.read_text()}" if log else ""))
        time.sleep(0.3)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post_webhook(base: str, body: bytes, header: str) -> int:
    request = urllib.request.Request(f"{base}/webhooks/stripe", data=body, method="POST",
                                     headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def prometheus_binary():
    path = shutil.which("prometheus")
    if path is None:
        require("Prometheus", "no prometheus on PATH (Debian package prometheus)")
    return path


@pytest.fixture
def portal(tmp_path, stripe_standin):
    """The app under gunicorn with two workers on a SQLite file, jobs in-process, multiprocess metrics."""
    database = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    port = _free_port()
    app = build_app(database, tmp_path, env=stripe_env(stripe_standin))
    with app.app_context():
        studio = make_studio(buffer_minutes=0, booking_horizon_days=60, hours=("00:00", "23:30"))
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        studio_id = studio.id
    env = python_env({
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        **stripe_env(stripe_standin), "PORTAL_ENV": "test", "SECRET_KEY": TEST_SECRET, "DATABASE_URL": database,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "PORTAL_INSTANCE_PATH": str(tmp_path),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "METRICS_CACHE_SECONDS": "0"})
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py"),
                                "--control-socket", str(tmp_path / "gunicorn.ctl"), "portal:create_app()"],
                               cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("gunicorn answering", lambda: _get(f"{base}/healthz")[0] == 200, log=log)
        yield {"base": base, "port": port, "app": app, "studio_id": studio_id}
    finally:
        _stop(web)
        empty_tables(app)


@pytest.fixture
def prometheus(tmp_path, prometheus_binary, portal):
    """Prometheus scraping the portal every second, with the shipped rules evaluated every second."""
    port = _free_port()
    folder = tmp_path / "prometheus"
    folder.mkdir()
    for name in RULE_FILES:
        shutil.copy(RULES / name, folder / name)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": list(RULE_FILES),
              "scrape_configs": [{"job_name": "studio-portal-web",
                                  "static_configs": [{"targets": [f"127.0.0.1:{portal['port']}"]}]}]}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = tmp_path / "prometheus.log"
    with open(log, "w") as out:
        server = subprocess.Popen([prometheus_binary, f"--config.file={folder / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={folder / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"],
                                  cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("Prometheus ready", lambda: _get(f"{base}/-/ready")[0] == 200, log=log)
        yield base
    finally:
        _stop(server)


def _query(base: str, expr: str) -> dict:
    status, body = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return {"http": status, **json.loads(body)}


def _drive(portal, stripe_standin) -> None:
    """Pages, refusals, webhooks with every kind of bad signature, and a lesson paid through Checkout whose
    webhook the portal processes."""
    base, app = portal["base"], portal["app"]
    for path in ("/s/melody-and-meter/", "/s/melody-and-meter/api/packages", "/login", "/s/no-such-studio/"):
        _get(base + path)
    body = json.dumps({"id": "evt_prom_1", "object": "event", "type": "customer.created",
                       "created": int(time.time()), "data": {"object": {"id": "cus_1"}}}).encode()
    assert _post_webhook(base, body, sign(body, STRIPE_WEBHOOK_SECRET)) == 200
    assert _post_webhook(base, body, sign(body, "whsec_wrong")) == 400
    assert _post_webhook(base, body, sign(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 3600)) == 400
    assert _post_webhook(base, body, "t=nonsense") == 400

    with app.app_context(), tenancy.scoped(portal["studio_id"]):
        studio = db.session.get(Studio, portal["studio_id"])
        student = db.session.scalar(db.select(User).where(User.email == "student@example.com"))
        start = (utcnow() + timedelta(days=2)).astimezone(studio.tz).replace(hour=10, minute=0, second=0,
                                                                             microsecond=0)
        hold = bookings.hold_slot(studio=studio, student=student, package_slug="lesson-60", resource_slug="piano",
                                  start_raw=start.isoformat(), now=utcnow())
        payment = checkout.start_checkout(booking=hold, student=student, provider=get_provider(), now=utcnow(),
                                          success_url="http://portal.test/ok", cancel_url="http://portal.test/x")
        session_id = payment.checkout_session_id
    pay(stripe_standin, session_id)
    for event in events(stripe_standin, ("checkout.session.completed",)):
        raw = json.dumps(event).encode()
        assert _post_webhook(base, raw, sign(raw, STRIPE_WEBHOOK_SECRET)) == 200

    def confirmed():
        status, text = _get(f"{base}/metrics")
        return status == 200 and "checkout_sessions_completed_total 1.0" in text.decode()

    _wait("the paid lesson confirmed by the portal's job", confirmed)


def test_every_dashboard_query_and_rule_evaluates_on_a_real_prometheus(portal, prometheus, stripe_standin):
    base = prometheus
    _wait("a first scrape", lambda: _query(base, 'up{job="studio-portal-web"} == 1')["data"]["result"])
    _drive(portal, stripe_standin)
    scrapes_after_traffic = time.monotonic()
    _wait("scrapes after the traffic",
          lambda: time.monotonic() - scrapes_after_traffic > 4
          and _query(base, "checkout_sessions_completed_total")["data"]["result"])

    # The app's own answers are what Prometheus stored.
    paid = _query(base, 'melody_bookings_confirmed{tenant="melody-and-meter",resource_id="piano"}')
    assert [float(s["value"][1]) for s in paid["data"]["result"]] == [1.0]
    invalid = _query(base, 'melody_webhook_error_total{code="signature_invalid"}')
    assert [float(s["value"][1]) for s in invalid["data"]["result"]] == [1.0]

    failures, empty = [], []
    expressions = [(e.where, e.expr) for e in panel_expressions()]
    expressions += [(f"{name}: {rule['alert']}", as_bool(rule["expr"])) for name, rule in rules() if "alert" in rule]
    expressions += [(f"recorded: {name}", name) for name in sorted(recorded_names())]
    assert len(expressions) > 100
    for where, expr in expressions:
        answer = _query(base, expr)
        if answer["http"] != 200 or answer.get("status") != "success":
            failures.append((where, expr, answer.get("error")))
        elif not answer["data"]["result"] and where not in EMPTY_UNTIL:
            empty.append((where, expr))
    assert failures == []
    assert empty == []

    rule_health = json.loads(_get(f"{base}/api/v1/rules")[1])["data"]["groups"]
    unhealthy = [(r.get("name"), r.get("lastError")) for g in rule_health for r in g["rules"]
                 if r.get("health") == "err"]
    assert unhealthy == []
    assert sum(len(g["rules"]) for g in rule_health) == len(rules())
