"""Money records: one payment per booking (a Checkout Session), its refunds, and received webhook events."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.clock import utcnow
from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, UTCDateTime, str_enum


class PaymentStatus(str, enum.Enum):
    PENDING = "pending"          # Checkout Session open
    PROCESSING = "processing"    # completed with a delayed (async) payment method, not yet paid
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"          # session expired or abandoned without payment
    MISMATCH = "mismatch"        # paid amount/currency differ from the booking: ops must decide
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


#: The statuses of a payment whose money was received, as SQL (the partial index's condition).
SETTLED = "status IN ('paid', 'partially_refunded', 'refunded')"


class PaymentFlag(str, enum.Enum):
    AMOUNT_MISMATCH = "amount_mismatch"
    PAID_AFTER_EXPIRY = "paid_after_expiry_refunded"
    REFUND_FAILED = "refund_failed"


class Payment(TenantMixin, TimestampMixin, db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        CheckConstraint("amount_refunded_minor >= 0", name="refunded_non_negative"),
        # The bookings that money was received for: "is this booking paid?" answered from this index alone.
        Index("ix_payments_settled_booking", "booking_id", postgresql_where=text(SETTLED),
              sqlite_where=text(SETTLED)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id", ondelete="RESTRICT"), unique=True,
                                            nullable=False)
    checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    checkout_url: Mapped[str] = mapped_column(Text, nullable=False, default="")
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount_received_minor: Mapped[int | None] = mapped_column(Integer)
    received_currency: Mapped[str | None] = mapped_column(String(3))
    amount_refunded_minor: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[PaymentStatus] = mapped_column(str_enum(PaymentStatus), nullable=False,
                                                  default=PaymentStatus.PENDING, index=True)
    flag: Mapped[PaymentFlag | None] = mapped_column(str_enum(PaymentFlag), index=True)
    flag_detail: Mapped[str] = mapped_column(Text, nullable=False, default="")
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    # A weekly series paid in one Checkout: the payment hangs on its first week and covers every week of the series
    # (`amount_minor` is the total; each week's share is its `price_minor`).
    series_id: Mapped[int | None] = mapped_column(ForeignKey("booking_series.id", ondelete="RESTRICT"), index=True)

    booking = relationship("Booking", backref=db.backref("payment", uselist=False))

    @property
    def paid_minor(self) -> int:
        """What the student actually paid: Stripe's amount once known, nothing while the payment is open."""
        if self.amount_received_minor is not None:
            return self.amount_received_minor
        settled = (PaymentStatus.PAID, PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED)
        return self.amount_minor if self.status in settled else 0

    def raise_flag(self, flag: PaymentFlag, detail: str) -> None:
        self.flag, self.flag_detail = flag, detail


class RefundStatus(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(TenantMixin, TimestampMixin, db.Model):
    """Money sent back: of a booking's payment, or of a lesson pack bought through Checkout (its unused credits),
    never both."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("(payment_id IS NULL) <> (pack_purchase_id IS NULL)", name="one_source"),
        # Refunds made outside the portal are few and looked for by ops: a small partial index finds them.
        Index("ix_refunds_external", "created_at", postgresql_where=text("reason = 'external'"),
              sqlite_where=text("reason = 'external'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    pack_purchase_id: Mapped[int | None] = mapped_column(ForeignKey("pack_purchases.id", ondelete="RESTRICT"),
                                                         index=True)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # What this refund is for, unique: two workers (or a retried job) can never record the same refund twice.
    purpose_key: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    amount_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[RefundStatus] = mapped_column(str_enum(RefundStatus), nullable=False, default=RefundStatus.PENDING,
                                                 index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Times ops sent a failed refund again: each retry is a new refund at Stripe (a new idempotency key).
    retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    payment = relationship("Payment", backref="refunds")
    pack_purchase = relationship("PackPurchase", backref="refunds")

    @property
    def payment_intent_id(self) -> str | None:
        """The PaymentIntent the money goes back to."""
        source = self.payment or self.pack_purchase
        return source.payment_intent_id if source is not None else None

    @property
    def idempotency_key(self) -> str:
        return f"refund-{self.id}" if not self.retries else f"refund-{self.id}-retry-{self.retries}"


class EventStatus(str, enum.Enum):
    RECEIVED = "received"      # stored (and handed to the queue in the same request), not yet claimed by a worker
    QUEUED = "queued"          # queued again: by the stuck-event sweep or an ops replay
    PROCESSING = "processing"  # claimed by a worker (a lease: reclaimed when stale)
    RETRY = "retry"            # failed transiently, will be retried
    PROCESSED = "processed"
    IGNORED = "ignored"        # a type we do not act on
    DEAD = "dead"              # out of retries: on the ops console


class WebhookEvent(db.Model):
    """A Stripe event as delivered. Platform-level (not tenant-scoped): the studio is found while processing."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_event_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    type: Mapped[str] = mapped_column(String(128), nullable=False)
    # The id of the Stripe object the event is about (`data.object.id`: a Checkout Session, charge, refund…),
    # so an event can be found from its object without reading payloads.
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # …and the PaymentIntent it belongs to when it names one (charges, refunds, payment intents themselves).
    intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    status: Mapped[EventStatus] = mapped_column(str_enum(EventStatus), nullable=False, default=EventStatus.RECEIVED,
                                                index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    deliveries: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    studio_id: Mapped[int | None] = mapped_column(ForeignKey("studios.id", ondelete="SET NULL"), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookSignature(db.Model):
    """Signed requests already accepted, by digest of (timestamp, signature): a captured request sent again is a
    replay. Rows older than the replay window are pruned by a sweep."""

    __tablename__ = "webhook_signatures"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, index=True)
