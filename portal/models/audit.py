from __future__ import annotations

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import TimestampMixin


class AuditEntry(TimestampMixin, db.Model):
    """Who changed what, with the state before and after. `studio_id` is NULL for platform-wide actions.

    The actor is a person (`actor_kind` "user", with `actor_id`), the portal itself ("system"), a named job
    ("job") or a studio API key ("api_key"); `actor_label` names it as it was at the time (an email, a job or key
    name), so the row still reads right after the user or key is gone.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id"),
        Index("ix_audit_log_studio_created", "studio_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    studio_id: Mapped[int | None] = mapped_column(ForeignKey("studios.id", ondelete="SET NULL"), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16), nullable=False, default="user")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    actor_label: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str] = mapped_column(String(64), nullable=False)
    target_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
