from __future__ import annotations

import enum
from datetime import datetime

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.models.base import TimestampMixin, UTCDateTime, str_enum


class Role(str, enum.Enum):
    STUDENT = "student"
    ADMIN = "admin"


class User(UserMixin, TimestampMixin, db.Model):
    """A person. Users are platform-wide; what they may do in a studio comes from their memberships."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False, default="")
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_platform_ops: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Sign-up is finished when the owner of the address follows the link we email; until then no login.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Part of every session's identity (`get_id`): raising it ends all of the user's sessions (logout, password).
    session_generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    memberships: Mapped[list["Membership"]] = relationship(back_populates="user", cascade="all, delete-orphan")

    def set_password(self, password: str) -> None:
        # Tests lower the scrypt cost through PASSWORD_HASH_METHOD; production keeps Werkzeug's default.
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def get_id(self) -> str:
        """What the session stores: the id and the session generation, so ended sessions stop working."""
        return f"{self.id}:{self.session_generation}"

    def has_role(self, studio_id: int, role: Role) -> bool:
        return any(m.studio_id == studio_id and m.role == role for m in self.memberships)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active


class Membership(TimestampMixin, db.Model):
    """A user's role in one studio. Not tenant-scoped itself: it is how a user reaches a tenant."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "studio_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id", ondelete="CASCADE"), nullable=False, index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, 16), nullable=False)
    # Secret of the student's private iCal feed for this studio; regenerating it revokes the old address.
    calendar_token: Mapped[str | None] = mapped_column(String(64), unique=True)

    user: Mapped[User] = relationship(back_populates="memberships")
    studio = relationship("Studio")
