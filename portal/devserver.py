"""`make run`: the embedded default.

Starts the Stripe stand-in on loopback (unless `STRIPE_SECRET_KEY` is set), applies migrations, seeds the demo
data, runs jobs and sweeps in-process (unless `REDIS_URL` is set), and serves on 127.0.0.1:$PORT.
"""
from __future__ import annotations

import importlib
import os
import secrets
import threading

from flask_migrate import upgrade

from portal import create_app, dispatch
from portal.clock import utcnow
from portal.config import load_settings
from portal.services.demo import seed_demo

SWEEP_INTERVAL_SEC = 30


def _with_stripe_standin(env: dict, port: int):
    """Start the stand-in and point the portal at it; its webhooks are signed with the portal's active secret.
    (The stand-in is a separate top-level package; the portal itself talks to it only through the SDK.)"""
    start_server = importlib.import_module("stripe_standin").start_server

    configured = [s.strip() for s in env.get("STRIPE_WEBHOOK_SECRETS", "").split(",") if s.strip()]
    secret = (configured or [env.get("STRIPE_WEBHOOK_SECRET", "").strip()])[0] or "whsec_" + secrets.token_hex(24)
    server, base_url = start_server(port=int(env.get("STANDIN_PORT", "0") or 0),
                                    webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe", webhook_secret=secret)
    env.update(STRIPE_SECRET_KEY="sk_test_standin", STRIPE_API_BASE=base_url)
    if not configured:
        env["STRIPE_WEBHOOK_SECRETS"] = secret
    return server, base_url


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    env = dict(os.environ)
    env.setdefault("PORTAL_BASE_URL", f"http://127.0.0.1:{port}")  # absolute links in emails sent by jobs
    standin = None
    if not env.get("STRIPE_SECRET_KEY"):
        standin, base_url = _with_stripe_standin(env, port)
        print(f" * Stripe stand-in: {base_url}")
    app = create_app(load_settings(env))
    if app.config["PORTAL_SETTINGS"].is_production:
        raise SystemExit("make run is the development server; use gunicorn in production")
    with app.app_context():
        upgrade()
        seed_demo(utcnow())
    stop = threading.Event()
    if not app.config["PORTAL_SETTINGS"].redis_url:
        dispatch.start_sweeper(app, SWEEP_INTERVAL_SEC, stop)
    print(f" * Studio Portal: http://127.0.0.1:{port}/s/melody-and-meter/  (student@example.com / demo-password-1)")
    try:
        app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
    finally:
        stop.set()
        if standin is not None:
            standin.shutdown()


if __name__ == "__main__":
    main()
