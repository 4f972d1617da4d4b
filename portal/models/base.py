"""Shared column types and mixins."""
from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import DateTime, Enum, ForeignKey, Integer
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from portal.clock import utcnow


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores `timestamptz`; SQLite stores naive UTC text in a fixed format, so string comparison
    (used by the no-overlap triggers) orders correctly. Naive datetimes are refused: they are always a bug here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def str_enum(cls: type[enum.Enum], length: int = 32) -> Enum:
    """A Python enum stored as its string values (VARCHAR), the same on SQLite and PostgreSQL, with a CHECK
    constraint (`ck_<table>_<enum name>`) so the database refuses a value the enum does not have."""
    return Enum(cls, native_enum=False, create_constraint=True, length=length,
                values_callable=lambda e: [m.value for m in e])


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class TenantMixin:
    """Rows owned by one studio. Queries on these models are scoped automatically (see `portal.tenancy`)."""

    @declared_attr
    def studio_id(cls) -> Mapped[int]:
        return mapped_column(Integer, ForeignKey("studios.id", ondelete="CASCADE"), nullable=False, index=True)
