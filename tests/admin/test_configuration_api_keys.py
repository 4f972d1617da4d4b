"""API keys: created with a name and scopes, the secret shown once and stored only as a digest, revocable (then
401), last use shown, rate-limited per key, and acting only on their own studio."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select, text

from portal.extensions import db
from portal.models import ApiKey
from tests.admin.configuration_helpers import audit_rows, post_action, version_rows
from tests.admin.conftest import OTHER, STUDIO, bearer

KEYS = f"{STUDIO}/admin/api-keys"


def _create(admin, name="pricing assistant", scopes=("config:read", "config:propose")):
    return admin.post(KEYS, data={"csrf_token": admin.csrf, "name": name, "scopes": list(scopes)})


def _secret_of(response) -> str:
    return re.search(r'id="new-key" class="secret" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def _every_stored_text(app) -> str:
    """Every value of every table, as text: what someone reading the database would see."""
    with app.app_context():
        dumped = []
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(text(f"SELECT * FROM {table.name}")):
                dumped.append(" ".join(str(value) for value in row))
        db.session.remove()
        return "\n".join(dumped)


def test_the_secret_is_shown_once_and_never_stored(app, admin, world):
    response = _create(admin)
    assert response.status_code == 201
    html = response.get_data(as_text=True)
    secret = _secret_of(response)
    assert re.fullmatch(r"sp_[0-9a-f]{12}_[A-Za-z0-9_-]{40,}", secret)
    assert "This is the only time it is shown" in html
    assert response.headers["Cache-Control"] == "private, no-store"
    _, prefix, tail = secret.split("_", 2)
    stored = _every_stored_text(app)
    assert tail not in stored and secret not in stored
    assert prefix in stored  # the public part finds the row
    listing = admin.get(KEYS).get_data(as_text=True)
    assert tail not in listing and f"sp_{prefix}_…" in listing and "pricing assistant" in listing
    assert "config:propose" in listing
    assert app.test_client().get(f"{STUDIO}/api/admin/config/versions", headers=bearer(secret)).status_code == 200
    entry = audit_rows(app, world.a.id)[-1]
    assert (entry.action, entry.after["name"], entry.after["prefix"]) == ("api_key.create", "pricing assistant",
                                                                          prefix)
    assert tail not in str(entry.after)


def test_a_key_needs_a_name_and_a_known_scope(app, admin, world):
    no_scope = _create(admin, scopes=())
    assert no_scope.status_code == 422
    html = no_scope.get_data(as_text=True)
    assert 'id="scopes-error"' in html and 'value="pricing assistant"' in html
    unknown = _create(admin, scopes=("config:everything",))
    assert unknown.status_code == 422
    no_name = _create(admin, name="  ")
    assert no_name.status_code == 422 and 'id="name-error"' in no_name.get_data(as_text=True)
    assert 'value="config:read" checked' in no_name.get_data(as_text=True)  # what was ticked stays ticked
    with app.app_context():
        assert db.session.execute(select(ApiKey.id).execution_options(all_tenants=True)).first() is None
        db.session.remove()


def test_a_revoked_key_gets_401(app, admin, world):
    secret = _secret_of(_create(admin))
    client = app.test_client()
    assert client.get(f"{STUDIO}/api/admin/config/versions", headers=bearer(secret)).status_code == 200
    confirm = admin.get(f"{KEYS}/1/revoke").get_data(as_text=True)
    assert "Revoke the key “pricing assistant”?" in confirm and "cannot be undone" in confirm
    unconfirmed = post_action(admin, "/api-keys/1/revoke")
    assert unconfirmed.status_code == 422
    assert client.get(f"{STUDIO}/api/admin/config/versions", headers=bearer(secret)).status_code == 200
    response = post_action(admin, "/api-keys/1/revoke", confirm="yes", note="Leaked in a log")
    assert response.status_code == 303
    refused = client.get(f"{STUDIO}/api/admin/config/versions", headers=bearer(secret))
    assert refused.status_code == 401 and refused.get_json()["error"] == "unauthenticated"
    assert client.post(f"{STUDIO}/api/admin/config/proposals", headers=bearer(secret),
                       json={"config": {}}).status_code == 401
    listing = admin.get(KEYS).get_data(as_text=True)
    assert 'id="key-1" class="revoked"' in listing and "revoked" in listing
    assert post_action(admin, "/api-keys/1/revoke", confirm="yes").status_code == 303  # already revoked: no change
    revokes = [r for r in audit_rows(app, world.a.id) if r.action == "api_key.revoke"]
    assert len(revokes) == 1 and revokes[0].note == "Leaked in a log"


def test_the_last_use_is_shown(app, admin, world):
    secret = _secret_of(_create(admin))
    row = admin.get(KEYS).get_data(as_text=True)
    assert re.search(r'<td class="last-used">never</td>', row)
    app.test_client().get(f"{STUDIO}/api/admin/config/versions", headers=bearer(secret))
    with app.app_context():
        used = db.session.scalar(select(ApiKey.last_used_at).execution_options(all_tenants=True))
        db.session.remove()
    assert used is not None
    from portal import formatting

    with app.test_request_context():
        shown = formatting.when(used, tz=world.a.tz, locale="en_US")
    assert f'<td class="last-used">{shown}</td>' in admin.get(KEYS).get_data(as_text=True)


class TestRateLimit:
    @pytest.fixture
    def app_env(self, stripe_standin):
        from tests.conftest import stripe_env

        return {**stripe_env(stripe_standin), "API_KEY_RATE_LIMIT": "3 per minute"}

    @pytest.mark.usefixtures("world")
    def test_keys_are_rate_limited_each_on_its_own(self, app, make_api_key):
        first, second = bearer(make_api_key(["config:read"], name="one")), bearer(make_api_key(["config:read"]))
        client = app.test_client()
        answers = [client.get(f"{STUDIO}/api/admin/{path}", headers=first).status_code
                   for path in ("config/versions", "audit", "config/proposals", "config/versions/1")]
        assert answers == [200, 200, 200, 429]  # one budget per key across the API
        limited = client.get(f"{STUDIO}/api/admin/config/versions", headers=first)
        assert limited.get_json()["error"] == "rate_limited" and int(limited.headers["Retry-After"]) > 0
        assert client.get(f"{STUDIO}/api/admin/config/versions", headers=second).status_code == 200


def test_a_key_acts_only_on_its_own_studio(app, world, make_api_key):
    north = bearer(make_api_key(["config:read", "config:publish", "config:propose"], studio="b"))
    client = app.test_client()
    for method, path in (("get", "/config/versions"), ("get", "/audit"), ("post", "/config/drafts"),
                         ("post", "/config/proposals"), ("post", "/config/versions/1/rollback")):
        answer = getattr(client, method)(f"{STUDIO}/api/admin{path}", headers=north,
                                         **({"json": {"config": {"branding": {"font": "mono"}}}}
                                            if method == "post" else {}))
        assert answer.status_code == 403 and "another studio" in answer.get_json()["detail"], path
    assert version_rows(app, world.a.id) == {1: "published"}
    own = client.post(f"{OTHER}/api/admin/config/drafts", headers=north, json={"config": {"branding": {}}})
    assert own.status_code == 201
    assert version_rows(app, world.b.id) == {1: "published", 2: "draft"}
