"""The catalogue: adding and editing packages and resources, price parsing, stable and unique slugs, audit rows,
the calendar version, and deactivation that hides from new bookings without breaking booked lessons."""
from __future__ import annotations

import re

import pytest

from portal.clock import utcnow
from portal.extensions import db
from portal.models import Studio
from portal.services import configuration
from portal.services.audit import SYSTEM
from portal.services.catalogue import MAX_PRICE_MINOR, parse_price
from portal.services.errors import InvalidInput
from tests.admin.catalogue_support import (
    audit_rows,
    booking,
    calendar_version,
    days_ahead,
    local,
    make_hold,
    make_paid_lesson,
    package_row,
    resource_row,
    within,
)
from tests.admin.conftest import STUDIO, log_in
from tests.payments.helpers import drain

CATALOGUE = f"{STUDIO}/admin/catalogue"


def package_form(admin, **values) -> dict:
    return {"name": "45-minute lesson", "slug": "lesson-45", "description": "A middle length.",
            "duration_minutes": "45", "price": "50.00", "currency": "usd", "active": "1", "csrf_token": admin.csrf,
            **values}


def resource_form(admin, **values) -> dict:
    return {"name": "Studio A", "slug": "studio-a", "kind": "room", "capacity_minutes": "600", "active": "1",
            "csrf_token": admin.csrf, **values}


# --- prices --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed,minor", [
    ("65", 6500), ("65.00", 6500), ("65.5", 6550), ("65.05", 6505), (" 65.10 ", 6510), ("$65.00", 6500),
    ("0", 0), ("0.01", 1), ("65.", 6500), ("10000", MAX_PRICE_MINOR), ("0019.99", 1999),
])
def test_typed_prices_become_minor_units(typed, minor):
    assert parse_price(typed, "usd") == minor


@pytest.mark.parametrize("typed,why", [
    ("-5", "cannot be negative"), ("-0.01", "cannot be negative"), ("65.001", "2 decimal places at most"),
    ("abc", "as a number"), ("", "Type a price"), ("1,000.00", "without thousands separators"),
    ("10000.01", "at most $10,000.00"), ("1e3", "as a number"), ("NaN", "as a number"), ("inf", "as a number"),
    ("٦٥", "as a number"), ("65.0.0", "as a number"), ("99999999999999999999", "far too large"), ("£65", "as a number"),
])
def test_bad_prices_are_refused_with_the_reason(typed, why):
    with pytest.raises(InvalidInput, match=re.escape(why)) as refused:
        parse_price(typed, "usd")
    assert refused.value.field == "price"


def test_zero_decimal_currencies_take_whole_prices():
    assert parse_price("500", "jpy") == 500
    with pytest.raises(InvalidInput, match="whole numbers"):
        parse_price("500.5", "jpy")


# --- packages ------------------------------------------------------------------------------------------------------

def test_an_added_package_is_stored_audited_and_offered(app, admin, client, world):
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CATALOGUE}/packages", data=package_form(admin, price="49.5"))
    assert response.status_code == 303 and response.headers["Location"].endswith("/admin/catalogue#packages")
    row = package_row(app, world.a.id, "lesson-45")
    assert (row.name, row.price_minor, row.currency, row.duration_minutes, row.active) == (
        "45-minute lesson", 4950, "usd", 45, True)
    assert calendar_version(app, world.a.id) == version + 1
    [entry] = audit_rows(app, "package.create")
    assert entry.before is None and entry.after["price_minor"] == 4950 and entry.after["slug"] == "lesson-45"
    assert entry.actor == "admin@example.com" and entry.studio_id == world.a.id
    listing = admin.get(CATALOGUE).get_data(as_text=True)
    assert "45-minute lesson" in listing and "$49.50" in listing and "last (not in the configuration)" in listing
    assert "45-minute lesson" in client.get(f"{STUDIO}/").get_data(as_text=True)
    assert "lesson-45" in [p["slug"] for p in client.get(f"{STUDIO}/api/packages").get_json()["packages"]]


def test_a_slug_is_made_from_the_name_when_left_empty(app, admin, world):
    admin.post(f"{CATALOGUE}/packages", data=package_form(admin, name="Théorie & Harmony", slug=""))
    assert package_row(app, world.a.id, "theorie-harmony").name == "Théorie & Harmony"


@pytest.mark.parametrize("field,value,message", [
    ("slug", "lesson-60", "already has the slug lesson-60"),
    ("slug", "Bad Slug!", "lower-case letters, digits and dashes"),
    ("price", "-10", "cannot be negative"),
    ("price", "12.345", "2 decimal places at most"),
    ("price", "250000", "at most $10,000.00"),
    ("duration_minutes", "0", "from 5 to 480"),
    ("duration_minutes", "481", "from 5 to 480"),
    ("duration_minutes", "an hour", "from 5 to 480"),
    ("currency", "eur", "sells in USD"),
    ("name", "  ", "Give it a name"),
])
def test_a_bad_package_field_is_refused_and_nothing_is_lost(app, admin, world, field, value, message):
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CATALOGUE}/packages", data=package_form(admin, **{"name": "Typed name", field: value}))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html and f'id="{field}-error"' in html
    assert 'value="Typed name"' in html or field == "name"
    assert "A middle length." in html
    assert package_row(app, world.a.id, "lesson-45") is None and calendar_version(app, world.a.id) == version
    assert audit_rows(app, "package.create") == []


def test_slugs_are_unique_per_studio_not_across_studios(app, admin, world):
    # North Strings sells a lesson-45 too; Melody & Meter may have its own.
    north = app.test_client()
    north.csrf = log_in(north, "north-admin@example.com")
    assert north.post("/s/north-strings/admin/catalogue/packages",
                      data=package_form(north, currency="gbp", price="40")).status_code == 303
    assert admin.post(f"{CATALOGUE}/packages", data=package_form(admin)).status_code == 303
    assert package_row(app, world.b.id, "lesson-45").currency == "gbp"
    assert package_row(app, world.a.id, "lesson-45").currency == "usd"
    taken = admin.post(f"{CATALOGUE}/packages/{package_row(app, world.a.id, 'lesson-30').id}",
                       data=package_form(admin, slug="lesson-45"))
    assert taken.status_code == 422 and "already has the slug lesson-45" in taken.get_data(as_text=True)


def test_a_used_slug_stays_and_an_unused_one_can_change(app, admin, world):
    used = package_row(app, world.a.id, "lesson-60")
    make_hold(app, world.a.id, local(world.a, days_ahead(world.a, 5), "10:00"))  # a booking of lesson-60
    refused = admin.post(f"{CATALOGUE}/packages/{used.id}", data=package_form(
        admin, name="Hour lesson", slug="hour-lesson", duration_minutes="60", price="65.00"))
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "1 booking used the slug lesson-60, so it stays as it is" in html and 'value="hour-lesson"' in html
    assert package_row(app, world.a.id, "lesson-60").name == "60-minute lesson"  # nothing of the form was saved

    unused = package_row(app, world.a.id, "lesson-30")
    version = calendar_version(app, world.a.id)
    changed = admin.post(f"{CATALOGUE}/packages/{unused.id}", data=package_form(
        admin, name="30-minute lesson", slug="half-hour", duration_minutes="30", price="35", description=""),
        follow_redirects=True)
    assert changed.status_code == 200
    assert package_row(app, world.a.id, "half-hour").id == unused.id
    [entry] = audit_rows(app, "package.update")
    assert (entry.before, entry.after) == ({"slug": "lesson-30"}, {"slug": "half-hour"})
    assert calendar_version(app, world.a.id) == version + 1
    # The published configuration placed lesson-30; the admin is told its display settings stay with that slug.
    assert "The published configuration sets where lesson-30 shows" in changed.get_data(as_text=True)


def test_saving_an_unchanged_package_changes_nothing(app, admin, world):
    row = package_row(app, world.a.id, "lesson-30")
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CATALOGUE}/packages/{row.id}", data=package_form(
        admin, name=row.name, slug=row.slug, description=row.description, duration_minutes="30", price="35.00"),
        follow_redirects=True)
    assert "Nothing changed" in response.get_data(as_text=True)
    assert calendar_version(app, world.a.id) == version and audit_rows(app, "package.update") == []


def test_the_edit_form_shows_the_package_as_stored(app, admin, world):
    row = package_row(app, world.a.id, "lesson-60")
    html = admin.get(f"{CATALOGUE}/packages/{row.id}").get_data(as_text=True)
    assert 'value="65.00"' in html and 'value="lesson-60"' in html and 'name="active" value="1" checked' in html
    assert admin.get(f"{CATALOGUE}/packages/999999").status_code == 404


# --- resources -----------------------------------------------------------------------------------------------------

def test_resources_are_added_edited_and_audited(app, admin, client, world):
    version = calendar_version(app, world.a.id)
    assert admin.post(f"{CATALOGUE}/resources", data=resource_form(admin)).status_code == 303
    row = resource_row(app, world.a.id, "studio-a")
    assert (row.name, row.kind, row.capacity_minutes, row.active) == ("Studio A", "room", 600, True)
    edited = admin.post(f"{CATALOGUE}/resources/{row.id}", data=resource_form(
        admin, name="Studio A (large)", kind="instrument", capacity_minutes="720"))
    assert edited.status_code == 303
    assert calendar_version(app, world.a.id) == version + 2
    [created], [updated] = audit_rows(app, "resource.create"), audit_rows(app, "resource.update")
    assert created.after == {"name": "Studio A", "slug": "studio-a", "kind": "room", "capacity_minutes": 600,
                             "active": True}
    assert updated.before == {"name": "Studio A", "kind": "room", "capacity_minutes": 600}
    assert updated.after == {"name": "Studio A (large)", "kind": "instrument", "capacity_minutes": 720}
    # A new resource has no opening hours yet, but it is in the pickers.
    assert 'value="studio-a"' in client.get(f"{STUDIO}/packages/lesson-60").get_data(as_text=True)


@pytest.mark.parametrize("field,value,message", [
    ("capacity_minutes", "1441", "from 0 to 1440"), ("capacity_minutes", "-1", "from 0 to 1440"),
    ("kind", "spaceship", "room, an instrument or a teacher"), ("slug", "piano", "already has the slug piano"),
])
def test_a_bad_resource_field_is_refused(app, admin, world, field, value, message):
    response = admin.post(f"{CATALOGUE}/resources", data=resource_form(admin, **{field: value}))
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert resource_row(app, world.a.id, "studio-a") is None


def test_a_used_resource_slug_stays(app, admin, world):
    piano = resource_row(app, world.a.id, "piano")
    make_hold(app, world.a.id, local(world.a, days_ahead(world.a, 5), "10:00"))
    refused = admin.post(f"{CATALOGUE}/resources/{piano.id}", data=resource_form(
        admin, name="Piano", slug="grand-piano", capacity_minutes="480"))
    assert refused.status_code == 422 and "used the slug piano" in refused.get_data(as_text=True)
    drums = resource_row(app, world.a.id, "drums")
    assert admin.post(f"{CATALOGUE}/resources/{drums.id}", data=resource_form(
        admin, name="Drums", slug="drum-booth", capacity_minutes="480")).status_code == 303
    assert resource_row(app, world.a.id, "drum-booth").id == drums.id


# --- deactivating ------------------------------------------------------------------------------------------------

@pytest.fixture
def booked(app, client, stripe_standin, world):
    """A confirmed, paid lesson-60 on the drums, 10 days ahead."""
    return make_paid_lesson(app, client, stripe_standin, world.a.id,
                            local(world.a, days_ahead(world.a, 10), "10:00"), resource="drums")


def _student(app):
    student = app.test_client()
    student.csrf = log_in(student, "student@example.com")
    return student


def test_a_deactivated_package_takes_no_new_bookings_and_booked_lessons_carry_on(app, admin, client, world, booked):
    row = package_row(app, world.a.id, "lesson-60")
    response = admin.post(f"{CATALOGUE}/packages/{row.id}", data=package_form(
        admin, name=row.name, slug=row.slug, description=row.description, duration_minutes="60", price="65.00",
        active=""), follow_redirects=True)
    assert "1 upcoming lesson of this package stays booked" in response.get_data(as_text=True)
    [entry] = audit_rows(app, "package.update")
    assert (entry.before, entry.after) == ({"active": True}, {"active": False})

    assert "60-minute lesson" not in client.get(f"{STUDIO}/").get_data(as_text=True)
    assert "lesson-60" not in [p["slug"] for p in client.get(f"{STUDIO}/api/packages").get_json()["packages"]]
    assert client.get(f"{STUDIO}/packages/lesson-60").status_code == 404
    day = days_ahead(world.a, 12)
    assert client.get(f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}").status_code == 404
    student = _student(app)
    refused = student.post(f"{STUDIO}/bookings", data={"package": "lesson-60", "resource": "piano", "csrf_token":
                                                       student.csrf, "start": local(world.a, day, "10:00").isoformat()})
    assert refused.status_code == 422 and "No such lesson package" in refused.get_data(as_text=True)

    page = student.get(f"{STUDIO}/bookings/{booked}")
    assert page.status_code == 200 and "60-minute lesson" in page.get_data(as_text=True)
    assert f'id="lesson-{booked}"' in student.get(f"{STUDIO}/lessons").get_data(as_text=True)
    assert student.get(f"{STUDIO}/bookings/{booked}/reschedule").status_code == 200
    moved = student.post(f"{STUDIO}/bookings/{booked}/reschedule", data={
        "resource": "piano", "start": local(world.a, day, "11:00").isoformat(), "csrf_token": student.csrf})
    assert moved.status_code == 303, moved.get_data(as_text=True)
    cancelled = student.post(f"{STUDIO}/bookings/{booked}/cancel", data={"csrf_token": student.csrf})
    assert cancelled.status_code == 303
    drain(app)
    assert (booking(app, booked).status, booking(app, booked).refunded) == ("cancelled", 6500)


def test_a_deactivated_resource_leaves_the_pickers_and_allowlist_not_its_lessons(app, admin, client, world, booked,
                                                                                  make_api_key):
    drums = resource_row(app, world.a.id, "drums")
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CATALOGUE}/resources/{drums.id}", data=resource_form(
        admin, name="Drums", slug="drums", capacity_minutes="480", active=""), follow_redirects=True)
    assert "1 upcoming lesson stays booked on Drums" in response.get_data(as_text=True)
    assert calendar_version(app, world.a.id) == version + 1

    assert 'value="drums"' not in client.get(f"{STUDIO}/packages/lesson-30").get_data(as_text=True)
    day = days_ahead(world.a, 12)
    assert client.get(f"{STUDIO}/api/availability?package=lesson-30&resource=drums&date={day}").status_code == 404
    assert "drums" not in [r["slug"] for r in client.get(f"{STUDIO}/api/packages").get_json()["resources"]]
    allowlist = client.get(f"{STUDIO}/api/admin/resources",
                           headers={"Authorization": f"Bearer {make_api_key(['config:read'])}"}).get_json()
    assert allowlist["allowed_resource_ids"] == ["piano"]
    assert {"id": "drums", "name": "Drums", "kind": "room", "capacity_minutes": 480,
            "active": False} in allowlist["resources"]

    student = _student(app)
    assert student.get(f"{STUDIO}/bookings/{booked}").status_code == 200
    assert "Drums" in student.get(f"{STUDIO}/lessons").get_data(as_text=True)
    picker = student.get(f"{STUDIO}/bookings/{booked}/reschedule").get_data(as_text=True)
    assert 'value="drums"' not in picker and 'value="piano"' in picker
    moved = student.post(f"{STUDIO}/bookings/{booked}/reschedule", data={
        "resource": "piano", "start": local(world.a, day, "11:00").isoformat(), "csrf_token": student.csrf})
    assert moved.status_code == 303
    assert student.post(f"{STUDIO}/bookings/{booked}/cancel", data={"csrf_token": student.csrf}).status_code == 303
    drain(app)
    assert booking(app, booked).status == "cancelled"


def test_the_catalogue_shows_display_settings_read_only(app, admin, world):
    with within(app, world.a.id):
        studio = db.session.get(Studio, world.a.id)
        draft = configuration.create_draft(studio, {"packages": {
            "lesson-60": {"position": 0, "featured": True}, "lesson-30": {"position": 1, "visible": False}}},
            actor=SYSTEM, note="Feature the hour", now=utcnow())
        configuration.publish(db.session.get(Studio, world.a.id), draft.version, actor=SYSTEM, note="", now=utcnow())
    html = admin.get(CATALOGUE).get_data(as_text=True)
    assert "from the published configuration (version 2)" in html
    table = html[html.index('id="package-table"'):html.index('id="resources"')]
    assert table.index("60-minute lesson") < table.index("30-minute lesson")  # the configuration's order
    sixty, thirty = table.split('<tr id="package-')[1:3]
    assert "featured" in sixty and "hidden" not in sixty
    assert "hidden" in thirty and "featured" not in thirty
    assert "<form" not in table  # read-only here
