"""What a studio sells (packages) and what lessons use (resources)."""
from __future__ import annotations

import enum

from sqlalchemy import Boolean, CheckConstraint, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, column_property, mapped_column

from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, str_enum
from portal.models.studios import Studio


class ResourceKind(str, enum.Enum):
    ROOM = "room"
    INSTRUMENT = "instrument"
    TEACHER = "teacher"


class Resource(TenantMixin, TimestampMixin, db.Model):
    __tablename__ = "resources"
    __table_args__ = (
        UniqueConstraint("studio_id", "slug"),
        CheckConstraint("capacity_minutes >= 0 AND capacity_minutes <= 1440", name="capacity_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    kind: Mapped[ResourceKind] = mapped_column(
        str_enum(ResourceKind, 16),
        nullable=False)
    capacity_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=480)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    #: Raised by the database on every change of this resource's bookings (migration 0012), never written here.
    bookings_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


_resource_columns = Resource.__table__.c
#: The sum of its resources' bookings versions: it grows whenever any booking of the studio changes (a resource's
#: removal also raises `calendar_version`, so the pair never repeats). Deferred: read only by the studio lookup of
#: anonymous public reads (`portal.blueprints.context`), as a Core subquery on the studio's own row, outside the
#: tenancy filter, since the studio is being resolved when it runs.
Studio.bookings_version = column_property(
    select(func.coalesce(func.sum(_resource_columns.bookings_version), 0))
    .where(_resource_columns.studio_id == Studio.__table__.c.id).scalar_subquery(),
    deferred=True)


class Package(TenantMixin, TimestampMixin, db.Model):
    """A lesson product: a duration at a price. Prices are integer minor units (cents).

    How packages are shown (order, visibility, featured) is part of the studio's versioned configuration; a
    package the configuration does not mention is shown, after the others. `active` is the catalogue's switch: an
    inactive package takes no new bookings and its existing bookings are untouched.
    """

    __tablename__ = "packages"
    __table_args__ = (
        UniqueConstraint("studio_id", "slug"),
        CheckConstraint("duration_minutes > 0 AND duration_minutes <= 480", name="duration_range"),
        CheckConstraint("price_minor >= 0", name="price_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    price_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
