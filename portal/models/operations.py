"""What the ops console keeps: items a person marked resolved, and differences found between Stripe and the portal."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import TimestampMixin, UTCDateTime


class Resolution(TimestampMixin, db.Model):
    """An item of a reconciliation query that ops looked at and settled, with why; it leaves that query's list.
    Platform-level (ops work across studios); `studio_id` says whose item it was."""

    __tablename__ = "ops_resolutions"
    __table_args__ = (UniqueConstraint("query", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    query: Mapped[str] = mapped_column(String(32), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(32), nullable=False)
    entity_id: Mapped[int] = mapped_column(Integer, nullable=False)
    studio_id: Mapped[int | None] = mapped_column(ForeignKey("studios.id", ondelete="SET NULL"), index=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(String(254), nullable=False)


class DriftFinding(TimestampMixin, db.Model):
    """Something Stripe knows that the portal missed or disagrees with, found by the drift reconciliation job.

    `kind`: `missing_event` (Stripe has an event the portal never stored), `unsettled_session` (a Checkout Session
    Stripe reports paid whose payment, or lesson pack purchase, the portal has not settled), `amount_differs`
    (Stripe's amount or currency is not the portal's), `unknown_refund` (a refund on one of our payments or packs
    that the portal has no record of).
    """

    __tablename__ = "drift_findings"
    __table_args__ = (
        UniqueConstraint("kind", "provider_object_id"),
        # Findings pile up as they are resolved; the open ones are few and found through this partial index.
        Index("ix_drift_findings_open", "detected_at", postgresql_where=text("resolved_at IS NULL"),
              sqlite_where=text("resolved_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    provider_object_id: Mapped[str] = mapped_column(String(255), nullable=False)
    studio_id: Mapped[int | None] = mapped_column(ForeignKey("studios.id", ondelete="SET NULL"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id", ondelete="SET NULL"), index=True)
    # …or the lesson pack bought through the Checkout Session the finding is about.
    pack_purchase_id: Mapped[int | None] = mapped_column(ForeignKey("pack_purchases.id", ondelete="SET NULL"),
                                                         index=True)
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="")
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
