"""`Last-Modified` on the public answers that depend on the studio row alone (the studio page, the catalogue and
configuration answers): when the row last changed, never earlier than the process began serving, and absent within a
second of that date. A repeat with `If-Modified-Since` is `304` until the studio changes; `If-None-Match` wins over
it. Free times read bookings and the clock, and logged-in pages are private: neither carries a date."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
import time_machine
from werkzeug.http import http_date

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Package, Role, Studio
from portal.services import audit, catalogue, configuration, studios
from tests.conftest import BOTH
from tests.factories import PASSWORD, make_studio, make_user, next_weekday

STUDIO = "/s/melody-and-meter"
DATED = [f"{STUDIO}/", f"{STUDIO}/api/packages", f"{STUDIO}/api/config"]


@pytest.fixture
def studio(app_ctx):
    studio = make_studio(buffer_minutes=0)
    make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    return studio


@contextmanager
def still_clock(seconds_ahead: float):
    """The clock stopped `seconds_ahead` of now; `.shift(s)` moves it."""
    with time_machine.travel(utcnow() + timedelta(seconds=seconds_ahead), tick=False) as traveller:
        yield traveller


def _changed_at(studio) -> object:
    return db.session.scalar(db.select(Studio.changed_at).where(Studio.id == studio.id).execution_options(
        populate_existing=True))


def _suspend(studio):
    studios.suspend(studio.id, actor=audit.SYSTEM, note="unpaid invoice", now=utcnow())


def _rename_package(studio):
    with tenancy.scoped(studio.id):
        package = db.session.scalar(db.select(Package).where(Package.slug == "lesson-60"))
        catalogue.save_package(studio, package, {"name": "Hour lesson", "slug": "lesson-60", "duration_minutes": "60",
                                                 "price": "70.00", "active": "1"}, actor=audit.SYSTEM, now=utcnow())


def _publish(studio):
    with tenancy.scoped(studio.id):
        draft = configuration.create_draft(studio, {"branding": {"primary_color": "#123456"}},
                                           actor=audit.SYSTEM, note="colour", now=utcnow())
        configuration.publish(studio, draft.version, actor=audit.SYSTEM, note="colour", now=utcnow())


@pytest.mark.parametrize("change", [_suspend, _rename_package, _publish])
def test_every_kind_of_write_to_the_studio_row_moves_its_changed_at(studio, change):
    with still_clock(60) as clock:
        before = _changed_at(studio)
        assert before < utcnow()
        clock.shift(30)
        change(studio)
        assert _changed_at(studio) == utcnow()


@BOTH
@pytest.mark.parametrize("path", DATED)
def test_an_if_modified_since_repeat_is_304_until_the_studio_changes(client, studio, path):
    with still_clock(60) as clock:
        first = client.get(path)
        assert first.status_code == 200
        assert first.headers["Last-Modified"] == http_date(_changed_at(studio))
        since = {"If-Modified-Since": first.headers["Last-Modified"]}
        for _ in range(2):  # rendered, then (the studio page and catalogue) a kept or versioned answer
            repeat = client.get(path, headers=since)
            assert repeat.status_code == 304 and repeat.get_data() == b""
            assert repeat.headers["ETag"] == first.headers["ETag"]

        clock.shift(5)
        _suspend(studio)
        same_second = client.get(path, headers=since)
        assert same_second.status_code == 200
        assert "Last-Modified" not in same_second.headers  # a date within the second of a change is no validator
        assert same_second.headers["ETag"] != first.headers["ETag"]

        clock.shift(1)
        later = client.get(path, headers=since)
        assert later.status_code == 200 and later.headers["Last-Modified"] == http_date(utcnow() - timedelta(seconds=1))
        assert client.get(path, headers={"If-Modified-Since": later.headers["Last-Modified"]}).status_code == 304


def test_the_date_is_never_earlier_than_the_process_began_serving(app, client, studio):
    with still_clock(60) as clock:
        app.extensions["serving_since"] = utcnow()  # as if this process had started now, after a deploy
        assert "Last-Modified" not in client.get(DATED[0]).headers
        clock.shift(2)
        assert client.get(DATED[0]).headers["Last-Modified"] == http_date(utcnow() - timedelta(seconds=2))
        assert _changed_at(studio) < utcnow() - timedelta(seconds=2)


def test_if_none_match_wins_over_if_modified_since(client, studio):
    with still_clock(60):
        first = client.get(DATED[0])
        dated = {"If-Modified-Since": first.headers["Last-Modified"]}
        assert client.get(DATED[0], headers={**dated, "If-None-Match": '"another"'}).status_code == 200
        assert client.get(DATED[0], headers={**dated, "If-None-Match": first.headers["ETag"]}).status_code == 304


def test_free_times_and_logged_in_pages_carry_no_date(client, studio, auth):
    day = next_weekday(2)
    with still_clock(60):
        for path in (f"{STUDIO}/api/availability?package=lesson-60&resource=piano&date={day}",
                     f"{STUDIO}/packages/lesson-60?resource=piano&date={day}"):
            response = client.get(path)
            assert response.status_code == 200 and response.headers["ETag"], path
            assert "Last-Modified" not in response.headers, path
        assert "Last-Modified" in client.get(DATED[0]).headers
        auth.login("student@example.com", PASSWORD)
        mine = client.get(DATED[0], headers={"If-Modified-Since": http_date(utcnow())})
        assert mine.status_code == 200 and "Last-Modified" not in mine.headers
