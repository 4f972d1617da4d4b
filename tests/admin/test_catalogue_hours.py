"""Weekly opening hours edited in place: htmx fragments (with `Vary: HX-Request`) or plain forms, field errors
that keep what was typed, audit rows, the calendar version, and availability on the very next request."""
from __future__ import annotations

from datetime import datetime

import pytest

from tests.admin.catalogue_support import audit_rows, calendar_version, days_ahead, rule_ids, spans
from tests.admin.conftest import STUDIO

CALENDAR = f"{STUDIO}/admin/calendar"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def wednesday(world):
    """A Wednesday at least 3 days ahead (studio-local) and its weekday number."""
    day = days_ahead(world.a, 3)
    while day.weekday() != 2:
        day = day.fromordinal(day.toordinal() + 1)
    return day


def slot_times(client, world, day, package="lesson-60", resource="piano") -> list[str]:
    body = client.get(f"{STUDIO}/api/availability?package={package}&resource={resource}&date={day}").get_json()
    return [datetime.fromisoformat(s).astimezone(world.a.tz).strftime("%H:%M") for s in body["slots"]]


def post(admin, url, data, htmx: bool):
    return admin.post(url, data={**data, "csrf_token": admin.csrf}, headers=HTMX if htmx else {},
                      follow_redirects=True)


def assert_fragment(response, weekday: int):
    html = response.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith(f'<section class="weekday" id="day-{weekday}"')
    assert "HX-Request" in response.headers["Vary"]
    return html


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-form"])
def test_add_change_and_remove_a_span(app, admin, client, world, wednesday, htmx):
    version = calendar_version(app, world.a.id)
    [opening] = rule_ids(app, world.a.id, "piano", 2)

    changed = post(admin, f"{CALENDAR}/hours/{opening}", {"start": "09:00", "end": "12:00"}, htmx)
    assert changed.status_code == 200
    html = assert_fragment(changed, 2) if htmx else changed.get_data(as_text=True)
    assert 'value="12:00"' in html
    assert spans(app, world.a.id, "piano", 2) == [("09:00", "12:00")]
    assert slot_times(client, world, wednesday) == ["09:00", "09:30", "10:00", "10:30", "11:00"]

    added = post(admin, f"{CALENDAR}/hours", {"resource": "piano", "weekday": "2", "start": "14:00", "end": "16:00"},
                 htmx)
    assert added.status_code == 200
    if htmx:
        assert 'value="14:00"' in assert_fragment(added, 2)
    else:
        assert "<html" in added.get_data(as_text=True)
    assert spans(app, world.a.id, "piano", 2) == [("09:00", "12:00"), ("14:00", "16:00")]
    assert slot_times(client, world, wednesday)[-3:] == ["14:00", "14:30", "15:00"]

    removed = post(admin, f"{CALENDAR}/hours/{opening}/delete", {"start": "09:00", "end": "12:00"}, htmx)
    assert removed.status_code == 200
    if htmx:
        assert f'id="span-{opening}"' not in assert_fragment(removed, 2)
    assert spans(app, world.a.id, "piano", 2) == [("14:00", "16:00")]
    assert slot_times(client, world, wednesday) == ["14:00", "14:30", "15:00"]
    assert slot_times(client, world, wednesday, resource="drums")[0] == "09:00"  # other resources untouched

    assert calendar_version(app, world.a.id) == version + 3
    [change] = audit_rows(app, "hours.change")
    assert (change.before, change.after) == ({"resource": "piano", "weekday": "Wednesday", "start": "09:00",
                                              "end": "18:00"},
                                             {"resource": "piano", "weekday": "Wednesday", "start": "09:00",
                                              "end": "12:00"})
    assert audit_rows(app, "hours.add")[0].after["start"] == "14:00"
    assert audit_rows(app, "hours.remove")[0].before["end"] == "12:00"
    assert change.actor == "admin@example.com"


def test_a_saved_change_redirects_to_the_day_and_htmx_gets_its_block(admin, world):
    response = admin.post(f"{CALENDAR}/hours", data={"resource": "drums", "weekday": "5", "start": "06:00",
                                                     "end": "08:00", "csrf_token": admin.csrf}, headers=HTMX)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/admin/calendar?resource=drums&day=5#day-5")
    block = admin.get(f"{CALENDAR}?resource=drums&day=5", headers=HTMX)
    assert 'value="06:00"' in assert_fragment(block, 5)
    page = admin.get(f"{CALENDAR}?resource=drums&day=5")
    assert "<html" in page.get_data(as_text=True) and "HX-Request" in page.headers["Vary"]


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-form"])
@pytest.mark.parametrize("start,end,field,message", [
    ("17:00", "19:00", "start", "It overlaps 9:00 AM–6:00 PM on Wednesday."),
    ("07:00", "09:00", "end", "It would join 9:00 AM–6:00 PM on Wednesday"),
    ("12:00", "11:00", "end", "It must close after it opens"),
    ("12:00", "12:00", "end", "It must close after it opens"),
    ("25:00", "26:00", "start", "That is not a time of day"),
    ("nine", "10:00", "start", "Times look like 09:30"),
    ("06:07", "08:00", "start", "5-minute steps"),
    ("", "08:00", "start", "Type when it opens"),
])
def test_a_bad_new_span_is_refused_with_a_field_error(app, admin, world, htmx, start, end, field, message):
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CALENDAR}/hours", data={"resource": "piano", "weekday": "2", "start": start, "end": end,
                                                     "csrf_token": admin.csrf}, headers=HTMX if htmx else {})
    assert response.status_code == 422
    html = assert_fragment(response, 2) if htmx else response.get_data(as_text=True)
    assert message in html and 'id="day-2-new-error"' in html
    assert f'name="{field}" step="300" required value="{start if field == "start" else end}"' in html
    assert 'aria-invalid="true" aria-describedby="day-2-new-error"' in html
    assert spans(app, world.a.id, "piano", 2) == [("09:00", "18:00")]
    assert calendar_version(app, world.a.id) == version
    assert audit_rows(app, "hours.add") == []


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain-form"])
def test_changing_a_span_onto_another_is_refused_and_stays_editable(app, admin, world, htmx):
    post(admin, f"{CALENDAR}/hours", {"resource": "piano", "weekday": "4", "start": "19:00", "end": "21:00"}, False)
    _morning, evening = rule_ids(app, world.a.id, "piano", 4)
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CALENDAR}/hours/{evening}", data={"start": "17:30", "end": "21:00",
                                                               "csrf_token": admin.csrf},
                          headers=HTMX if htmx else {})
    assert response.status_code == 422
    html = assert_fragment(response, 4) if htmx else response.get_data(as_text=True)
    assert "It overlaps 9:00 AM–6:00 PM on Friday." in html and f'id="span-{evening}-error"' in html
    assert 'value="17:30"' in html  # as typed
    assert spans(app, world.a.id, "piano", 4) == [("09:00", "18:00"), ("19:00", "21:00")]
    assert calendar_version(app, world.a.id) == version and audit_rows(app, "hours.change") == []


def test_an_unchanged_span_changes_nothing(app, admin, world):
    [opening] = rule_ids(app, world.a.id, "piano", 0)
    version = calendar_version(app, world.a.id)
    response = admin.post(f"{CALENDAR}/hours/{opening}", data={"start": "09:00", "end": "18:00",
                                                               "csrf_token": admin.csrf})
    assert response.status_code == 303
    assert calendar_version(app, world.a.id) == version and audit_rows(app, "hours.change") == []


def test_hours_of_another_studio_or_a_gone_span_are_not_found(app, admin, world):
    with_b = rule_ids(app, world.b.id, "violin", 0)
    assert with_b
    assert admin.post(f"{CALENDAR}/hours/{with_b[0]}", data={"start": "10:00", "end": "11:00",
                                                             "csrf_token": admin.csrf}).status_code == 404
    assert admin.post(f"{CALENDAR}/hours/{with_b[0]}/delete", data={"csrf_token": admin.csrf}).status_code == 404
    assert admin.post(f"{CALENDAR}/hours", data={"resource": "violin", "weekday": "0", "start": "07:00",
                                                 "end": "08:00", "csrf_token": admin.csrf}).status_code == 404
    assert spans(app, world.b.id, "violin", 0) == [("09:00", "18:00")]
    bad_day = admin.post(f"{CALENDAR}/hours", data={"resource": "piano", "weekday": "7", "start": "07:00",
                                                    "end": "08:00", "csrf_token": admin.csrf})
    assert bad_day.status_code == 422


def test_the_calendar_shows_the_booking_rules_and_hours_of_each_resource(admin, world):
    page = admin.get(f"{CALENDAR}?resource=drums").get_data(as_text=True)
    assert "Opening hours · Drums" in page and page.count('class="weekday"') == 7
    assert "120 minutes before a lesson" in page and "every 30 minutes" in page and "0 minutes between" in page
    assert admin.get(f"{CALENDAR}?resource=nope").status_code == 404
