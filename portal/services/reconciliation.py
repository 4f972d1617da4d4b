"""Where money and bookings disagree: the ops console's reconciliation queries (and the health gauges).

Each query is one SELECT across every studio that yields its items with an `id`, the `studio_id`, the moment the
item's age counts from (`since`) and a few columns to show. Items an ops person marked resolved
(`ops_resolutions`) leave the list. The queries filter on indexed status columns whose interesting values are
rare (dead events, mismatches, live holds), so they stay cheap however many healthy rows there are.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import Interval, Select, and_, exists, func, literal, or_, select, text, union_all
from sqlalchemy.orm import aliased

from portal import tenancy
from portal.extensions import db
from portal.models import (
    Booking,
    BookingStatus,
    CreditEntry,
    CreditKind,
    DriftFinding,
    EventStatus,
    PackPurchase,
    PackPurchaseStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Resolution,
    Studio,
    WebhookEvent,
)
from portal.services.fulfilment import configured_lease

#: Something still unfinished after this long is stuck (the runbook's ten minutes).
STUCK_AFTER = timedelta(minutes=10)
PAID_SESSION_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
#: How far back the cheap form of the must-be-empty invariant checks looks (see `_confirmed_without_payment`).
RECENTLY_CHANGED = timedelta(days=35)
#: Overlaps matter for lessons still to come (or under way); the check looks at those, through the start index.
LESSONS_IN_PLAY = timedelta(days=1)
#: The cheap form of the overlap check looks at bookings changed this recently (through the status/updated index):
#: an overlap can only appear through a change, and `flask ops check` runs far more often than this.
OVERLAPS_CHANGED_WITHIN = timedelta(days=1)
#: Longer than any booking occupies its resource (a lesson is at most 480 minutes, its buffer at most 120): two
#: bookings that overlap start less than this apart, which bounds the index range each probe reads.
LONGEST_OCCUPANCY = timedelta(days=1)
SETTLED = (PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)
BACKLOG_STATUSES = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING, EventStatus.RETRY,
                    EventStatus.DEAD)


@dataclass(frozen=True)
class Query:
    name: str
    title: str
    entity: str                # booking | payment | pack_purchase | refund | event | drift
    why: str                   # what it means and what to do, for the console and the CLI
    build: Callable[..., Select]  # (now, full=False) -> the items
    must_be_empty: bool = False
    #: `flask ops check` fails when the oldest item is older than this (None: only `must_be_empty` counts).
    alert_after: timedelta | None = timedelta(0)
    columns: tuple[str, ...] = field(default=())


def _unresolved(query: str, entity: str, id_column, changed_column):
    """Not marked resolved since it last changed: an item that changes after ops settled it (a replayed event that
    died again, a refund retried and failed again) is back on the list."""
    return ~exists().where(Resolution.query == query, Resolution.entity_type == entity,
                           Resolution.entity_id == id_column, Resolution.created_at >= changed_column)


def _paid_unconfirmed(now: datetime) -> Select:
    # Paid here but the booking still only held (cannot happen but through a failure between the two), and paid
    # at Stripe (a stored paid-session event) while the payment here is still waiting or already gave up. Each part
    # names the payment, its columns and since when; a payment found by two parts is listed once, from the earliest.
    # (Each part reads the payment's columns itself: joining the parts back to `payments` had the planner hash the
    # whole table.)
    shown = (Payment.id, Payment.studio_id, Payment.booking_id, Payment.amount_minor, Payment.currency,
             Payment.status, Payment.checkout_session_id, Payment.updated_at)
    paid_here = (select(*shown, Payment.paid_at.label("since"))
                 .join(Booking, Booking.id == Payment.booking_id)
                 .where(Booking.status == BookingStatus.HELD, Payment.status == PaymentStatus.PAID,
                        Payment.flag.is_(None), Payment.paid_at < now - STUCK_AFTER))

    def paid_there(*where):
        return (select(*shown, WebhookEvent.received_at.label("since"))
                .join(WebhookEvent, WebhookEvent.object_id == Payment.checkout_session_id)
                .where(WebhookEvent.received_at < now - STUCK_AFTER, *where))

    waiting = paid_there(Payment.status == PaymentStatus.PENDING, WebhookEvent.type.in_(PAID_SESSION_EVENTS))
    # a delayed method's "completed" comes unpaid: only its "succeeded" means money
    delayed = paid_there(Payment.status == PaymentStatus.PROCESSING,
                         WebhookEvent.type == "checkout.session.async_payment_succeeded")
    # the hold lapsed and the payment with it, but the event bringing the money was never processed
    lapsed = paid_there(WebhookEvent.status.in_(BACKLOG_STATUSES), WebhookEvent.type.in_(PAID_SESSION_EVENTS),
                        Payment.status.in_((PaymentStatus.EXPIRED, PaymentStatus.FAILED)))
    found = union_all(paid_here, waiting, delayed, lapsed).subquery()
    columns = [found.c[column.key] for column in shown]
    return (select(found.c.id.label("id"), found.c.studio_id.label("studio_id"),
                   func.min(found.c.since).label("since"), *columns[2:-1])
            .where(_unresolved("paid_unconfirmed", "payment", found.c.id, found.c.updated_at))
            .group_by(*columns))


def _packs_paid_uncredited(now: datetime) -> Select:
    """A lesson pack paid at Stripe (a stored paid-session event more than 10 minutes old) whose purchase is still
    waiting or gave up, so its credits never reached the student."""
    return (select(PackPurchase.id.label("id"), PackPurchase.studio_id.label("studio_id"),
                   func.min(WebhookEvent.received_at).label("since"), PackPurchase.student_id,
                   PackPurchase.amount_minor, PackPurchase.currency, PackPurchase.status,
                   PackPurchase.checkout_session_id)
            .select_from(PackPurchase)
            .join(WebhookEvent, WebhookEvent.object_id == PackPurchase.checkout_session_id)
            .where(PackPurchase.status.in_((PackPurchaseStatus.PENDING, PackPurchaseStatus.EXPIRED)),
                   WebhookEvent.type.in_(PAID_SESSION_EVENTS), WebhookEvent.received_at < now - STUCK_AFTER,
                   _unresolved("packs_paid_uncredited", "pack_purchase", PackPurchase.id, PackPurchase.updated_at))
            .group_by(PackPurchase.id, PackPurchase.studio_id, PackPurchase.student_id, PackPurchase.amount_minor,
                      PackPurchase.currency, PackPurchase.status, PackPurchase.checkout_session_id))


def _event_columns():
    return (WebhookEvent.id.label("id"), WebhookEvent.studio_id.label("studio_id"),
            WebhookEvent.received_at.label("since"), WebhookEvent.provider_event_id, WebhookEvent.type,
            WebhookEvent.status, WebhookEvent.attempts, WebhookEvent.last_error, WebhookEvent.object_id)


def _stuck_events(now: datetime) -> Select:
    # Waiting events count from their arrival: the sweep bumps `updated_at` each time it queues them again.
    waiting = and_(WebhookEvent.status.in_((EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.RETRY)),
                   WebhookEvent.received_at < now - STUCK_AFTER)
    abandoned = and_(WebhookEvent.status == EventStatus.PROCESSING, WebhookEvent.updated_at < now - configured_lease())
    return select(*_event_columns()).where(
        or_(waiting, abandoned), _unresolved("stuck_events", "event", WebhookEvent.id, WebhookEvent.updated_at))


def _dead_events(now: datetime) -> Select:
    return select(*_event_columns()).where(WebhookEvent.status == EventStatus.DEAD,
                                           _unresolved("dead_events", "event", WebhookEvent.id,
                                                       WebhookEvent.updated_at))


def _unreleased_holds(now: datetime) -> Select:
    return (select(Booking.id.label("id"), Booking.studio_id.label("studio_id"),
                   Booking.hold_expires_at.label("since"), Booking.start_at, Booking.price_minor, Booking.currency,
                   Payment.status.label("payment_status"))
            .outerjoin(Payment, Payment.booking_id == Booking.id)
            .where(Booking.status == BookingStatus.HELD, Booking.hold_expires_at < now - STUCK_AFTER,
                   # a delayed payment still processing keeps its hold; a paid one is `paid_unconfirmed`'s
                   or_(Payment.id.is_(None), Payment.status.notin_((PaymentStatus.PROCESSING, PaymentStatus.PAID))),
                   _unresolved("unreleased_holds", "booking", Booking.id, Booking.updated_at)))


def _amount_mismatches(now: datetime, full: bool = False) -> Select:
    return (select(Payment.id.label("id"), Payment.studio_id.label("studio_id"),
                   func.coalesce(Payment.paid_at, Payment.updated_at).label("since"), Payment.booking_id,
                   Payment.amount_minor, Payment.currency, Payment.amount_received_minor, Payment.received_currency,
                   Payment.flag_detail)
            .where(Payment.status == PaymentStatus.MISMATCH,
                   _unresolved("amount_mismatches", "payment", Payment.id, Payment.updated_at)))


def _refund_columns():
    """A refund is of a booking's payment or of a lesson pack (`pack_purchase_id`, no booking)."""
    return (Refund.id.label("id"), Refund.studio_id.label("studio_id"), Refund.created_at.label("since"),
            Refund.payment_id, Payment.booking_id, Refund.pack_purchase_id, Refund.amount_minor, Refund.currency,
            Refund.status, Refund.attempts, Refund.last_error, Refund.reason, Refund.provider_refund_id)


def _stuck_refunds(now: datetime) -> Select:
    return (select(*_refund_columns()).outerjoin(Payment, Payment.id == Refund.payment_id)
            .where(or_(and_(Refund.status == RefundStatus.PENDING, Refund.created_at < now - STUCK_AFTER),
                       Refund.status == RefundStatus.FAILED),
                   Refund.reason != "external",  # Stripe's own refunds are `external_refunds`' to show
                   _unresolved("stuck_refunds", "refund", Refund.id, Refund.updated_at)))


def _confirmed_without_payment(now: datetime, full: bool = False) -> Select:
    """Confirmed bookings changed in the last `RECENTLY_CHANGED` (through the `updated_at` index): a booking
    becomes confirmed, or loses its payment, by a change, so a breach shows here for weeks after it happens.
    `full` checks every booking (`flask ops check --full`, for a periodic deep check)."""
    # Paid by its own payment, by its series' one payment (weekly lessons), or with a lesson credit.
    # Written as three NOT EXISTS (not NOT of an OR) so that each becomes an anti-join through an index (its own
    # payment's from the settled payments' partial index alone).
    unpaid = (~exists().where(Payment.booking_id == Booking.id, Payment.status.in_(SETTLED)),
              ~exists().where(Payment.series_id == Booking.series_id, Payment.status.in_(SETTLED)),
              ~exists().where(CreditEntry.booking_id == Booking.id, CreditEntry.kind == CreditKind.BOOKING))
    recent = () if full else (Booking.updated_at >= now - RECENTLY_CHANGED,)
    return (select(Booking.id.label("id"), Booking.studio_id.label("studio_id"), Booking.updated_at.label("since"),
                   Booking.start_at, Booking.price_minor, Booking.currency)
            .where(Booking.status == BookingStatus.CONFIRMED, *recent, *unpaid,
                   _unresolved("confirmed_without_payment", "booking", Booking.id, Booking.updated_at)))


def _overlapping_bookings(now: datetime, full: bool = False) -> Select:
    """Live bookings overlapping another on the same resource. Each recently changed booking probes the live
    bookings' resource/start index (`ix_bookings_live_span`, which on PostgreSQL also holds the span's end and the id,
    so a probe reads no table rows); on PostgreSQL a probe reads only the bookings starting less than
    `LONGEST_OCCUPANCY` earlier (date arithmetic on columns is not portable to SQLite, where the embedded default's
    few rows need no bound)."""
    other = aliased(Booking)
    live = (BookingStatus.HELD, BookingStatus.CONFIRMED)
    bound = ((other.start_at > Booking.start_at - literal(LONGEST_OCCUPANCY, Interval()),)
             if db.engine.dialect.name == "postgresql" else ())
    return (select(Booking.id.label("id"), Booking.studio_id.label("studio_id"), Booking.created_at.label("since"),
                   Booking.resource_id, Booking.start_at, other.id.label("overlaps"))
            .join(other, and_(other.resource_id == Booking.resource_id, other.id != Booking.id,
                              other.start_at < Booking.occupied_until, Booking.start_at < other.occupied_until,
                              *bound))
            .where(Booking.status.in_(live), other.status.in_(live),
                   *(() if full else (Booking.start_at >= now - LESSONS_IN_PLAY,
                                      Booking.updated_at >= now - OVERLAPS_CHANGED_WITHIN)),
                   _unresolved("overlapping_bookings", "booking", Booking.id, Booking.updated_at)))


def _external_refunds(now: datetime) -> Select:
    from portal.services.refunds import EXTERNAL

    return (select(*_refund_columns()).outerjoin(Payment, Payment.id == Refund.payment_id)
            .where(Refund.reason == EXTERNAL, _unresolved("external_refunds", "refund", Refund.id, Refund.updated_at)))


def _stripe_drift(now: datetime) -> Select:
    return (select(DriftFinding.id.label("id"), DriftFinding.studio_id.label("studio_id"),
                   DriftFinding.detected_at.label("since"), DriftFinding.kind, DriftFinding.provider_object_id,
                   DriftFinding.payment_id, DriftFinding.pack_purchase_id, DriftFinding.detail,
                   DriftFinding.last_seen_at)
            .where(DriftFinding.resolved_at.is_(None)))


QUERIES: dict[str, Query] = {q.name: q for q in (
    Query("paid_unconfirmed", "Paid but not confirmed", "payment",
          "Stripe took the money more than 10 minutes ago but the booking is not confirmed. Re-fetch the Checkout "
          "Session from Stripe and run fulfilment again (it confirms the lesson, or refunds it if the time is "
          "gone).", _paid_unconfirmed),
    Query("packs_paid_uncredited", "Lesson packs paid but not credited", "pack_purchase",
          "Stripe took the money for a lesson pack more than 10 minutes ago but its credits are not on the "
          "student's balance. Re-fetch the Checkout Session from Stripe: that adds the credits once.",
          _packs_paid_uncredited),
    Query("stuck_events", "Webhook events not processed", "event",
          "Stored more than 10 minutes ago and still waiting (received, queued, retrying, or held by a worker that "
          "stopped). The sweep queues an event again once it has waited 10 minutes: if they stay, the workers or "
          "Redis are down. Replay one once the cause is fixed.", _stuck_events),
    Query("dead_events", "Dead webhook events", "event",
          "Out of retries. Read the last error, fix its cause, then replay the event (or mark it resolved with the "
          "reason if it needs no processing).", _dead_events),
    Query("unreleased_holds", "Expired holds not released", "booking",
          "Holds past their expiry for more than 10 minutes that still block their time, with no payment under "
          "way or received. Release the hold.", _unreleased_holds),
    Query("amount_mismatches", "Amount or currency mismatches", "payment",
          "Stripe received a different amount or currency than the lesson costs. Never retried: investigate it as "
          "possible fraud, then refund in full.", _amount_mismatches, must_be_empty=True),
    Query("stuck_refunds", "Refunds pending or failed", "refund",
          "Refunds still pending after 10 minutes, or failed for good. Fix the cause (card, Stripe), then retry.",
          _stuck_refunds),
    Query("confirmed_without_payment", "Confirmed without a paid payment", "booking",
          "A confirmed lesson with no settled payment: nobody paid for it. Must always be empty.",
          _confirmed_without_payment, must_be_empty=True),
    Query("overlapping_bookings", "Overlapping live bookings", "booking",
          "Two live bookings on one resource at the same time, among lessons not over yet that changed in the "
          "last day (`flask ops check --full` looks at every booking). The database forbids it: must always be "
          "empty.",
          _overlapping_bookings, must_be_empty=True),
    Query("external_refunds", "Refunds made outside the portal", "refund",
          "Stripe refunded money the portal did not refund (the Stripe Dashboard, say). It is recorded; decide "
          "whether the lesson should be cancelled, then mark it resolved.", _external_refunds,
          alert_after=timedelta(days=1)),
    Query("stripe_drift", "Drift from Stripe", "drift",
          "What the hourly comparison with Stripe found the portal missed or disagrees with. Replay the missing "
          "event or re-fetch the session; the next comparison clears what is fixed.", _stripe_drift),
)}


@dataclass(frozen=True)
class Summary:
    name: str
    count: int
    oldest_age_seconds: float | None


def _filtered(query: Query, now: datetime, *, studio_id: int | None = None, min_age: timedelta | None = None,
              full: bool = False):
    inner = (query.build(now, full=True) if full and query.must_be_empty else query.build(now)).subquery()
    conditions = []
    if studio_id is not None:
        conditions.append(inner.c.studio_id == studio_id)
    if min_age is not None:
        conditions.append(inner.c.since <= now - min_age)
    return select(inner).where(*conditions).subquery() if conditions else inner


@contextlib.contextmanager
def _without_parallel_workers(full: bool):
    """The queries' usual forms read a few thousand rows through indexes: on PostgreSQL they run in one process,
    as parallel workers cost more to start than they save (twice the time on a busy two-core machine). The `full`
    checks read every booking and keep them. Local to the transaction, and set back once the query has run."""
    local = not full and db.session.get_bind().dialect.name == "postgresql"
    if local:
        db.session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    yield
    if local:
        db.session.execute(text("SET LOCAL max_parallel_workers_per_gather TO DEFAULT"))


def summarize(name: str, now: datetime, **filters) -> Summary:
    with tenancy.all_tenants(), _without_parallel_workers(filters.get("full", False)):
        return _summary(name, now, **filters)


def summaries(names, now: datetime, *, full: bool = False) -> dict[str, Summary]:
    """`summarize` for each of `names`, with the planner settings made once for all of them."""
    with tenancy.all_tenants(), _without_parallel_workers(full):
        return {name: _summary(name, now, full=full) for name in names}


def _summary(name: str, now: datetime, **filters) -> Summary:
    found = _filtered(QUERIES[name], now, **filters)
    count, oldest = db.session.execute(select(func.count(), func.min(found.c.since))).one()
    return Summary(name, count, round((now - oldest).total_seconds(), 1) if oldest is not None else None)


def items(name: str, now: datetime, *, offset: int = 0, limit: int = 50, **filters) -> list[dict]:
    """Oldest first; each a dict of the query's columns plus `studio` (slug) and `age_seconds`."""
    found = _filtered(QUERIES[name], now, **filters)
    with tenancy.all_tenants(), _without_parallel_workers(filters.get("full", False)):
        rows = db.session.execute(
            select(found, Studio.slug.label("studio")).outerjoin(Studio, Studio.id == found.c.studio_id)
            .order_by(found.c.since, found.c.id).offset(offset).limit(limit)).mappings().all()
    result = []
    for row in rows:
        item = {key: (value.value if hasattr(value, "value") else value) for key, value in row.items()}
        item["age_seconds"] = round((now - row["since"]).total_seconds(), 1) if row["since"] else None
        result.append(item)
    return result


def overview(now: datetime, *, full: bool = False) -> dict[str, Summary]:
    """Every query's count and oldest age; `full` runs the must-be-empty checks over all rows, not recent ones."""
    return summaries(QUERIES, now, full=full)


def failing(overview_: dict[str, Summary]) -> list[str]:
    """The queries `flask ops check` fails on: must-be-empty ones with items, others past their age threshold."""
    bad = []
    for name, summary in overview_.items():
        query = QUERIES[name]
        if not summary.count:
            continue
        if query.must_be_empty or (query.alert_after is not None
                                   and (summary.oldest_age_seconds or 0) >= query.alert_after.total_seconds()):
            bad.append(name)
    return bad


# --- the health gauges ------------------------------------------------------------------------------------------

def webhook_backlog() -> dict[str, int]:
    """Events per unfinished status, every status present (zero when none)."""
    rows = db.session.execute(select(WebhookEvent.status, func.count(WebhookEvent.id))
                              .where(WebhookEvent.status.in_(BACKLOG_STATUSES)).group_by(WebhookEvent.status))
    counts = {status.value: 0 for status in BACKLOG_STATUSES}
    counts.update({status.value: count for status, count in rows})
    return counts


def paid_unconfirmed_count(now: datetime) -> int:
    return summarize("paid_unconfirmed", now).count


__all__ = ["QUERIES", "Query", "Summary", "failing", "items", "overview", "paid_unconfirmed_count", "summarize",
           "webhook_backlog"]
