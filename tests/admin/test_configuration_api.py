"""The admin JSON API for configuration and the audit log (SPEC "Studio admin"), and that its answers match
docs/openapi.yaml."""
from __future__ import annotations

from datetime import timedelta

import pytest

from portal.clock import utcnow
from tests.admin.configuration_helpers import audit_rows, new_draft, publish, published, version_rows
from tests.admin.conftest import STUDIO, bearer
from tests.web.test_openapi import SPEC, _check

API = f"{STUDIO}/api/admin"


def _schema(path: str, method: str, status: str) -> dict:
    return SPEC["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]


@pytest.fixture
def key(make_api_key):
    return bearer(make_api_key(["config:read", "config:publish", "config:propose"], name="assistant"))


def test_versions_list_and_one_version(app, world, key):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}}, note="Serif")
    client = app.test_client()
    body = client.get(f"{API}/config/versions", headers=key).get_json()
    _check(body, _schema("/s/{studio}/api/admin/config/versions", "get", "200"))
    assert [(v["version"], v["state"], v["author"], v["note"]) for v in body["versions"]] == [
        (draft, "draft", "admin@example.com", "Serif"), (1, "published", "system", "First version.")]
    one = client.get(f"{API}/config/versions/{draft}", headers=key).get_json()
    _check(one, _schema("/s/{studio}/api/admin/config/versions/{version}", "get", "200"))
    assert (one["version"], one["state"], one["config"]["branding"]["font"]) == (draft, "draft", "serif")
    missing = client.get(f"{API}/config/versions/99", headers=key)
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"


def test_a_draft_publish_and_rollback_through_the_api(app, world, key):
    client = app.test_client()
    created = client.post(f"{API}/config/drafts", headers=key,
                          json={"config": {"branding": {"primary_color": "#2A6F97"}}, "note": "Blue"})
    assert created.status_code == 201
    _check(created.get_json(), _schema("/s/{studio}/api/admin/config/drafts", "post", "201"))
    version = created.get_json()["version"]
    assert created.get_json() == {"version": version, "state": "draft"}
    assert client.get(f"{STUDIO}/api/config").get_json()["version"] == 1  # not public before it is published
    published_answer = client.post(f"{API}/config/versions/{version}/publish", headers=key, json={"note": "Go"})
    assert published_answer.status_code == 200 and published_answer.get_json() == {"version": version,
                                                                                    "state": "published"}
    public = client.get(f"{STUDIO}/api/config").get_json()
    assert (public["version"], public["config"]["branding"]["primary_color"]) == (version, "#2a6f97")
    again = client.post(f"{API}/config/versions/{version}/publish", headers=key)
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"
    rolled = client.post(f"{API}/config/versions/1/rollback", headers=key, json={"note": "Back"})
    assert rolled.status_code == 201
    _check(rolled.get_json(), _schema("/s/{studio}/api/admin/config/versions/{version}/rollback", "post", "201"))
    assert rolled.get_json() == {"version": version + 1, "state": "published", "copy_of": 1}
    assert published(app, world.a.id)[1]["branding"]["primary_color"] == "#4b3fa7"
    actors = {row.actor_label for row in audit_rows(app, world.a.id) if row.action.startswith("config")}
    assert actors == {"assistant (key #1)"}


def test_invalid_drafts_name_their_fields(app, world, key):
    client = app.test_client()
    response = client.post(f"{API}/config/drafts", headers=key, json={
        "config": {"branding": {"primary_color": "blue", "logo_url": "http://x"}, "booking": {"hold_minutes": 5},
                   "extra": True}})
    assert response.status_code == 422
    body = response.get_json()
    _check(body, _schema("/s/{studio}/api/admin/config/drafts", "post", "422"))
    assert body["error"] == "invalid_config"
    assert set(body["fields"]) == {"branding.primary_color", "branding.logo_url", "booking.hold_minutes", "extra"}
    for bad in ({"note": "no config"}, {"config": ["not", "an", "object"]}, {"config": "x"}):
        answer = client.post(f"{API}/config/drafts", headers=key, json=bad)
        assert answer.status_code == 422 and answer.get_json()["fields"] == {
            "config": "must be an object of settings (a partial configuration)"}
    not_json = client.post(f"{API}/config/drafts", headers=key, data="x", content_type="text/plain")
    assert not_json.status_code == 400 and not_json.get_json()["error"] == "payload_invalid"
    assert client.post(f"{API}/config/drafts", headers=key, json={"config": {}, "note": 5}).status_code == 422
    assert version_rows(app, world.a.id) == {1: "published"}


def test_publishing_a_stale_draft_is_a_409(app, world, key):
    older = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    publish(app, world.a.id, new_draft(app, world.a.id, {"branding": {"font": "mono"}}))
    response = app.test_client().post(f"{API}/config/versions/{older}/publish", headers=key)
    assert response.status_code == 409 and "was published after this draft was made" in response.get_json()["detail"]
    assert app.test_client().post(f"{API}/config/versions/99/publish", headers=key).status_code == 404


def test_the_diff(app, world, key):
    draft = new_draft(app, world.a.id, {"policy": {"late_cancel_fee_percent": 25}, "branding": {"font": "mono"}})
    client = app.test_client()
    body = client.get(f"{API}/config/diff?from=1&to={draft}", headers=key).get_json()
    _check(body, _schema("/s/{studio}/api/admin/config/diff", "get", "200"))
    assert body["changes"] == [{"path": "branding.font", "before": "system", "after": "mono"},
                               {"path": "policy.late_cancel_fee_percent", "before": 50, "after": 25}]
    assert client.get(f"{API}/config/diff?from={draft}&to=1", headers=key).get_json()["changes"][0] == {
        "path": "branding.font", "before": "mono", "after": "system"}
    for bad in ("", "?from=1", "?from=a&to=2", "?from=-1&to=2", "?from=0&to=1", f"?from=1&to={10**20}",
                "?from=%C2%B2&to=1", f"?from=1&to={'9' * 5000}"):
        answer = client.get(f"{API}/config/diff{bad}", headers=key)
        assert answer.status_code == 422 and answer.get_json()["error"] == "parameter_invalid", bad
    assert client.get(f"{API}/config/diff?from=1&to=42", headers=key).status_code == 404


def test_a_key_with_config_propose_proposes(app, world, make_api_key):
    proposer = bearer(make_api_key(["config:propose"], name="pricing assistant"))
    client = app.test_client()
    response = client.post(f"{API}/config/proposals", headers=proposer,
                           json={"config": {"policy": {"max_reschedules": 3}}, "note": "Fewer moves"})
    assert response.status_code == 201
    _check(response.get_json(), _schema("/s/{studio}/api/admin/config/proposals", "post", "201"))
    assert response.get_json()["state"] == "pending"
    invalid = client.post(f"{API}/config/proposals", headers=proposer,
                          json={"config": {"policy": {"max_reschedules": -3}}})
    assert invalid.status_code == 422 and list(invalid.get_json()["fields"]) == ["policy.max_reschedules"]
    assert client.post(f"{API}/config/drafts", headers=proposer, json={"config": {}}).status_code == 403
    reader = bearer(make_api_key(["config:read"]))
    listed = client.get(f"{API}/config/proposals", headers=reader).get_json()
    _check(listed, _schema("/s/{studio}/api/admin/config/proposals", "get", "200"))
    [proposal] = listed["proposals"]
    assert (proposal["proposer"], proposal["changes"], proposal["note"]) == (
        "pricing assistant (key #1)", {"policy": {"max_reschedules": 3}}, "Fewer moves")
    one = client.get(f"{API}/config/proposals/{proposal['proposal']}", headers=reader)
    assert one.status_code == 200 and one.get_json()["state"] == "pending"
    assert version_rows(app, world.a.id) == {1: "published"}


def test_a_session_admin_uses_the_api_with_the_csrf_token(app, admin, world):
    without = admin.post(f"{API}/config/drafts", json={"config": {"branding": {"font": "serif"}}})
    assert without.status_code == 400 and without.get_json()["error"] == "csrf_failed"
    with_token = admin.post(f"{API}/config/drafts", json={"config": {"branding": {"font": "serif"}}},
                            headers={"X-CSRFToken": admin.csrf})
    assert with_token.status_code == 201
    assert admin.get(f"{API}/config/versions").status_code == 200
    assert audit_rows(app, world.a.id)[-1].actor_label == "admin@example.com"


def test_the_audit_log_newest_first_with_filters_and_a_cursor(app, world, key):
    for font in ("serif", "mono", "rounded"):
        publish(app, world.a.id, new_draft(app, world.a.id, {"branding": {"font": font}}, note=font), note=font)
    client = app.test_client()
    body = client.get(f"{API}/audit", headers=key).get_json()
    _check(body, _schema("/s/{studio}/api/admin/audit", "get", "200"))
    entries = body["entries"]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert (entries[0]["action"], entries[0]["entity"], entries[0]["note"], entries[0]["actor"]) == (
        "configuration_version.publish", "configuration version", "rounded", "admin@example.com")
    assert entries[0]["after"] == {"status": "published", "version": 4}
    assert body["next"] is None
    only_drafts = client.get(f"{API}/audit?entity=configuration%20version&actor=admin@example.com&limit=2",
                             headers=key).get_json()
    assert [e["action"] for e in only_drafts["entries"]] == ["configuration_version.publish", "config.draft"]
    page_two = client.get(f"{API}/audit?entity=configuration%20version&actor=admin@example.com&limit=2"
                          f"&cursor={only_drafts['next']}", headers=key).get_json()
    assert [e["note"] for e in page_two["entries"]] == ["mono", "mono"]
    seen, cursor = [], ""
    while True:
        page = client.get(f"{API}/audit?limit=2&cursor={cursor}", headers=key).get_json()
        seen += [e["id"] for e in page["entries"]]
        if page["next"] is None:
            break
        cursor = page["next"]
    assert seen == [e["id"] for e in entries]
    today = utcnow().astimezone(world.a.tz).date()
    assert client.get(f"{API}/audit?from={today}&to={today}", headers=key).get_json()["entries"]
    tomorrow = today + timedelta(days=1)
    assert client.get(f"{API}/audit?from={tomorrow}", headers=key).get_json()["entries"] == []
    for bad in ("?from=yesterday", f"?from={tomorrow}&to={today}", "?limit=0", "?limit=500", "?cursor=x",
                "?cursor=%C2%B2", f"?cursor={'9' * 5000}", "?limit=%D9%A3"):
        answer = client.get(f"{API}/audit{bad}", headers=key)
        assert answer.status_code == 422, bad
    other = client.get("/s/north-strings/api/admin/audit", headers=key)
    assert other.status_code == 403
