"""`make run`: the embedded default. Applies migrations, seeds the demo data and serves on loopback."""
from __future__ import annotations

import os

from flask_migrate import upgrade

from portal import create_app
from portal.clock import utcnow
from portal.services.demo import seed_demo


def main() -> None:
    app = create_app()
    settings = app.config["PORTAL_SETTINGS"]
    if settings.is_production:
        raise SystemExit("make run is the development server; use gunicorn in production")
    with app.app_context():
        upgrade()
        seed_demo(utcnow())
    port = int(os.environ.get("PORT", "5000"))
    print(f" * Studio Portal: http://127.0.0.1:{port}/s/melody-and-meter/  (student@example.com / demo-password-1)")
    app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
