"""Settings parsing and start-up validation."""
from __future__ import annotations

import pytest

from portal.config import ConfigError, load_settings

STRONG = "k3Jq9vX2mZ8pL4rT7wY1nB6cF5hD0sGa"
BASE = {"PORTAL_BASE_URL": "https://book.example.com"}


def test_development_defaults_use_the_sqlite_file(tmp_path):
    settings = load_settings(env={"PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path}/portal.sqlite3"
    assert settings.stripe_sig_tolerance_sec == 300 and settings.stripe_replay_window_sec == 86400


@pytest.mark.parametrize("key", ["", "dev", "changeme", "short-but-random-9", "a" * 40])
def test_production_refuses_weak_secret_keys(key):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": key, "DATABASE_URL": "postgresql://x@h/db",
                           **BASE})


def test_production_accepts_a_strong_key_and_needs_a_database():
    settings = load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": STRONG, **BASE,
                                  "DATABASE_URL": "postgresql://u:p@db:5432/portal"})
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/portal"
    with pytest.raises(ConfigError, match="DATABASE_URL is required"):
        load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": STRONG, **BASE})
    with pytest.raises(ConfigError, match="PORTAL_BASE_URL"):
        load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": STRONG, "DATABASE_URL": "postgresql://x@h/d"})


def test_postgres_scheme_alias_and_bad_urls():
    assert load_settings(env={"DATABASE_URL": "postgres://u@h/d"}).sqlalchemy_url == "postgresql+psycopg://u@h/d"
    with pytest.raises(ConfigError) as problems:
        load_settings(env={"DATABASE_URL": "mysql://u@h/d", "REDIS_URL": "http://x", "STRIPE_SIG_TOLERANCE_SEC": "abc",
                           "PORTAL_ENV": "staging"})
    message = str(problems.value)
    for expected in ("DATABASE_URL", "REDIS_URL", "STRIPE_SIG_TOLERANCE_SEC", "PORTAL_ENV"):
        assert expected in message  # every problem is reported at once


def test_webhook_secrets_and_replay_window_precedence():
    settings = load_settings(env={"STRIPE_WEBHOOK_SECRETS": "whsec_new, whsec_old",
                                  "STRIPE_WEBHOOK_SECRET": "whsec_legacy", "WEBHOOK_REPLAY_WINDOW_MS": "5000"})
    assert settings.stripe_webhook_secrets == ("whsec_new", "whsec_old", "whsec_legacy")
    assert settings.stripe_replay_window_sec == 5
    both = load_settings(env={"STRIPE_REPLAY_WINDOW_SEC": "60", "WEBHOOK_REPLAY_WINDOW_MS": "5000"})
    assert both.stripe_replay_window_sec == 60


def test_production_app_sets_secure_cookies(tmp_path):
    from portal import create_app

    app = create_app(load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": STRONG, **BASE,
                                        "DATABASE_URL": "sqlite:///" + str(tmp_path / "p.sqlite3")}))
    assert app.config["SESSION_COOKIE_SECURE"] is True and app.config["REMEMBER_COOKIE_SECURE"] is True
    with app.app_context():
        from portal.extensions import db

        db.engine.dispose()


def test_seed_command_refuses_production(tmp_path):
    from portal import create_app

    app = create_app(load_settings(env={"PORTAL_ENV": "production", "SECRET_KEY": STRONG, **BASE,
                                        "DATABASE_URL": "sqlite:///" + str(tmp_path / "p.sqlite3")}))
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code != 0 and "production" in result.output
    with app.app_context():
        from portal.extensions import db

        db.engine.dispose()


def test_every_setting_read_is_documented_in_env_example():
    import re

    from portal.config import PROJECT_ROOT

    source = (PROJECT_ROOT / "portal" / "config.py").read_text()
    read = set(re.findall(r'env\.get\("([A-Z_]+)"', source)) | set(re.findall(r'_int\(env, "([A-Z_]+)"', source))
    documented = set(re.findall(r"^([A-Z_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.M))
    assert read and read <= documented, read - documented
