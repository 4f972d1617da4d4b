"""Typed settings parsed from the environment once, at start-up.

Every key read here is listed in `.env.example`. `load_settings()` validates the whole set and raises
`ConfigError` with every problem at once, so a misconfigured deployment fails before it serves a request.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"
DEV_SECRET_KEY = "dev-only-insecure-secret-key"
_WEAK_SECRETS = {"", "dev", "secret", "changeme", "change-me", "development", DEV_SECRET_KEY}


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"  # development | test | production
    secret_key: str = DEV_SECRET_KEY
    database_url: str = ""
    redis_url: str = ""
    portal_base_url: str = ""  # empty: links are built from the request's host
    stripe_secret_key: str = ""
    stripe_api_base: str = ""
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_sig_tolerance_sec: int = 300
    stripe_replay_window_sec: int = 86400
    prometheus_multiproc_dir: str = ""
    metrics_token: str = ""
    metrics_cache_seconds: int = 15  # how long /metrics reuses the database-derived gauges
    log_format: str = "text"  # text | json (one JSON object per line)
    otel_endpoint: str = ""  # OTLP/HTTP collector base URL; empty: no tracing at all
    otel_service_name: str = "studio-portal"
    mail_from: str = "Studio Portal <no-reply@localhost>"
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    ratelimit_login: str = "10 per minute;100 per hour"
    api_key_rate_limit: str = "120 per minute"  # requests per studio API key (Flask-Limiter syntax)
    trusted_proxies: int = 0  # reverse proxies in front of the app whose X-Forwarded-* headers are believed
    job_retry_delays: tuple[int, ...] = (2, 10, 60, 300)
    webhook_processing_lease_sec: int = 300
    webhook_stuck_after_sec: int = 600
    public_cache_seconds: int = 30  # how long a shared cache (CDN) may serve an anonymous public page unchecked
    worker_threads: int = 2  # jobs one `python -m worker` process runs at once (threads)
    instance_path: str = str(DEFAULT_INSTANCE)
    ops_operator: str = ""  # who `flask ops` repairs are audited as (default: the operating-system user)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def sqlalchemy_url(self) -> str:
        return normalize_database_url(self.database_url) or f"sqlite:///{Path(self.instance_path) / 'portal.sqlite3'}"


def normalize_database_url(url: str) -> str:
    """Accept the usual `postgresql://` / `postgres://` forms and select the psycopg 3 driver."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _int(env: Mapping[str, str], key: str, default: int, errors: list[str]) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{key} must be a whole number, got {raw!r}")
        return default
    if value < 0:
        errors.append(f"{key} must not be negative")
    return value


def _delays(raw: str, errors: list[str]) -> tuple[int, ...]:
    if not raw.strip():
        return Settings.job_retry_delays
    try:
        delays = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        errors.append(f"JOB_RETRY_DELAYS must be comma-separated seconds, got {raw!r}")
        return Settings.job_retry_delays
    if any(d < 0 for d in delays):
        errors.append("JOB_RETRY_DELAYS must not be negative")
    return delays


def _bool(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def load_settings(env: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Parse `env` (default: `os.environ`) into `Settings`; keyword overrides win (tests use them)."""
    env = dict(os.environ if env is None else env)
    errors: list[str] = []
    app_env = env.get("PORTAL_ENV", "development").strip().lower() or "development"
    if app_env not in {"development", "test", "production"}:
        errors.append(f"PORTAL_ENV must be development, test or production, got {app_env!r}")

    secrets = [s.strip() for s in env.get("STRIPE_WEBHOOK_SECRETS", "").split(",") if s.strip()]
    legacy_secret = env.get("STRIPE_WEBHOOK_SECRET", "").strip()
    if legacy_secret and legacy_secret not in secrets:
        secrets.append(legacy_secret)

    # Seconds win over the legacy milliseconds variable (the seeds' precedence).
    replay_sec = _int(env, "STRIPE_REPLAY_WINDOW_SEC", -1, errors)
    if replay_sec < 0:
        replay_ms = _int(env, "WEBHOOK_REPLAY_WINDOW_MS", -1, errors)
        replay_sec = replay_ms // 1000 if replay_ms >= 0 else 86400

    values = dict(
        env=app_env,
        secret_key=env.get("SECRET_KEY", "").strip() or (DEV_SECRET_KEY if app_env != "production" else ""),
        database_url=env.get("DATABASE_URL", "").strip(),
        redis_url=env.get("REDIS_URL", "").strip(),
        portal_base_url=env.get("PORTAL_BASE_URL", "").strip().rstrip("/"),
        stripe_secret_key=env.get("STRIPE_SECRET_KEY", "").strip(),
        stripe_api_base=env.get("STRIPE_API_BASE", "").strip().rstrip("/"),
        stripe_webhook_secrets=tuple(secrets),
        stripe_sig_tolerance_sec=_int(env, "STRIPE_SIG_TOLERANCE_SEC", 300, errors),
        stripe_replay_window_sec=replay_sec,
        prometheus_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR", "").strip(),
        metrics_token=env.get("METRICS_TOKEN", "").strip(),
        metrics_cache_seconds=_int(env, "METRICS_CACHE_SECONDS", 15, errors),
        log_format=env.get("LOG_FORMAT", "").strip().lower() or Settings.log_format,
        otel_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip(),
        otel_service_name=env.get("OTEL_SERVICE_NAME", "").strip() or Settings.otel_service_name,
        mail_from=env.get("MAIL_FROM", "").strip() or Settings.mail_from,
        smtp_host=env.get("SMTP_HOST", "").strip(),
        smtp_port=_int(env, "SMTP_PORT", 25, errors),
        smtp_username=env.get("SMTP_USERNAME", "").strip(),
        smtp_password=env.get("SMTP_PASSWORD", ""),
        smtp_starttls=_bool(env.get("SMTP_STARTTLS", "")),
        ratelimit_login=env.get("RATELIMIT_LOGIN", "").strip() or Settings.ratelimit_login,
        api_key_rate_limit=env.get("API_KEY_RATE_LIMIT", "").strip() or Settings.api_key_rate_limit,
        trusted_proxies=_int(env, "TRUSTED_PROXIES", 0, errors),
        job_retry_delays=_delays(env.get("JOB_RETRY_DELAYS", ""), errors),
        webhook_processing_lease_sec=_int(env, "WEBHOOK_PROCESSING_LEASE_SEC", 300, errors),
        webhook_stuck_after_sec=_int(env, "WEBHOOK_STUCK_AFTER_SEC", 600, errors),
        public_cache_seconds=_int(env, "PUBLIC_CACHE_SECONDS", 30, errors),
        worker_threads=_int(env, "WORKER_THREADS", 2, errors),
        instance_path=env.get("PORTAL_INSTANCE_PATH", "").strip() or str(DEFAULT_INSTANCE),
        ops_operator=env.get("OPS_OPERATOR", "").strip(),
    )
    values.update(overrides)
    settings = Settings(**{f.name: values[f.name] for f in fields(Settings) if f.name in values})
    errors.extend(validate(settings))
    if errors:
        raise ConfigError("invalid configuration: " + "; ".join(errors))
    return settings


def validate(settings: Settings) -> list[str]:
    errors = []
    if settings.log_format not in ("text", "json"):
        errors.append(f"LOG_FORMAT must be text or json, got {settings.log_format!r}")
    if settings.is_production:
        key = settings.secret_key
        if key.lower() in _WEAK_SECRETS or len(key) < 32 or len(set(key)) < 10:
            errors.append("SECRET_KEY must be a random value of at least 32 characters in production")
        if not settings.database_url:
            errors.append("DATABASE_URL is required in production")
        if not settings.portal_base_url.startswith("https://"):
            errors.append("PORTAL_BASE_URL must be the portal's https:// address in production "
                          "(emails and Stripe redirects link to it)")
    url = settings.database_url
    if url and not normalize_database_url(url).startswith(("postgresql+psycopg://", "sqlite:")):
        errors.append("DATABASE_URL must be a postgresql:// or sqlite:// URL")
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        errors.append("REDIS_URL must be a redis:// URL")
    return errors
