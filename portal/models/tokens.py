"""Single-use links sent by email: confirming a sign-up, resetting a password, joining a studio's team.

The link carries this row's id signed with the app's secret key (`portal.services.account_tokens`); the row makes
it single-use and expiring. No secret is stored here, so a copy of the database holds no usable link, and jobs
that send the emails receive only ids.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TimestampMixin, UTCDateTime, str_enum


class TokenPurpose(str, enum.Enum):
    CONFIRM_EMAIL = "confirm_email"
    RESET_PASSWORD = "reset_password"
    INVITE = "invite"          # to become an admin of `studio_id`


class AccountToken(TimestampMixin, db.Model):
    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    studio_id: Mapped[int | None] = mapped_column(ForeignKey("studios.id", ondelete="CASCADE"))
    purpose: Mapped[TokenPurpose] = mapped_column(str_enum(TokenPurpose), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user = relationship("User")
    studio = relationship("Studio")
