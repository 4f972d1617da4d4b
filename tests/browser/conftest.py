"""Browser fixtures: the real app on PostgreSQL behind a real HTTP server, driven by Debian's Chromium.

Payments go through the Stripe stand-in (`tests/conftest.py`'s `stripe_standin`): holding a slot redirects the
browser to its hosted Checkout page, and its webhooks are delivered to the live server.

Playwright's sync API is used directly (no pytest-playwright). It never downloads a browser: it launches
`chromium_path` from tests/conftest.py. Everything opened here is closed here, because pytest runs with
`filterwarnings = error` and an unclosed socket or browser would fail the run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from tests.conftest import STRIPE_WEBHOOK_SECRET, TEST_SECRET, build_app, empty_tables, stripe_env
from tests.payments.helpers import control
from tests.support.processes import python_env

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
DEFAULT_TIMEOUT_MS = 10_000


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- the app and its server --------------------------------------------------------------------------------

def _not_ready(environ, start_response):
    """Answers until `live_server` hands the socket its app (the app needs the URL before it exists)."""
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"the live app is not attached yet"]


def _answered_whole(app):
    """`app` with each answer read whole and closed before werkzeug writes it.

    werkzeug's server closes an answer only after draining the request's socket, and when the browser has already
    reset the connection (it often drops a favicon or stylesheet request as it moves on) that drain raises first:
    the answer's open file (a static file) is then left to the garbage collector, whose ResourceWarning fails
    whichever test is running at the time. The portal streams nothing, so reading answers whole changes nothing
    else.
    """

    def answer(environ, start_response):
        body = app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    return answer


@pytest.fixture
def live_socket():
    """A server bound to a free port but not serving yet: `(server, base URL)`.

    Bound first so the app can be built knowing its own URL (`PORTAL_BASE_URL`: the Checkout success and cancel
    URLs) and the Stripe stand-in can be told where to deliver webhooks.
    """
    server = make_server("127.0.0.1", 0, _not_ready, threaded=True)
    try:
        yield server, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.server_close()


@pytest.fixture
def live_extra_env():
    """More environment for the live app; a test module overrides it (the payment e2e adds `REDIS_URL`)."""
    return {}


@pytest.fixture
def live_env(live_socket, stripe_standin, live_extra_env) -> dict:
    """The live app's environment (beyond `build_app`'s): payments through the stand-in, links to the server."""
    return {**stripe_env(stripe_standin), "PORTAL_BASE_URL": live_socket[1], **live_extra_env}


@pytest.fixture
def live_app(postgres_database, tmp_path, live_env):
    """The app on PostgreSQL with the demo data and the Stripe stand-in; the tables are emptied afterwards."""
    app = build_app(postgres_database, tmp_path / "instance", env=live_env)
    with app.app_context():
        from portal.services.demo import seed_demo

        seed_demo(utcnow())
    yield app
    empty_tables(app)


@pytest.fixture
def live_server(live_socket, live_app, stripe_standin):
    """Serve `live_app` on the bound socket in a daemon thread, with the stand-in's webhooks pointed at it;
    yields the base URL (no trailing slash)."""
    server, base_url = live_socket
    server.app = _answered_whole(live_app)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        control(stripe_standin, "webhook", {"url": f"{base_url}/webhooks/stripe", "secret": STRIPE_WEBHOOK_SECRET})
        yield base_url
    finally:
        try:
            control(stripe_standin, "reset")  # nothing more is delivered to a server about to stop
        finally:
            server.shutdown()
            thread.join(timeout=5)


# --- the browser ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="package")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def context_options():
    """Options for `browser.new_context`; override in a test module or with indirect parametrization."""
    return {}


@pytest.fixture
def page(browser, live_server, context_options, request):
    """A fresh context and page whose relative URLs resolve against the live server.

    Depends on `live_server` so the browser lets go of its connections before the server stops.
    On failure a full-page screenshot goes to `test-artifacts/`.
    """
    context = browser.new_context(base_url=live_server, **context_options)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        page = context.new_page()
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and not page.is_closed():
            _screenshot(page, request.node.nodeid)
    finally:
        context.close()


def _screenshot(page, nodeid: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    path: Path = ARTIFACTS / f"{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as error:  # a screenshot must never hide the real failure
        print(f"could not save screenshot {path}: {error}")
    else:
        print(f"screenshot saved to {path}")


# --- jobs on Redis and real worker processes ------------------------------------------------------------------

#: Only these are passed on from the test's own environment: the worker's settings come from `worker_env` alone.
PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


@pytest.fixture
def redis_live_env(redis_url):
    """For `live_extra_env`: jobs go to RQ on the tests' Redis database, emptied first (queues, rate-limit
    counters, old workers)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()
    return {"REDIS_URL": redis_url, "JOB_RETRY_DELAYS": "1,1"}


@pytest.fixture
def worker_env(live_app, live_env, postgres_database, tmp_path) -> dict:
    """The worker's environment: the same settings as the live app (see `build_app` and `live_env`)."""
    settings = live_app.config["PORTAL_SETTINGS"]
    assert settings.redis_url and settings.stripe_api_base, "the live app is not on Redis and the stand-in"
    env = {key: os.environ[key] for key in PASS_THROUGH if key in os.environ}
    env.update({
        "PORTAL_ENV": "test",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": postgres_database,
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
        "PYTHONUNBUFFERED": "1",
        **{key: live_env[key] for key in ("REDIS_URL", "JOB_RETRY_DELAYS", "STRIPE_SECRET_KEY", "STRIPE_API_BASE",
                                          "STRIPE_WEBHOOK_SECRETS", "PORTAL_BASE_URL")},
    })
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path, request):
    """Returns a function starting a real RQ worker process (`python -m worker`, with `env` overriding
    `worker_env`) and a function stopping it; every worker is stopped at teardown, its log printed on failure."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(**env) -> subprocess.Popen:
        log_path = tmp_path / f"worker-{len(started) + 1}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "worker", "--sweep-interval", "1"],
                                       env=python_env({**worker_env, **env}), cwd=PROJECT_ROOT, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append((process, log_path))
        return process

    yield start
    report = getattr(request.node, "rep_call", None)
    died = []
    for process, log_path in started:
        early_exit = None if getattr(process, "stopped_on_purpose", False) else process.poll()
        stop_worker(process)
        if early_exit is not None or (report is not None and report.failed):
            print(f"--- worker log ({log_path}, exit code {process.returncode}) ---")
            print(log_path.read_text(errors="replace"))
        if early_exit is not None:
            died.append(early_exit)
    if died:
        pytest.fail(f"a worker exited on its own during the test (codes {died})", pytrace=False)


def stop_worker(process: subprocess.Popen) -> None:
    """SIGTERM (RQ's warm shutdown: the current job finishes first), then SIGKILL after 10 s."""
    process.stopped_on_purpose = True
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def worker(start_worker):
    """One real RQ worker with the live app's settings."""
    return start_worker()
