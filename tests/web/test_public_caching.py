"""Public pages a CDN can keep: no cookie for anonymous visitors, an ETag with 304 on a conditional repeat until
something changes, and Cache-Control that keeps logged-in people's pages out of shared caches."""
from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Package, Resource, Role
from portal.services import audit, catalogue, configuration, studios
from tests.factories import PASSWORD, make_blackout, make_studio, make_user, next_weekday

STUDIO = "/s/melody-and-meter"


@pytest.fixture
def studio(app_ctx):
    studio = make_studio(buffer_minutes=0)
    make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    return studio


def _public_paths() -> list[str]:
    day = next_weekday(2)
    return [f"{STUDIO}/", f"{STUDIO}/packages/lesson-60?resource=piano&date={day}", f"{STUDIO}/api/packages",
            f"{STUDIO}/api/config", f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}",
            f"{STUDIO}/api/availability?package=lesson-60&resource=piano&from={day}&to={day + timedelta(days=30)}"]


def test_anonymous_public_pages_set_no_cookie_and_may_be_kept_by_a_shared_cache(client, studio):
    for path in _public_paths() * 2:  # rendered, then served again as kept
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Set-Cookie" not in response.headers, path
        assert response.headers.getlist("Cache-Control") == ["public, max-age=0, s-maxage=30"], path
        assert "Cookie" in response.headers["Vary"] and response.headers["ETag"], path
        assert len(response.headers.getlist("Vary")) == 1 and len(response.headers.getlist("ETag")) == 1, path
    assert client.get_cookie("session") is None
    page = client.get(f"{STUDIO}/").get_data(as_text=True)
    assert "csrf_token" not in page and "X-CSRFToken" not in page


def test_login_and_signup_forms_still_carry_a_token_and_refuse_without_one(client, studio, auth):
    for path in ("/login", f"{STUDIO}/signup"):
        assert 'name="csrf_token"' in client.get(path).get_data(as_text=True), path
    refused = client.post("/login", data={"email": "student@example.com", "password": PASSWORD})
    assert refused.status_code == 400
    assert auth.login("student@example.com", PASSWORD).status_code == 303


def test_a_logged_in_persons_pages_stay_private(client, studio, auth):
    auth.login("student@example.com", PASSWORD)
    home = client.get(f"{STUDIO}/")
    assert home.headers["Cache-Control"] == "private, no-store"
    assert "X-CSRFToken" in home.get_data(as_text=True)  # htmx posts from their pages carry the token
    api = client.get(_public_paths()[2])
    assert "public" not in api.headers.get("Cache-Control", "")  # a request with a session is never marked shared


@pytest.mark.parametrize("path_index", [0, 1, 4, 5])
def test_a_conditional_repeat_is_304_until_something_changes(client, studio, path_index):
    path = _public_paths()[path_index]
    first = client.get(path)
    tag = first.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.get_data() == b""
    assert client.get(path, headers={"If-None-Match": tag}).status_code == 304

    day = next_weekday(2)
    with tenancy.scoped(studio.id):
        piano = db.session.scalar(db.select(Resource).where(Resource.slug == "piano"))
    if path_index == 0:  # the home page changes with the catalogue
        with tenancy.scoped(studio.id):
            package = db.session.scalar(db.select(Package).where(Package.slug == "lesson-60"))
            catalogue.save_package(studio, package, {"name": "Hour lesson", "slug": "lesson-60",
                                                     "duration_minutes": "60", "price": "70.00", "active": "1"},
                                   actor=audit.SYSTEM, now=utcnow())
    else:  # free times change with a blackout
        make_blackout(studio, datetime.combine(day, time(9), studio.tz), datetime.combine(day, time(11), studio.tz),
                      resource=piano)
    changed = client.get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert client.get(path, headers={"If-None-Match": changed.headers["ETag"]}).status_code == 304


def test_a_publish_changes_the_tag_of_the_configuration(client, studio):
    path = f"{STUDIO}/api/config"
    tag = client.get(path).headers["ETag"]
    with tenancy.scoped(studio.id):
        draft = configuration.create_draft(studio, {"branding": {"primary_color": "#123456"}},
                                           actor=audit.SYSTEM, note="colour", now=utcnow())
        configuration.publish(studio, draft.version, actor=audit.SYSTEM, note="colour", now=utcnow())
    changed = client.get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.get_json()["config"]["branding"]["primary_color"] == "#123456"


def test_errors_are_never_marked_cacheable(client, studio):
    response = client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date=soon")
    assert response.status_code == 422
    assert "ETag" not in response.headers and "public" not in response.headers.get("Cache-Control", "")


@pytest.fixture
def rendered(app):
    """Names of the templates rendered, as Flask signals them."""
    from flask import template_rendered

    names: list[str] = []

    def record(_sender, template, context, **_extra):
        names.append(template.name)

    template_rendered.connect(record, app)
    yield names
    template_rendered.disconnect(record, app)


def test_a_conditional_repeat_of_the_studio_page_is_answered_without_rendering(client, studio, rendered):
    first = client.get(f"{STUDIO}/")
    assert first.status_code == 200 and rendered == ["studio/home.html"]
    tag = first.headers["ETag"]
    rendered.clear()

    again = client.get(f"{STUDIO}/", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["ETag"] == tag
    assert again.headers["Cache-Control"] == "public, max-age=0, s-maxage=30"
    assert rendered == []  # answered from the studio's versions alone
    fragment = client.get(f"{STUDIO}/", headers={"If-None-Match": tag, "HX-Request": "true"})
    assert fragment.status_code == 200  # another form of the page has another tag


def test_the_studio_page_tag_follows_the_studio_row(client, studio):
    tag = client.get(f"{STUDIO}/").headers["ETag"]
    studios.suspend(studio.id, actor=audit.SYSTEM, note="unpaid invoice", now=utcnow())
    suspended = client.get(f"{STUDIO}/", headers={"If-None-Match": tag})
    assert suspended.status_code == 200 and suspended.headers["ETag"] != tag
    assert "not taking bookings" in suspended.get_data(as_text=True)


def test_an_anonymous_tag_never_answers_for_a_logged_in_person(client, studio, auth):
    tag = client.get(f"{STUDIO}/").headers["ETag"]
    auth.login("student@example.com", PASSWORD)
    mine = client.get(f"{STUDIO}/", headers={"If-None-Match": tag})
    assert mine.status_code == 200 and mine.headers["ETag"] != tag
    assert "X-CSRFToken" in mine.get_data(as_text=True)


def test_an_anonymous_visit_opens_its_session_without_the_cookie_signer(client, studio, monkeypatch):
    """Without a session cookie there is nothing to verify; a cookie is still verified (a forged one is ignored)."""
    from flask.sessions import SecureCookieSessionInterface

    built = []
    sign = SecureCookieSessionInterface.get_signing_serializer
    monkeypatch.setattr(SecureCookieSessionInterface, "get_signing_serializer",
                        lambda self, app: built.append(app) or sign(self, app))
    assert client.get(f"{STUDIO}/").status_code == 200
    assert built == []
    client.set_cookie("session", "forged.cookie.value")
    forged = client.get(f"{STUDIO}/")
    assert forged.status_code == 200 and len(built) == 1
    assert "X-CSRFToken" not in forged.get_data(as_text=True)  # the forged session logged nobody in


def test_only_public_answers_and_webhook_deliveries_skip_the_rate_limiter(app, studio):
    from portal.extensions import _unlimited

    for path in _public_paths():
        with app.test_request_context(path):
            assert _unlimited(), path
        with app.test_request_context(path, method="POST"):
            assert not _unlimited(), path  # no such route (405): nothing to skip
    with app.test_request_context("/webhooks/stripe", method="POST"):
        assert _unlimited()
    for method, path in (("POST", "/login"), ("GET", "/login"), ("GET", f"{STUDIO}/api/admin/config/versions"),
                         ("POST", f"{STUDIO}/signup")):
        with app.test_request_context(path, method=method) as request_context:
            assert request_context.request.endpoint is not None, path
            assert not _unlimited(), path
