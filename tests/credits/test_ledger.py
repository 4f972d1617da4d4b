"""The credit ledger: balances follow the entries, lots expire, spending is first-to-expire, and the database
refuses a negative balance and a changed entry."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import AuditEntry, Booking, BookingStatus, CreditBalance, CreditEntry, CreditKind, Studio
from portal.services import audit, credits
from portal.services.errors import SlotUnavailable
from portal.services.states import credit as credit_states
from tests.conftest import BOTH
from tests.credits.conftest import assert_ledger_matches_balances, local, soon_start
from tests.factories import next_weekday


def _grant(studio, student, amount=1, minutes=60, valid_days=180, now=None):
    with tenancy.scoped(studio.id):
        return credits.grant(studio=db.session.get(Studio, studio.id), student_id=student.id, minutes=minutes,
                             amount=amount, valid_days=valid_days, note="welcome", actor=audit.Actor.of(studio.admin),
                             now=now or utcnow())


def _book(studio, student, start, package="lesson-60", resource="piano", now=None):
    with tenancy.scoped(studio.id):
        return credits.book_with_credit(studio=db.session.get(Studio, studio.id), student=student,
                                        package_slug=package, resource_slug=resource, start_raw=start.isoformat(),
                                        now=now or utcnow())


@BOTH
def test_a_credit_books_a_confirmed_lesson_and_the_balance_is_the_ledger_sum(studio):
    alice = studio.students[0]
    _grant(studio, alice, amount=2)
    booking = _book(studio, alice, local(studio, next_weekday(2), "16:00"))
    assert booking.status == BookingStatus.CONFIRMED and booking.price_minor == 0
    assert booking.policy["cancel_window_hours"] == 24  # its own policy snapshot
    with tenancy.scoped(studio.id):
        assert credits.usable(alice.id, 60) == 1
        summary = credits.as_json(alice.id)
        assert summary["balance"] == 1 == sum(e["amount"] for e in summary["entries"])
        assert [e["kind"] for e in summary["entries"]] == ["booking", "grant"]
        assert summary["entries"][0]["booking"] == booking.id
        actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert "credit.grant" in actions and "credit.booking" in actions
    from portal.services import reconciliation

    with tenancy.all_tenants():  # a lesson paid with a credit is paid, for the ops invariant
        assert reconciliation.items("confirmed_without_payment", utcnow()) == []
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_credits_are_tied_to_the_lesson_length(studio):
    alice = studio.students[0]
    _grant(studio, alice, amount=1, minutes=30)
    with pytest.raises(credits.NoCredit) as refused:
        _book(studio, alice, local(studio, next_weekday(2), "16:00"), package="lesson-60")
    assert refused.value.status == 409 and "60-minute" in refused.value.message
    short = _book(studio, alice, local(studio, next_weekday(2), "16:00"), package="lesson-30")
    assert short.status == BookingStatus.CONFIRMED
    with tenancy.scoped(studio.id):
        assert db.session.scalar(select(Booking.id).where(Booking.package.has(slug="lesson-60"))) is None
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_a_taken_slot_spends_no_credit(studio):
    alice, bob = studio.students[:2]
    start = local(studio, next_weekday(3), "10:00")
    _grant(studio, alice)
    _grant(studio, bob)
    _book(studio, alice, start)
    with pytest.raises(SlotUnavailable):
        _book(studio, bob, start)
    with tenancy.scoped(studio.id):
        assert credits.usable(bob.id, 60) == 1
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_the_earliest_expiring_lot_is_spent_first_and_expired_lots_are_written_off(studio):
    alice = studio.students[0]
    now = utcnow()
    _grant(studio, alice, amount=2, valid_days=100, now=now)
    soon = _grant(studio, alice, amount=1, valid_days=10, now=now)
    first = _book(studio, alice, local(studio, next_weekday(1), "09:00"), now=now)
    with tenancy.scoped(studio.id):
        spent = credits.spent_on(first.id)
        assert spent.lot_id == soon.id
    # Forty days on, nothing of the short lot is left to expire; the long lot still has 2.
    assert credits.expire_due(now=now + timedelta(days=40)) == 0
    # After the long lot's expiry its 2 credits are written off, once.
    later = now + timedelta(days=101)
    assert credits.expire_due(now=later) == 2
    assert credits.expire_due(now=later) == 0
    with tenancy.scoped(studio.id):
        assert credits.usable(alice.id, 60) == 0
        kinds = [e.kind for e in credits.history(alice.id)]
        assert kinds[0] == CreditKind.EXPIRY
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_an_expired_credit_cannot_be_spent_even_before_the_sweep(studio):
    alice = studio.students[0]
    now = utcnow()
    _grant(studio, alice, amount=1, valid_days=1, now=now)
    with pytest.raises(credits.NoCredit) as refused:
        _book(studio, alice, local(studio, next_weekday(2, after_days=4), "11:00"), now=now + timedelta(days=2))
    assert "expired" in refused.value.message
    with tenancy.scoped(studio.id):
        assert db.session.scalar(select(Booking.id)) is None
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_revoking_more_than_the_balance_is_refused_and_changes_nothing(studio):
    alice = studio.students[0]
    _grant(studio, alice, amount=2)
    with tenancy.scoped(studio.id):
        row = db.session.get(Studio, studio.id)
        with pytest.raises(credits.NoCredit):
            credits.revoke(studio=row, student_id=alice.id, minutes=60, amount=3, note="mistake",
                           actor=audit.Actor.of(studio.admin), now=utcnow())
        credits.revoke(studio=row, student_id=alice.id, minutes=60, amount=2, note="mistake",
                       actor=audit.Actor.of(studio.admin), now=utcnow())
        assert credits.usable(alice.id, 60) == 0
        revokes = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "credit.revoke")).all()
        assert [r.note for r in revokes] == ["mistake"]
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_the_database_refuses_a_negative_balance_and_a_changed_entry(studio):
    alice = studio.students[0]
    entry = _grant(studio, alice, amount=1)
    with tenancy.scoped(studio.id):
        with pytest.raises(IntegrityError):
            db.session.execute(update(CreditBalance).values(balance=-1))
            db.session.flush()
        db.session.rollback()
        with pytest.raises((IntegrityError, DBAPIError)) as changed:
            db.session.execute(text("UPDATE credit_ledger SET amount = 5 WHERE id = :id"), {"id": entry.id})
        assert "credit_ledger_append_only" in str(changed.value)
        db.session.rollback()
        # A direct spend past zero is refused by the owner too, and leaves the row alone.
        credit_states.take(studio_id=studio.id, student_id=alice.id, minutes=60, count=1, kind=CreditKind.REVOKE,
                           now=utcnow(), actor=audit.SYSTEM, note="x")
        with pytest.raises(credits.NoCredit):
            credit_states.take(studio_id=studio.id, student_id=alice.id, minutes=60, count=1,
                               kind=CreditKind.REVOKE, now=utcnow(), actor=audit.SYSTEM, note="x")
        db.session.commit()
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_grants_need_a_note_and_a_sensible_amount(studio):
    from portal.services.errors import InvalidInput

    alice = studio.students[0]
    with tenancy.scoped(studio.id):
        row = db.session.get(Studio, studio.id)
        for amount, note in ((0, "x"), (201, "x"), (1, "  ")):
            with pytest.raises(InvalidInput):
                credits.grant(studio=row, student_id=alice.id, minutes=60, amount=amount, valid_days=None,
                              note=note, actor=audit.SYSTEM, now=utcnow())
        assert db.session.scalar(select(CreditEntry.id)) is None


def _cancel(studio, booking_id, student, now):
    from portal.services import lesson_changes

    with tenancy.scoped(studio.id):
        booking = db.session.get(Booking, booking_id)
        lesson_changes.cancel(booking=booking, actor=student, now=now)


@BOTH
def test_cancelling_in_time_returns_the_credit_with_its_expiry(studio):
    alice = studio.students[0]
    now = utcnow()
    lot = _grant(studio, alice, amount=1, valid_days=30, now=now)
    booking = _book(studio, alice, local(studio, next_weekday(2, after_days=5), "12:00"), now=now)
    _cancel(studio, booking.id, alice, now)
    with tenancy.scoped(studio.id):
        back = credits.history(alice.id)[0]
        assert (back.kind, back.amount, back.booking_id) == (CreditKind.RETURNED, 1, booking.id)
        assert back.expires_at == lot.expires_at
        assert credits.usable(alice.id, 60) == 1
    assert_ledger_matches_balances(studio.id)


@BOTH
def test_a_late_cancel_keeps_the_credit_unless_the_policy_gives_a_make_up(studio):
    alice = studio.students[0]
    now = utcnow()
    _grant(studio, alice, amount=2, now=now)
    soon = soon_start(studio.tz, after_hours=5)
    booking = _book(studio, alice, soon, now=now)
    _cancel(studio, booking.id, alice, now)
    with tenancy.scoped(studio.id):
        assert credits.usable(alice.id, 60) == 1  # the late cancel cost the credit
        db.session.execute(update(Studio).where(Studio.id == studio.id).values(late_cancel_makeup=True))
        db.session.commit()
    again = _book(studio, alice, soon + timedelta(hours=1), now=now)
    _cancel(studio, again.id, alice, now)
    with tenancy.scoped(studio.id):
        makeup = credits.history(alice.id)[0]
        assert makeup.kind == CreditKind.MAKEUP
        assert makeup.expires_at == now + timedelta(days=60)  # the studio's make-up validity
        assert credits.usable(alice.id, 60) == 1
    # The make-up credit books a lesson instead of paying.
    assert _book(studio, alice, soon + timedelta(days=3), now=now).status == BookingStatus.CONFIRMED
    assert_ledger_matches_balances(studio.id)
