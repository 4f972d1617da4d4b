"""Concurrent bookings spending the last credits: the database lets exactly as many through as there are credits,
the others get a clear 409, and the balance never goes below zero."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Studio, User
from portal.services import audit, credits
from portal.services.errors import DomainError
from tests.credits.conftest import assert_ledger_matches_balances, local
from tests.factories import next_weekday

ENGINE = {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 20, "max_overflow": 0, "pool_timeout": 60}}


def _race(app, studio_id, student_id, starts):
    barrier = threading.Barrier(len(starts))
    outcomes: list[tuple[str, int | None]] = []
    lock = threading.Lock()

    def attempt(start):
        with app.app_context(), tenancy.scoped(studio_id):
            studio = db.session.get(Studio, studio_id)
            student = db.session.get(User, student_id)
            db.session.commit()
            barrier.wait(timeout=30)
            try:
                credits.book_with_credit(studio=studio, student=student, package_slug="lesson-60",
                                         resource_slug="piano", start_raw=start.isoformat(), now=utcnow())
                result = ("booked", None)
            except DomainError as refused:
                result = (refused.code, refused.status)
            except Exception as error:  # recorded so the assertion shows it
                result = (f"error: {error!r}", None)
            finally:
                db.session.remove()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(s,)) for s in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
@pytest.mark.parametrize("app_overrides", [ENGINE])
@pytest.mark.parametrize("credits_held, racers", [(1, 2), (3, 10)])
def test_racing_bookings_spend_exactly_the_credits_there_are(app, studio, backend, credits_held, racers):
    alice = studio.students[0]
    with tenancy.scoped(studio.id):
        credits.grant(studio=db.session.get(Studio, studio.id), student_id=alice.id, minutes=60, amount=credits_held,
                      valid_days=90, note="pack", actor=audit.SYSTEM, now=utcnow())
    day = next_weekday(3)
    starts = [local(studio, day, "08:00") + timedelta(hours=i) for i in range(racers)]  # all different slots
    alice_id = alice.id
    db.session.commit()  # end this thread's read: SQLite's writers would queue behind it
    outcomes = _race(app, studio.id, alice_id, starts)
    booked = [o for o in outcomes if o[0] == "booked"]
    refused = [o for o in outcomes if o[0] != "booked"]
    assert len(booked) == credits_held, outcomes
    assert refused and all(o == ("no_credit", 409) for o in refused), outcomes
    with tenancy.scoped(studio.id):
        assert credits.usable(alice_id, 60) == 0
        assert credits.ledger_sum(alice_id) == 0
        assert db.session.scalar(select(func.count(Booking.id)).where(
            Booking.status == BookingStatus.CONFIRMED)) == credits_held
        db.session.commit()
    assert_ledger_matches_balances(studio.id)
