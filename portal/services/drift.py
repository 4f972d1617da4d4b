"""Drift from Stripe: walk Stripe's events and Checkout Sessions for a time window and record what the portal missed
or disagrees with (`drift_findings`, listed by the ops console's `stripe_drift` query), for lessons' payments and
lesson packs bought through Checkout alike.

Run hourly by the worker (over the last two hours, so consecutive runs overlap) and on demand from the console or
`flask ops drift`. A finding whose difference is gone on a later run (the event arrived, the payment settled) is
marked resolved by the portal itself; one that persists stays for a person.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import tenancy
from portal.extensions import db
from portal.models import (
    DriftFinding,
    PackPurchase,
    PackPurchaseStatus,
    Payment,
    PaymentStatus,
    Refund,
    Resolution,
    WebhookEvent,
)
from portal.payments import PaymentProvider
from portal.services import audit
from portal.services.fulfilment import REFUND_EVENTS, SESSION_EVENTS

DEFAULT_WINDOW = timedelta(hours=2)
#: Event types the portal acts on; others (Stripe sends many) are not drift when missing.
WATCHED = sorted(SESSION_EVENTS | REFUND_EVENTS | {"payment_intent.payment_failed"})
SETTLED = (PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED, PaymentStatus.MISMATCH)
MAX_PAGES = 50


@dataclass
class ScanReport:
    window_start: datetime
    window_end: datetime
    events_seen: int = 0
    sessions_seen: int = 0
    found: int = 0
    cleared: int = 0


def _pages(fetch, **params):
    """Every page of a Stripe list call (newest first), bounded."""
    after = None
    for _ in range(MAX_PAGES):
        page = fetch(limit=100, starting_after=after, **params)
        yield from page
        if len(page) < 100:
            return
        after = page[-1].id


def _record(kind: str, object_id: str, detail: str, now: datetime, *, payment: Payment | PackPurchase | None = None
            ) -> bool:
    """Add (or refresh) a finding about a lesson's payment or a pack purchase; True when it is new."""
    existing = db.session.scalar(select(DriftFinding).where(DriftFinding.kind == kind,
                                                            DriftFinding.provider_object_id == object_id))
    if existing is not None:
        existing.last_seen_at, existing.detail = now, detail
        return False
    pack = isinstance(payment, PackPurchase)
    db.session.add(DriftFinding(kind=kind, provider_object_id=object_id, detail=detail, detected_at=now,
                                last_seen_at=now, created_at=now,
                                payment_id=payment.id if payment is not None and not pack else None,
                                pack_purchase_id=payment.id if pack else None,
                                studio_id=payment.studio_id if payment is not None else None))
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:  # another scan recorded it at the same moment
        return False
    return True


def scan(provider: PaymentProvider, *, now: datetime, window: timedelta = DEFAULT_WINDOW) -> ScanReport:
    start = now - window
    report = ScanReport(start, now)
    examined: set[tuple[str, str]] = set()  # (kind, object id) this run looked at
    seen: set[tuple[str, str]] = set()      # …and found differing
    refunds_to_check: list[tuple[Payment | PackPurchase, str]] = []  # (a settled source, its PaymentIntent)
    with tenancy.all_tenants():
        events = list(_pages(provider.list_events, types=WATCHED, created_gte=int(start.timestamp()),
                             created_lte=int(now.timestamp())))
        sessions = list(_pages(provider.list_checkout_sessions, created_gte=int(start.timestamp()),
                               created_lte=int(now.timestamp())))
        report.events_seen, report.sessions_seen = len(events), len(sessions)

        stored = set(db.session.scalars(select(WebhookEvent.provider_event_id).where(
            WebhookEvent.provider_event_id.in_([e.id for e in events])))) if events else set()
        for event in events:
            examined.add(("missing_event", event.id))
            if event.id in stored:
                continue
            payment = _payment_for(event.object)
            if payment is None and event.type in SESSION_EVENTS:
                continue  # a session of another integration on the same Stripe account
            seen.add(("missing_event", event.id))
            report.found += _record("missing_event", event.id, f"{event.type} about {event.object.get('id')} was "
                                    "never received by the portal", now, payment=payment)

        for session in sessions:
            if session.status != "complete" or session.payment_status not in ("paid", "no_payment_required"):
                continue
            payment = db.session.scalar(select(Payment).where(Payment.checkout_session_id == session.id))
            if payment is None:
                purchase = db.session.scalar(select(PackPurchase).where(
                    PackPurchase.checkout_session_id == session.id))
                if purchase is not None:
                    report.found += _check_pack(purchase, session, now, examined, seen, refunds_to_check)
                continue
            examined.update({("unsettled_session", session.id), ("amount_differs", session.id)})
            if payment.status not in SETTLED:
                seen.add(("unsettled_session", session.id))
                report.found += _record("unsettled_session", session.id,
                                        f"Stripe reports the session paid; the payment here is {payment.status.value}",
                                        now, payment=payment)
            elif payment.status != PaymentStatus.MISMATCH and (
                    session.amount_total != payment.amount_minor
                    or (session.currency or "").lower() != payment.currency.lower()):
                seen.add(("amount_differs", session.id))
                report.found += _record("amount_differs", session.id,
                                        f"Stripe: {session.amount_total} {session.currency}; here: "
                                        f"{payment.amount_minor} {payment.currency}", now, payment=payment)
            if payment.payment_intent_id and payment.status in SETTLED:
                refunds_to_check.append((payment, payment.payment_intent_id))
        db.session.commit()  # no transaction (on SQLite: no write lock) is held while Stripe answers below

        for source, intent in refunds_to_check:
            remote = provider.list_refunds(payment_intent_id=intent)
            payment = db.session.get(type(source), source.id)
            known, own_rows = _known_refunds(payment)
            for refund in remote:
                examined.add(("unknown_refund", refund.id))
                if refund.id not in known and str((refund.metadata or {}).get("refund_id", "")) not in own_rows:
                    seen.add(("unknown_refund", refund.id))
                    report.found += _record("unknown_refund", refund.id,
                                            f"a refund of {refund.amount} {refund.currency} the portal has no "
                                            "record of", now, payment=payment)
            db.session.commit()
        report.cleared = _clear_fixed(examined - seen, now)
        db.session.commit()
    return report


def _check_pack(purchase: PackPurchase, session, now: datetime, examined: set, seen: set,
                refunds_to_check: list) -> int:
    """A paid Checkout Session of a lesson pack: unsettled here (its credits never arrived) is drift; once paid, its
    refunds are compared like a payment's."""
    examined.add(("unsettled_session", session.id))
    found = 0
    if purchase.status in (PackPurchaseStatus.PENDING, PackPurchaseStatus.EXPIRED):
        seen.add(("unsettled_session", session.id))
        found += _record("unsettled_session", session.id, "Stripe reports the lesson pack's session paid; the "
                         f"purchase here is {purchase.status.value} and its credits were not added", now,
                         payment=purchase)
    elif purchase.status == PackPurchaseStatus.PAID and purchase.payment_intent_id:
        refunds_to_check.append((purchase, purchase.payment_intent_id))
    return found


def _known_refunds(source: Payment | PackPurchase) -> tuple[set[str], set[str]]:
    """Stripe's ids of the source's refunds, and our rows' ids: an earlier attempt of a refund ops retried (a new
    refund at Stripe, named in its metadata) is ours too, not unknown."""
    rows = db.session.scalars(select(Refund).where(
        Refund.pack_purchase_id == source.id if isinstance(source, PackPurchase) else Refund.payment_id == source.id
    )).all()
    return {r.provider_refund_id for r in rows if r.provider_refund_id}, {str(r.id) for r in rows}


def _payment_for(obj: dict) -> Payment | PackPurchase | None:
    """The payment (or lesson pack purchase) a Stripe object is about."""
    object_id, intent = obj.get("id"), obj.get("payment_intent")
    if isinstance(object_id, str) and object_id.startswith("cs_"):
        return (db.session.scalar(select(Payment).where(Payment.checkout_session_id == object_id))
                or db.session.scalar(select(PackPurchase).where(PackPurchase.checkout_session_id == object_id)))
    if isinstance(intent, str):
        return (db.session.scalar(select(Payment).where(Payment.payment_intent_id == intent))
                or db.session.scalar(select(PackPurchase).where(PackPurchase.payment_intent_id == intent)))
    return None


def _clear_fixed(fixed: set[tuple[str, str]], now: datetime) -> int:
    """Resolve open findings about objects this run looked at and found no longer differing."""
    if not fixed:
        return 0
    candidates = db.session.scalars(select(DriftFinding).where(
        DriftFinding.provider_object_id.in_({object_id for _kind, object_id in fixed}),
        DriftFinding.resolved_at.is_(None))).all()
    cleared = 0
    for finding in candidates:
        if (finding.kind, finding.provider_object_id) not in fixed:
            continue
        finding.resolved_at = now
        db.session.add(Resolution(query="stripe_drift", entity_type="drift", entity_id=finding.id,
                                  studio_id=finding.studio_id, reason=f"No longer differs (checked {now.isoformat()})",
                                  actor_label=audit.SYSTEM.label, created_at=now))
        cleared += 1
    return cleared
