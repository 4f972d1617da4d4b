"""The state machines: every allowed transition works, every other is refused (409) and changes nothing,
the database refuses statuses that do not exist, and two racing attempts leave exactly one winner."""
from __future__ import annotations

import threading
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import (
    AuditEntry,
    Booking,
    BookingStatus,
    ConfigProposal,
    ConfigState,
    ConfigVersion,
    EventStatus,
    Payment,
    PaymentStatus,
    ProposalState,
    Refund,
    RefundStatus,
    Role,
    WebhookEvent,
)
from portal.services import audit
from portal.services.states import booking as booking_states
from portal.services.states import config_proposal as proposal_states
from portal.services.states import config_version as version_states
from portal.services.states import payment as payment_states
from portal.services.states import refund as refund_states
from portal.services.states import webhook_event as event_states
from portal.services.states.machine import IllegalTransition
from tests.conftest import BOTH
from tests.factories import make_studio, make_user

MACHINES = {"booking": booking_states.MACHINE, "payment": payment_states.MACHINE, "refund": refund_states.MACHINE,
            "webhook event": event_states.MACHINE, "configuration version": version_states.MACHINE,
            "proposal": proposal_states.MACHINE}
STATUSES = {"booking": BookingStatus, "payment": PaymentStatus, "refund": RefundStatus, "webhook event": EventStatus,
            "configuration version": ConfigState, "proposal": ProposalState}
CASES = [(noun, name, status) for noun, machine in MACHINES.items() for name in machine.transitions
         for status in STATUSES[noun]]


class Rows:
    """Rows of each model in a chosen status, built directly (the machines are what is under test)."""

    def __init__(self):
        self.studio = make_studio(buffer_minutes=0)
        self.student = make_user("student@example.com", roles=[(self.studio, Role.STUDENT)])
        self.package_id = self.studio_package()
        self.resource_id = self.studio_resource()
        self.slots = 0

    def studio_package(self):
        from portal.models import Package

        with tenancy.all_tenants():
            return db.session.scalar(select(Package.id).where(Package.studio_id == self.studio.id).limit(1))

    def studio_resource(self):
        from portal.models import Resource

        with tenancy.all_tenants():
            return db.session.scalar(select(Resource.id).where(Resource.studio_id == self.studio.id).limit(1))

    def booking(self, status: BookingStatus) -> int:
        self.slots += 1  # each booking its own hour: live ones may not overlap
        start = datetime.combine(utcnow().date() + timedelta(days=30), time(0), self.studio.tz) \
            + timedelta(hours=self.slots)
        row = Booking(studio_id=self.studio.id, student_id=self.student.id, package_id=self.package_id,
                      resource_id=self.resource_id, start_at=start, end_at=start + timedelta(minutes=60),
                      occupied_until=start + timedelta(minutes=60), status=status,
                      hold_expires_at=utcnow() + timedelta(minutes=30), price_minor=6500, currency="usd")
        db.session.add(row)
        db.session.commit()
        return row.id

    def payment(self, status: PaymentStatus) -> int:
        booking_id = self.booking(BookingStatus.CONFIRMED if status != PaymentStatus.PENDING else BookingStatus.HELD)
        row = Payment(studio_id=self.studio.id, booking_id=booking_id, checkout_session_id=f"cs_{booking_id}",
                      amount_minor=6500, currency="usd", status=status,
                      amount_received_minor=6500 if status not in (PaymentStatus.PENDING, PaymentStatus.EXPIRED)
                      else None)
        db.session.add(row)
        db.session.commit()
        return row.id

    def refund(self, status: RefundStatus) -> int:
        payment_id = self.payment(PaymentStatus.PAID)
        row = Refund(studio_id=self.studio.id, payment_id=payment_id, amount_minor=100, currency="usd",
                     reason="test", purpose_key=f"test:{payment_id}", status=status)
        db.session.add(row)
        db.session.commit()
        return row.id

    def webhook_event(self, status: EventStatus) -> int:
        self.slots += 1
        row = WebhookEvent(provider_event_id=f"evt_{self.slots}", type="checkout.session.completed", payload={},
                           status=status, updated_at=utcnow() - timedelta(hours=1))
        db.session.add(row)
        db.session.commit()
        return row.id

    def configuration_version(self, state: ConfigState) -> int:
        if state == ConfigState.PUBLISHED:  # one published version per studio: the first one steps aside
            db.session.execute(update(ConfigVersion).where(ConfigVersion.state == ConfigState.PUBLISHED)
                               .values(state=ConfigState.ARCHIVED))
        self.slots += 1
        row = ConfigVersion(studio_id=self.studio.id, version=self.slots + 1, state=state, document={},
                            updated_at=utcnow())
        db.session.add(row)
        db.session.commit()
        return row.id

    def proposal(self, state: ProposalState) -> int:
        row = ConfigProposal(studio_id=self.studio.id, state=state, changes={}, document={}, base_version=1,
                             proposer_label="key", updated_at=utcnow())
        db.session.add(row)
        db.session.commit()
        return row.id

    def make(self, noun: str, status):
        return getattr(self, noun.replace(" ", "_"))(status)


@pytest.fixture
def rows(app_ctx):
    with tenancy.all_tenants():
        yield Rows()


def _status(machine, row_id):
    db.session.expire_all()
    return db.session.scalar(select(getattr(machine.model, machine.column)).where(machine.model.id == row_id))


@BOTH
@pytest.mark.parametrize("noun,name,status", CASES, ids=[f"{n}.{t}-from-{s.value}" for n, t, s in CASES])
def test_each_transition_from_each_status(rows, noun, name, status):
    machine = MACHINES[noun]
    row_id = rows.make(noun, status)
    now = utcnow()
    transition = machine.transitions[name]
    if status in transition.sources:
        if transition.target == ConfigState.PUBLISHED:  # the database allows one published version per studio
            db.session.execute(update(ConfigVersion).where(ConfigVersion.state == ConfigState.PUBLISHED)
                               .values(state=ConfigState.ARCHIVED))
        left = machine.apply(row_id, name, now=now, actor=audit.SYSTEM, note="test")
        db.session.commit()
        assert left == status
        assert _status(machine, row_id) == transition.target
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.target_id == row_id,
                                                           AuditEntry.target_type == noun))
        assert (entry.before["status"], entry.after["status"], entry.actor_kind) == (
            status.value, transition.target.value, "system")
    else:
        with pytest.raises(IllegalTransition) as refused:
            machine.apply(row_id, name, now=now, actor=audit.SYSTEM)
        assert refused.value.status == 409 and refused.value.current == status
        assert f"is {status.value.replace('_', ' ')}" in refused.value.message
        db.session.rollback()
        assert _status(machine, row_id) == status  # nothing changed, no audit row
        assert db.session.scalar(select(AuditEntry.id).where(AuditEntry.target_id == row_id)) is None


def test_every_transition_has_a_target_and_sources_of_its_own_enum():
    for noun, machine in MACHINES.items():
        for name, transition in machine.transitions.items():
            assert transition.sources and transition.sources <= set(STATUSES[noun]), (noun, name)
            assert isinstance(transition.target, STATUSES[noun])


@BOTH
def test_the_database_refuses_a_status_that_does_not_exist(rows):
    booking_id = rows.booking(BookingStatus.HELD)
    for retired in ("rescheduled", "refunded", "bogus"):
        with pytest.raises(IntegrityError):
            db.session.execute(text("UPDATE bookings SET status = :s WHERE id = :id"),
                               {"s": retired, "id": booking_id})
            db.session.flush()
        db.session.rollback()
    assert _status(booking_states.MACHINE, booking_id) == BookingStatus.HELD


@BOTH
def test_the_database_allows_one_published_configuration_per_studio(rows):
    draft_id = rows.configuration_version(ConfigState.DRAFT)
    with pytest.raises(IntegrityError):
        db.session.execute(update(ConfigVersion).where(ConfigVersion.id == draft_id)
                           .values(state=ConfigState.PUBLISHED))
        db.session.flush()
    db.session.rollback()


@BOTH
def test_an_audit_row_is_undone_with_its_change(rows):
    booking_id = rows.booking(BookingStatus.HELD)
    booking_states.release(booking_id, now=utcnow(), actor=audit.Actor.of(rows.student), note="changed my mind")
    db.session.rollback()
    assert _status(booking_states.MACHINE, booking_id) == BookingStatus.HELD
    assert db.session.scalar(select(AuditEntry.id)) is None


@BOTH
def test_release_expires_an_open_payment_and_keeps_a_failed_one_failed(rows):
    now = utcnow()
    for payment_status, expected in ((PaymentStatus.PENDING, PaymentStatus.EXPIRED),
                                     (PaymentStatus.FAILED, PaymentStatus.FAILED)):
        payment_id = rows.payment(payment_status)
        payment = db.session.get(Payment, payment_id)
        db.session.execute(text("UPDATE bookings SET status = 'held' WHERE id = :id"), {"id": payment.booking_id})
        db.session.commit()
        booking_states.release(payment.booking_id, now=now, actor=audit.SYSTEM, note="expired")
        db.session.commit()
        assert _status(booking_states.MACHINE, payment.booking_id) == BookingStatus.EXPIRED
        assert _status(payment_states.MACHINE, payment_id) == expected
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.target_id == payment.booking_id,
                                                           AuditEntry.action == "booking.release"))
        assert entry.note == "expired" and entry.actor_label == "system"


@BOTH
def test_a_hold_whose_payment_is_moving_is_not_released(rows):
    payment_id = rows.payment(PaymentStatus.PROCESSING)
    booking_id = db.session.get(Payment, payment_id).booking_id
    db.session.execute(text("UPDATE bookings SET status = 'held' WHERE id = :id"), {"id": booking_id})
    db.session.commit()
    with pytest.raises(IllegalTransition, match="payment for this booking is under way"):
        booking_states.release(booking_id, now=utcnow(), actor=audit.SYSTEM, note="sweep")
    db.session.rollback()
    assert _status(booking_states.MACHINE, booking_id) == BookingStatus.HELD


@BOTH
def test_a_claimed_event_is_not_claimed_again_until_its_lease_runs_out(rows):
    event_id = rows.webhook_event(EventStatus.QUEUED)
    now = utcnow()
    lease = timedelta(minutes=5)
    assert event_states.claim(event_id, now=now, max_attempts=3, lease=lease) == 1
    db.session.commit()
    with pytest.raises(IllegalTransition, match="being processed"):
        event_states.claim(event_id, now=now + timedelta(minutes=1), max_attempts=3, lease=lease)
    db.session.rollback()
    assert event_states.claim(event_id, now=now + timedelta(minutes=6), max_attempts=3, lease=lease) == 2
    db.session.commit()
    with pytest.raises(IllegalTransition, match="took this event over"):  # the first worker's late finish
        event_states.finish(event_id, now=now + timedelta(minutes=7), attempt=1)
    db.session.rollback()
    event_states.finish(event_id, now=now + timedelta(minutes=7), attempt=2)
    db.session.commit()
    assert _status(event_states.MACHINE, event_id) == EventStatus.PROCESSED


# --- races on PostgreSQL: one winner, one clean refusal ---------------------------------------------------------

RACES = [
    ("booking", BookingStatus.HELD, lambda row_id, now: booking_states.release(
        row_id, now=now, actor=audit.SYSTEM, note="race")),
    ("booking", BookingStatus.CONFIRMED, lambda row_id, now: booking_states.cancel(
        row_id, now=now, actor=audit.SYSTEM, late=False)),
    ("payment", PaymentStatus.PENDING, lambda row_id, now: payment_states.settle(
        row_id, now=now, amount_minor=6500, currency="usd", intent_id="pi_1")),
    ("refund", RefundStatus.FAILED, lambda row_id, now: refund_states.retry(
        row_id, now=now, actor=audit.SYSTEM, note="race")),
    ("webhook event", EventStatus.QUEUED, lambda row_id, now: event_states.claim(
        row_id, now=now, max_attempts=5, lease=timedelta(minutes=5))),
]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("noun,status,attempt", RACES, ids=[f"{n}-{s.value}" for n, s, _ in RACES])
def test_two_attempts_at_once_leave_one_winner(app, rows, noun, status, attempt):
    row_id = rows.make(noun, status)
    db.session.remove()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def contender():
        with app.app_context(), tenancy.all_tenants():
            # Both read the row before either writes: the conditional UPDATE decides, and the loser waits for the
            # winner's commit, then finds the status changed.
            db.session.execute(select(MACHINES[noun].model.id).where(MACHINES[noun].model.id == row_id))
            barrier.wait()
            try:
                attempt(row_id, utcnow())
                db.session.commit()
                outcomes.append("won")
            except IllegalTransition as refused:
                db.session.rollback()
                assert refused.status == 409
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=contender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused", "won"]
    with tenancy.all_tenants():
        assert _status(MACHINES[noun], row_id) == MACHINES[noun].transitions[
            {"booking": "release" if status == BookingStatus.HELD else "cancel", "payment": "settle",
             "refund": "retry", "webhook event": "claim"}[noun]].target
        audited = db.session.scalars(select(AuditEntry.id).where(AuditEntry.target_id == row_id,
                                                                 AuditEntry.target_type == noun)).all()
        assert len(audited) == (1 if noun in ("booking", "refund") else 0)
