"""Lesson packs bought by students through Stripe Checkout: one session per purchase; the webhook (re-fetching the
session, as for lessons) marks the purchase paid and adds the pack's credits, valid from then for the pack's
validity, in one transaction."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal import metrics
from portal.extensions import db
from portal.models import CreditKind, LessonPack, PackPurchase, PackPurchaseStatus, Studio, User
from portal.payments import CheckoutSession, PaymentProvider, PaymentProviderError
from portal.services import audit
from portal.services.checkout import CheckoutUnavailable, hold_expiry
from portal.services.errors import NotFound
from portal.services.states import credit as credit_states
from portal.services.states import pack_purchase as purchases

log = logging.getLogger(__name__)


def on_sale() -> list[LessonPack]:
    return db.session.scalars(select(LessonPack).where(LessonPack.active.is_(True))
                              .order_by(LessonPack.lesson_minutes, LessonPack.lesson_count)).all()


def start_purchase(*, studio: Studio, student: User, pack_slug: str, provider: PaymentProvider, success_url: str,
                   cancel_url: str, now: datetime) -> PackPurchase:
    pack = db.session.scalar(select(LessonPack).where(LessonPack.slug == pack_slug, LessonPack.active.is_(True)))
    if pack is None:
        raise NotFound("No such lesson pack at this studio.", code="pack_not_found")
    pack_id, price, currency = pack.id, pack.price_minor, pack.currency
    request = dict(amount_minor=price, currency=currency, product_name=f"{pack.name} · {studio.name}",
                   reference=f"pack-{pack_id}-{student.id}", metadata={"pack_id": str(pack_id), "studio": studio.slug},
                   customer_email=student.email, success_url=success_url, cancel_url=cancel_url,
                   expires_at=hold_expiry(now, 30), idempotency_key=f"pack-{pack_id}-{student.id}-{now.timestamp()}")
    db.session.commit()  # no transaction is held while Stripe answers
    try:
        session = provider.create_checkout_session(**request)
    except PaymentProviderError as error:
        metrics.checkout_failures.inc()
        log.warning("checkout for pack %s failed: %s", pack_id, error)
        raise CheckoutUnavailable("We could not reach the payment service. Please try again in a moment.") from None
    purchase = PackPurchase(studio_id=studio.id, student_id=student.id, pack_id=pack_id,
                            checkout_session_id=session.id, checkout_url=session.url or "", amount_minor=price,
                            currency=currency, created_at=now, updated_at=now)
    db.session.add(purchase)
    db.session.commit()
    metrics.checkout_sessions_created.inc()
    return purchase


def for_session(session_id: str | None) -> PackPurchase | None:
    if not session_id:
        return None
    return db.session.scalar(select(PackPurchase).where(PackPurchase.checkout_session_id == session_id))


def for_intent(intent_id: str | None) -> PackPurchase | None:
    if not intent_id:
        return None
    return db.session.scalar(select(PackPurchase).where(PackPurchase.payment_intent_id == intent_id))


def apply_session(purchase_id: int, session: CheckoutSession, now: datetime) -> str:
    """Stripe's view of the session, applied once: paid → credits; expired → expired; another amount → flagged."""
    purchase = db.session.get(PackPurchase, purchase_id)
    if purchase.status in (PackPurchaseStatus.PAID, PackPurchaseStatus.MISMATCH):
        return "processed"
    if session.payment_status == "paid":
        if session.amount_total != purchase.amount_minor or (session.currency or "").lower() != purchase.currency:
            purchases.flag(purchase_id, now=now, detail=f"expected {purchase.amount_minor} {purchase.currency}, "
                                                        f"Stripe reports {session.amount_total} {session.currency}")
            db.session.commit()
            return "processed"
        pack = db.session.get(LessonPack, purchase.pack_id)
        purchases.settle(purchase_id, now=now, intent_id=session.payment_intent_id)
        lot = credit_states.gain(studio_id=purchase.studio_id, student_id=purchase.student_id,
                                 minutes=pack.lesson_minutes, amount=pack.lesson_count, kind=CreditKind.PURCHASE,
                                 now=now, pack_id=pack.id, actor=audit.SYSTEM, note=f"{pack.name} bought",
                                 expires_at=now + timedelta(days=pack.valid_days))
        db.session.execute(update(PackPurchase).where(PackPurchase.id == purchase_id).values(lot_id=lot.id))
        db.session.commit()
        return "processed"
    if session.status == "expired" and purchase.status == PackPurchaseStatus.PENDING:
        purchases.expire(purchase_id, now=now)
        db.session.commit()
    return "processed"
