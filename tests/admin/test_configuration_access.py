"""Who may use the configuration, API key and audit log pages and their admin API endpoints: every route, every
kind of outsider, and nothing changes when they are refused."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import ApiKey, AuditEntry, ConfigProposal, ConfigVersion, Studio
from portal.services import api_keys, configuration
from portal.services.configuration import proposals
from tests.admin.configuration_helpers import ADMIN
from tests.admin.conftest import OTHER, STUDIO, bearer, log_in
from tests.conftest import csrf_token_from


@pytest.fixture
def things(app, world):
    """A draft (version 2), a pending proposal and an API key of studio A."""
    with app.app_context(), tenancy.scoped(world.a.id):
        studio = db.session.get(Studio, world.a.id)
        draft = configuration.create_draft(studio, {"branding": {"font": "serif"}}, actor=ADMIN, note="d",
                                           now=utcnow()).version
        proposal = proposals.propose(studio, {"policy": {"max_reschedules": 3}}, actor=ADMIN, api_key_id=None,
                                     note="p", now=utcnow()).id
        key = api_keys.create(studio, name="k", scopes=["config:read"], actor=ADMIN, now=utcnow())[0].id
        db.session.remove()
    return {"draft": draft, "proposal": proposal, "key": key}


PAGES = [
    "/admin/configuration",
    "/admin/configuration/edit",
    "/admin/configuration/versions/1",
    "/admin/configuration/versions/{draft}/edit",
    "/admin/configuration/diff?from=1&to={draft}",
    "/admin/configuration/proposals/{proposal}",
    "/admin/api-keys",
    "/admin/api-keys/{key}/revoke",
    "/admin/audit",
]
ACTIONS = [
    "/admin/configuration/drafts",
    "/admin/configuration/versions/{draft}/edit",
    "/admin/configuration/versions/{draft}/preview",
    "/admin/configuration/versions/{draft}/publish",
    "/admin/configuration/versions/{draft}/discard",
    "/admin/configuration/versions/1/rollback",
    "/admin/configuration/proposals/{proposal}/approve",
    "/admin/configuration/proposals/{proposal}/reject",
    "/admin/api-keys",
    "/admin/api-keys/{key}/revoke",
]
OUTSIDERS = {"student": "student@example.com", "other studio's admin": "north-admin@example.com",
             "ops": "ops@example.com"}


def _state(app, world) -> tuple:
    """Everything a refused request must leave as it was."""
    with app.app_context(), tenancy.all_tenants():
        state = (db.session.scalar(select(func.count(AuditEntry.id))),
                 tuple(db.session.execute(select(ConfigVersion.version, ConfigVersion.state, ConfigVersion.updated_at)
                                          .order_by(ConfigVersion.id)).all()),
                 tuple(db.session.execute(select(ConfigProposal.id, ConfigProposal.state)).all()),
                 tuple(db.session.execute(select(ApiKey.id, ApiKey.revoked_at)).all()),
                 db.session.get(Studio, world.a.id).config_version)
        db.session.remove()
        return state


def _client(app, email: str | None):
    client = app.test_client()
    client.csrf = log_in(client, email) if email else csrf_token_from(client.get("/login").get_data(as_text=True))
    return client


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_for_the_studios_admins_and_ops_may_look(app, world, things, path):
    path = STUDIO + path.format(**things)
    anonymous = _client(app, None).get(path)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    for who, email in OUTSIDERS.items():
        expected = 200 if who == "ops" else 403
        assert _client(app, email).get(path).status_code == expected, who
    admin = _client(app, "admin@example.com").get(path)
    assert admin.status_code == 200
    assert admin.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_are_for_the_studios_admins_only(app, world, things, path):
    path = STUDIO + path.format(**things)
    before = _state(app, world)
    form = {"note": "outsider", "confirm": "yes", "name": "x", "scopes": "config:read", "then": "publish"}
    anonymous = _client(app, None)
    response = anonymous.post(path, data={**form, "csrf_token": anonymous.csrf})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    for who, email in OUTSIDERS.items():
        client = _client(app, email)
        assert client.post(path, data={**form, "csrf_token": client.csrf}).status_code == 403, who
    assert _state(app, world) == before


def test_the_other_studios_admin_cannot_reach_studio_a_through_their_own_address(app, world, things):
    client = _client(app, "north-admin@example.com")
    assert client.get(f"{OTHER}/admin/configuration/versions/{things['draft']}").status_code == 404
    assert client.get(f"{OTHER}/admin/configuration/proposals/{things['proposal']}").status_code == 404
    assert client.get(f"{OTHER}/admin/api-keys/{things['key']}/revoke").status_code == 404
    before = _state(app, world)
    response = client.post(f"{OTHER}/admin/api-keys/{things['key']}/revoke",
                           data={"csrf_token": client.csrf, "confirm": "yes"})
    assert response.status_code == 404
    assert _state(app, world) == before


API = [
    ("GET", "/api/admin/config/versions", "config:read"),
    ("GET", "/api/admin/config/versions/1", "config:read"),
    ("GET", "/api/admin/config/diff?from=1&to={draft}", "config:read"),
    ("GET", "/api/admin/config/proposals", "config:read"),
    ("GET", "/api/admin/config/proposals/{proposal}", "config:read"),
    ("GET", "/api/admin/audit", "config:read"),
    ("POST", "/api/admin/config/drafts", "config:publish"),
    ("POST", "/api/admin/config/versions/{draft}/publish", "config:publish"),
    ("POST", "/api/admin/config/versions/1/rollback", "config:publish"),
    ("POST", "/api/admin/config/proposals", "config:propose"),
]
BODY = {"config": {"branding": {"font": "mono"}}, "note": "outsider"}


@pytest.mark.parametrize("method,path,needed", API, ids=[f"{m} {p}" for m, p, _ in API])
def test_admin_api_needs_this_studios_admin_or_a_key_with_the_scope(app, world, things, make_api_key, method, path,
                                                                     needed):
    path = STUDIO + path.format(**things)
    before = _state(app, world)

    def call(client, headers=None):
        if method == "GET":
            return client.get(path, headers=headers or {})
        return client.post(path, json=BODY, headers={"X-CSRFToken": getattr(client, "csrf", ""), **(headers or {})})

    anonymous = call(app.test_client())
    assert anonymous.status_code == 401 and anonymous.get_json()["error"] == "unauthenticated"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    for who, email in OUTSIDERS.items():
        response = call(_client(app, email))
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden", who
    other_key = make_api_key(api_keys.SCOPES, studio="b", name="north key")
    response = call(app.test_client(), bearer(other_key))
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    without_scope = make_api_key([s for s in api_keys.SCOPES if s != needed], name="narrow key")
    response = call(app.test_client(), bearer(without_scope))
    assert response.status_code == 403 and response.get_json()["error"] == "scope_missing"
    assert response.get_json()["detail"] == f"This API key lacks the {needed} scope."
    assert call(app.test_client(), bearer("sp_nothere_secret")).status_code == 401
    assert call(app.test_client(), {"Authorization": "Basic YWRtaW46eA=="}).status_code == 401
    after = _state(app, world)
    assert (after[1], after[2], after[4]) == (before[1], before[2], before[4])  # keys were made here, nothing else
    allowed = call(app.test_client(), bearer(make_api_key([needed], name="right key")))
    assert allowed.status_code in (200, 201), allowed.get_json()


@pytest.mark.parametrize("number", ["2147483648", "9223372036854775808", "1" + "0" * 40])
def test_numbers_too_large_to_be_an_id_are_not_found(app, admin, world, make_api_key, number):
    key = bearer(make_api_key(["config:read", "config:publish"]))
    client = app.test_client()
    for response in (admin.get(f"{STUDIO}/admin/configuration/versions/{number}"),
                     admin.get(f"{STUDIO}/admin/configuration/proposals/{number}"),
                     admin.get(f"{STUDIO}/admin/api-keys/{number}/revoke"),
                     client.get(f"{STUDIO}/theme/{number}.css"),
                     client.get(f"{STUDIO}/api/admin/config/versions/{number}", headers=key),
                     client.post(f"{STUDIO}/api/admin/config/versions/{number}/rollback", headers=key),
                     client.get(f"{STUDIO}/api/admin/config/proposals/{number}", headers=key)):
        assert response.status_code == 404, response.request.path
