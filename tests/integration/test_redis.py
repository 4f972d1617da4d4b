"""Readiness and rate limiting against a real Redis, and what happens when Redis is gone."""
from __future__ import annotations

import pytest

from tests.conftest import build_app, csrf_token_from, empty_tables
from tests.factories import PASSWORD, make_studio, make_user

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def app_with_redis(sqlite_database, tmp_path, redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    app = build_app(sqlite_database, tmp_path, env={"REDIS_URL": redis_url})
    yield app
    empty_tables(app)


@pytest.fixture
def app_without_redis(sqlite_database, tmp_path):
    app = build_app(sqlite_database, tmp_path, env={"REDIS_URL": DEAD_REDIS})
    yield app
    empty_tables(app)


def _seed(app):
    with app.app_context():
        studio = make_studio()
        from portal.models import Role

        make_user("student@example.com", roles=[(studio, Role.STUDENT)])


def _login_attempts(client, count, password="wrong-password"):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    return [client.post("/login", data={"email": "student@example.com", "password": password,
                                        "csrf_token": token}).status_code for _ in range(count)]


@pytest.mark.redis
def test_readyz_checks_redis_when_configured(app_with_redis):
    body = app_with_redis.test_client().get("/readyz").get_json()
    assert body["checks"]["redis"] == {"ok": True} and body["status"] == "ok"


def test_readyz_is_503_when_redis_is_down(app_without_redis):
    response = app_without_redis.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True


@pytest.mark.redis
def test_login_limit_is_shared_through_redis(app_with_redis, redis_url):
    import redis

    _seed(app_with_redis)
    first, second = app_with_redis.test_client(), app_with_redis.test_client()
    assert _login_attempts(first, 6) == [422] * 6
    # Another client (another worker process in production) shares the same counters.
    assert _login_attempts(second, 5) == [422, 422, 422, 422, 429]
    assert any(b"LIMITS" in key or b"login" in key for key in redis.Redis.from_url(redis_url).keys("*"))


def test_login_still_works_when_redis_is_down(app_without_redis):
    _seed(app_without_redis)
    client = app_without_redis.test_client()
    assert _login_attempts(client, 1, password=PASSWORD) == [303]
