"""Lesson credits: packs the studio sells, and one append-only ledger per student per studio.

A credit is tied to a lesson duration (a 60-minute credit books a 60-minute lesson). `credit_balances` holds one
row per (studio, student, minutes) whose `balance` is the sum of that account's ledger entries; the database
refuses a negative balance (a CHECK), and every spend is a conditional `UPDATE … SET balance = balance - n WHERE
balance >= n` on that row, so two spends of the last credit serialise on the row and one of them finds nothing
left. `portal.services.states.credits` is the only writer of both tables.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.clock import utcnow
from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, UTCDateTime, str_enum


class LessonPack(TenantMixin, TimestampMixin, db.Model):
    """A pack of lessons sold in the catalogue: `lesson_count` credits of `lesson_minutes`, valid `valid_days`
    from purchase, for `price_minor` (integer minor units)."""

    __tablename__ = "lesson_packs"
    __table_args__ = (
        UniqueConstraint("studio_id", "slug"),
        CheckConstraint("lesson_count > 0 AND lesson_count <= 200", name="count_range"),
        CheckConstraint("lesson_minutes > 0 AND lesson_minutes <= 480", name="minutes_range"),
        CheckConstraint("valid_days > 0 AND valid_days <= 1830", name="valid_days_range"),
        CheckConstraint("price_minor >= 0", name="price_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    lesson_count: Mapped[int] = mapped_column(Integer, nullable=False)
    lesson_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    valid_days: Mapped[int] = mapped_column(Integer, nullable=False)
    price_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class CreditKind(str, enum.Enum):
    """Why a ledger entry moved credits. Positive kinds start a lot (with its own expiry); negative kinds draw on
    one (`lot_id`)."""

    PURCHASE = "purchase"    # +N, a pack bought
    GRANT = "grant"          # +N, given by the studio (with a note)
    MAKEUP = "makeup"        # +1, a late cancel under a make-up policy, or a lesson the studio cancelled
    RETURNED = "returned"    # +1, a lesson booked with a credit and cancelled inside the policy
    BOOKING = "booking"      # -1, a lesson booked with a credit
    EXPIRY = "expiry"        # -remaining, a lot past its expiry
    REVOKE = "revoke"        # -N, taken back by the studio (with a note)
    REFUND = "refund"        # -N, unused credits refunded in money by the studio


GAINS = (CreditKind.PURCHASE, CreditKind.GRANT, CreditKind.MAKEUP, CreditKind.RETURNED)


class CreditBalance(TenantMixin, db.Model):
    """The locked row of one student's credits of one duration at one studio."""

    __tablename__ = "credit_balances"
    __table_args__ = (
        UniqueConstraint("studio_id", "student_id", "minutes"),
        CheckConstraint("balance >= 0", name="balance_non_negative"),
        CheckConstraint("minutes > 0 AND minutes <= 480", name="minutes_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    balance: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class CreditEntry(TenantMixin, TimestampMixin, db.Model):
    """One movement of credits. Rows are never changed (the database refuses an UPDATE); a correction is another
    entry."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        Index("ix_credit_ledger_balance_created", "balance_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    balance_id: Mapped[int] = mapped_column(ForeignKey("credit_balances.id", ondelete="CASCADE"), nullable=False)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[CreditKind] = mapped_column(str_enum(CreditKind, 16), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # of a lot (a positive entry)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("credit_ledger.id", ondelete="CASCADE"), index=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"), index=True)
    pack_id: Mapped[int | None] = mapped_column(ForeignKey("lesson_packs.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")


class PackPurchaseStatus(str, enum.Enum):
    PENDING = "pending"      # Checkout Session open
    PAID = "paid"            # paid: the pack's credits are on the ledger
    EXPIRED = "expired"      # Checkout expired or was abandoned
    MISMATCH = "mismatch"    # Stripe reports another amount or currency: no credits, ops decide


class PackPurchase(TenantMixin, TimestampMixin, db.Model):
    """A lesson pack bought through Stripe Checkout. `portal.services.states.pack_purchase` owns its status; the
    credits are added in the same transaction that marks it paid."""

    __tablename__ = "pack_purchases"
    __table_args__ = (CheckConstraint("amount_minor >= 0", name="amount_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True)
    pack_id: Mapped[int] = mapped_column(ForeignKey("lesson_packs.id", ondelete="RESTRICT"), nullable=False)
    checkout_session_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    checkout_url: Mapped[str] = mapped_column(Text, nullable=False, default="")
    amount_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[PackPurchaseStatus] = mapped_column(str_enum(PackPurchaseStatus, 16), nullable=False,
                                                       default=PackPurchaseStatus.PENDING, index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The ledger entry (lot) holding the pack's credits, once paid: what a refund of its unused credits draws on.
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("credit_ledger.id", ondelete="SET NULL"), unique=True)

    studio = relationship("Studio")
    student = relationship("User")
    pack = relationship("LessonPack")

    @property
    def paid_minor(self) -> int:
        """What the student paid through Checkout (nothing until it is paid)."""
        return self.amount_minor if self.status == PackPurchaseStatus.PAID else 0
