"""The range form of the availability API: one request answers every day, each day as the one-day form does."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Resource, Role
from tests.conftest import BOTH
from tests.factories import make_blackout, make_studio, make_user

STUDIO = "/s/melody-and-meter"
NEW_YORK = ZoneInfo("America/New_York")


def next_dst_change(after: date) -> date:
    """The first New York date after `after` whose UTC offset differs from the day before's."""
    def offset(day):
        return datetime.combine(day, time(12), NEW_YORK).utcoffset()

    day = after
    while offset(day + timedelta(days=1)) == offset(day):
        day += timedelta(days=1)
    return day + timedelta(days=1)


@pytest.fixture
def studio(app_ctx):
    # Open through the night, so the skipped and the repeated hour of a DST change are inside opening hours.
    return make_studio(buffer_minutes=10, min_notice_minutes=60, slot_interval_minutes=30,
                       hours=("00:30", "23:30"), booking_horizon_days=366)


def _url(query: str) -> str:
    return f"{STUDIO}/api/availability?package=lesson-60&resource=piano&{query}"


def _book(studio, start: datetime, minutes: int = 60):
    student = make_user(f"s{int(start.timestamp())}@example.com", roles=[(studio, Role.STUDENT)])
    with tenancy.scoped(studio.id):
        piano = db.session.scalar(db.select(Resource).where(Resource.slug == "piano"))
        package = db.session.scalar(db.select(Package).where(Package.duration_minutes == minutes))
        db.session.add(Booking(studio_id=studio.id, student_id=student.id, package_id=package.id,
                               resource_id=piano.id, start_at=start, end_at=start + timedelta(minutes=minutes),
                               occupied_until=start + timedelta(minutes=minutes) + studio.buffer,
                               status=BookingStatus.CONFIRMED, price_minor=package.price_minor, currency="usd"))
        db.session.commit()
    return piano


@BOTH
def test_every_day_of_a_62_day_range_across_a_dst_change_matches_the_one_day_form(client, studio):
    today = utcnow().astimezone(NEW_YORK).date()
    change = next_dst_change(today + timedelta(days=1))
    first = max(today, change - timedelta(days=30))
    last = first + timedelta(days=61)
    assert first < change <= last
    # Lessons and blackouts that make days differ: one on the change day, in the night, and a blackout
    # crossing midnight.
    piano = _book(studio, datetime.combine(change, time(1, 30), NEW_YORK))
    _book(studio, datetime.combine(change + timedelta(days=1), time(9, 0), NEW_YORK))
    make_blackout(studio, datetime.combine(change - timedelta(days=2), time(20), NEW_YORK),
                  datetime.combine(change - timedelta(days=1), time(4), NEW_YORK), resource=piano)

    ranged = client.get(_url(f"from={first}&to={last}"))
    assert ranged.status_code == 200
    body = ranged.get_json()
    assert (body["from"], body["to"], body["timezone"]) == (first.isoformat(), last.isoformat(), "America/New_York")
    assert [d["date"] for d in body["days"]] == [(first + timedelta(days=n)).isoformat() for n in range(62)]
    for entry in body["days"]:
        one = client.get(_url(f"date={entry['date']}"))
        assert one.status_code == 200, entry["date"]
        assert entry["slots"] == one.get_json()["slots"], entry["date"]
    by_day = {d["date"]: d["slots"] for d in body["days"]}
    offsets = {datetime.fromisoformat(s).utcoffset() for d in body["days"] for s in d["slots"]}
    assert offsets == {timedelta(hours=-4), timedelta(hours=-5)}
    assert datetime.combine(change, time(1, 30), NEW_YORK).isoformat() not in by_day[change.isoformat()]
    assert all(s >= f"{change - timedelta(days=1)}T04:00" for s in by_day[(change - timedelta(days=1)).isoformat()])


def test_days_outside_the_booking_window_are_listed_without_times(client, studio):
    today = utcnow().astimezone(NEW_YORK).date()
    body = client.get(_url(f"from={today - timedelta(days=3)}&to={today + timedelta(days=3)}")).get_json()
    assert [d["slots"] for d in body["days"][:3]] == [[], [], []]
    assert body["days"][4]["slots"]
    assert client.get(_url(f"date={today - timedelta(days=1)}")).status_code == 422


@pytest.mark.parametrize("query,code", [
    ("from=2030-01-01&to=2030-03-04", "range_too_long"),  # 63 days
    ("from=2030-01-10&to=2030-01-09", "range_reversed"),
    ("from=2030-1-1&to=2030-01-09", "from_invalid"),
    ("from=2030-01-01&to=soon", "to_invalid"),
    ("from=2030-02-30&to=2030-03-01", "from_invalid"),
    ("from=1999-01-01&to=1999-01-02", "from_out_of_range"),
    ("from=2030-01-01", "parameter_missing"),
    ("to=2030-01-01", "parameter_missing"),
])
def test_bad_ranges_are_422_with_a_reason(client, studio, query, code):
    response = client.get(_url(query))
    assert response.status_code == 422
    assert response.get_json()["error"] == code and response.get_json()["detail"]


def test_62_days_is_the_longest_range(client, studio):
    body = client.get(_url("from=2030-01-01&to=2030-03-03")).get_json()
    assert len(body["days"]) == 62
