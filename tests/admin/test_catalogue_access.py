"""Who reaches the catalogue and calendar: every page, action and API endpoint against every kind of outsider, and
the resource allowlist API's shape, scopes and studio isolation."""
from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import db
from portal.models import AvailabilityRule, Blackout, Package, Resource, Studio
from tests.admin.catalogue_support import calendar_version, within
from tests.admin.conftest import STUDIO, bearer, log_in
from tests.factories import make_blackout

PAGES = {
    "catalogue": "/admin/catalogue",
    "package_new": "/admin/catalogue/packages/new",
    "package": "/admin/catalogue/packages/{package}",
    "resource_new": "/admin/catalogue/resources/new",
    "resource": "/admin/catalogue/resources/{resource}",
    "calendar": "/admin/calendar",
    "calendar_day": "/admin/calendar?resource=piano&day=3",
    "blackouts": "/admin/calendar/blackouts",
}
ACTIONS = {
    "package_create": "/admin/catalogue/packages",
    "package_update": "/admin/catalogue/packages/{package}",
    "resource_create": "/admin/catalogue/resources",
    "resource_update": "/admin/catalogue/resources/{resource}",
    "hours_add": "/admin/calendar/hours",
    "hours_change": "/admin/calendar/hours/{rule}",
    "hours_remove": "/admin/calendar/hours/{rule}/delete",
    "blackout_preview": "/admin/calendar/blackouts/preview",
    "blackout_create": "/admin/calendar/blackouts",
    "blackout_delete": "/admin/calendar/blackouts/{blackout}/delete",
}
API = "/api/admin/resources"

#: Form fields that would make each action succeed for an admin: a refusal is then the role check, not bad input.
FORM = {"name": "Cello", "slug": "cello", "kind": "room", "capacity_minutes": "300", "active": "1",
        "duration_minutes": "45", "price": "40", "description": "", "resource": "piano", "weekday": "3",
        "start": "06:00", "end": "08:00", "starts": "", "ends": "", "reason": "Closed", "lessons": "keep"}


@pytest.fixture
def ids(app, world):
    """Ids of studio A's rows the routes name (a package, a resource, an opening-hours span, a blackout)."""
    with within(app, world.a.id):
        studio = db.session.get(Studio, world.a.id)
        package = db.session.scalar(select(Package.id).where(Package.slug == "lesson-30"))
        resource = db.session.scalar(select(Resource.id).where(Resource.slug == "drums"))
        rule = db.session.scalar(select(AvailabilityRule.id).where(AvailabilityRule.resource_id == resource)
                                 .order_by(AvailabilityRule.weekday))
        starts = utcnow() + timedelta(days=20)
        blackout = make_blackout(studio, starts, starts + timedelta(hours=2)).id
    return {"package": package, "resource": resource, "rule": rule, "blackout": blackout}


def _form(world, token):
    day = (utcnow() + timedelta(days=30)).astimezone(world.a.tz).date()
    return {**FORM, "starts": f"{day}T10:00", "ends": f"{day}T11:00", "csrf_token": token}


def _as(app, who):
    client = app.test_client()
    token = log_in(client, who) if who else None
    if token is None:  # anonymous: a CSRF token from the login page's session, so the form itself is not refused
        from tests.conftest import csrf_token_from

        token = csrf_token_from(client.get("/login").get_data(as_text=True))
    return client, token


PEOPLE = [(None, "login", "login"), ("student@example.com", 403, 403), ("north-admin@example.com", 403, 403),
          ("north-student@example.com", 403, 403), ("ops@example.com", 200, 403)]


@pytest.mark.parametrize("who,page_answer,action_answer", PEOPLE, ids=["anonymous", "student", "other-admin",
                                                                       "other-student", "ops"])
def test_pages_and_actions_answer_only_this_studios_admins(app, world, ids, who, page_answer, action_answer):
    client, token = _as(app, who)
    version = calendar_version(app, world.a.id)
    for name, path in PAGES.items():
        response = client.get(STUDIO + path.format(**ids))
        if page_answer == "login":
            assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), name
        else:
            assert response.status_code == page_answer, name
        if page_answer != 200:
            assert "lesson-30" not in response.get_data(as_text=True)
    for name, path in ACTIONS.items():
        response = client.post(STUDIO + path.format(**ids), data=_form(world, token))
        if action_answer == "login":
            assert response.status_code == 302 and response.headers["Location"].startswith("/login?next="), name
        else:
            assert response.status_code == action_answer, name
    assert calendar_version(app, world.a.id) == version  # nothing changed
    with within(app, world.a.id):
        assert db.session.scalar(select(Blackout.id)) == ids["blackout"]
        assert db.session.scalar(select(Resource.id).where(Resource.slug == "cello")) is None


def test_ops_see_the_pages_read_only(app, world, ids):
    client, _token = _as(app, "ops@example.com")
    catalogue = client.get(f"{STUDIO}/admin/catalogue").get_data(as_text=True)
    assert "nothing can be changed here" in catalogue and "Add a package" not in catalogue
    calendar = client.get(f"{STUDIO}/admin/calendar").get_data(as_text=True)
    assert "disabled" in calendar and "Add opening hours" not in calendar
    blackouts = client.get(f"{STUDIO}/admin/calendar/blackouts").get_data(as_text=True)
    assert "New blackout" not in blackouts and f'id="blackout-{ids["blackout"]}"' in blackouts


def test_the_admin_reaches_every_page_and_the_api(admin, ids):
    for name, path in PAGES.items():
        assert admin.get(STUDIO + path.format(**ids)).status_code == 200, name
    assert admin.get(STUDIO + API).status_code == 200


def test_rows_of_another_studio_are_not_found_through_the_admins_own_studio(app, world, ids):
    client, token = _as(app, "north-admin@example.com")
    north = "/s/north-strings"
    version = calendar_version(app, world.a.id)
    for path in (PAGES["package"], PAGES["resource"]):
        assert client.get(north + path.format(**ids)).status_code == 404
    for name in ("package_update", "resource_update", "hours_change", "hours_remove"):
        assert client.post(north + ACTIONS[name].format(**ids), data=_form(world, token)).status_code == 404, name
    client.post(north + ACTIONS["blackout_delete"].format(**ids), data={"csrf_token": token})
    with within(app, world.a.id):
        assert db.session.scalar(select(Blackout.id)) == ids["blackout"]  # studio A's blackout is still there
    assert calendar_version(app, world.a.id) == version


# --- the resource allowlist API --------------------------------------------------------------------------------------

def test_the_allowlist_answers_seed_000s_shape(admin, world):
    body = admin.get(STUDIO + API).get_json()
    assert body == {"enforced": True, "allowed_resource_ids": ["drums", "piano"], "resources": [
        {"id": "drums", "name": "Drums", "kind": "room", "capacity_minutes": 480, "active": True},
        {"id": "piano", "name": "Piano", "kind": "room", "capacity_minutes": 480, "active": True}]}
    spec = yaml.safe_load((PROJECT_ROOT / "docs" / "openapi.yaml").read_text())
    schema = spec["paths"]["/s/{studio}/api/admin/resources"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert set(schema["required"]) == set(body)
    assert set(schema["properties"]["resources"]["items"]["required"]) == set(body["resources"][0])


def test_the_allowlist_follows_the_catalogue(app, admin, world):
    admin.post(f"{STUDIO}/admin/catalogue/resources", data={
        "name": "Mr Keys", "slug": "mr-keys", "kind": "teacher", "capacity_minutes": "240", "active": "1",
        "csrf_token": admin.csrf})
    with within(app, world.a.id):
        drums = db.session.scalar(select(Resource).where(Resource.slug == "drums"))
        drums_id = drums.id
    admin.post(f"{STUDIO}/admin/catalogue/resources/{drums_id}", data={
        "name": "Drums", "slug": "drums", "kind": "room", "capacity_minutes": "480", "csrf_token": admin.csrf})
    body = admin.get(STUDIO + API).get_json()
    assert body["allowed_resource_ids"] == ["mr-keys", "piano"]
    assert {"id": "mr-keys", "name": "Mr Keys", "kind": "teacher", "capacity_minutes": 240,
            "active": True} in body["resources"]
    assert [r["active"] for r in body["resources"] if r["id"] == "drums"] == [False]


@pytest.mark.parametrize("scopes,studio,expected,code", [
    (["config:read"], "a", 200, None),
    (["config:read", "config:propose"], "a", 200, None),
    (["bookings:read"], "a", 403, "scope_missing"),
    (["config:propose", "config:publish"], "a", 403, "scope_missing"),
    (["config:read"], "b", 403, "forbidden"),
])
def test_api_keys_need_the_scope_and_this_studio(client, make_api_key, scopes, studio, expected, code):
    response = client.get(STUDIO + API, headers=bearer(make_api_key(scopes, studio=studio)))
    assert response.status_code == expected
    if code:
        assert response.get_json()["error"] == code and "allowed_resource_ids" not in response.get_json()
    else:
        assert response.get_json()["allowed_resource_ids"] == ["drums", "piano"]


@pytest.mark.parametrize("who,expected", [(None, 401), ("student@example.com", 403),
                                          ("north-admin@example.com", 403), ("ops@example.com", 403)])
def test_sessions_other_than_this_studios_admins_are_refused(app, world, who, expected):
    client, _token = _as(app, who)
    response = client.get(STUDIO + API)
    assert response.status_code == expected
    assert "allowed_resource_ids" not in response.get_json()


def test_a_revoked_or_made_up_key_is_unauthenticated(client, world):
    response = client.get(STUDIO + API, headers=bearer("sp_deadbeef_nothing"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_each_studio_sees_only_its_own_resources(app, client, make_api_key, world):
    body = client.get("/s/north-strings" + API, headers=bearer(make_api_key(["config:read"], studio="b"))).get_json()
    assert body["allowed_resource_ids"] == ["violin"] and [r["id"] for r in body["resources"]] == ["violin"]
    north = app.test_client()
    log_in(north, "north-admin@example.com")
    assert north.get("/s/north-strings" + API).get_json()["allowed_resource_ids"] == ["violin"]
