"""A studio's configuration as versioned documents, proposals waiting for an admin, and studio API keys."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.base import TenantMixin, TimestampMixin, UTCDateTime, str_enum


class ConfigState(str, enum.Enum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"   # published once and replaced, or a draft discarded


class ConfigVersion(TenantMixin, TimestampMixin, db.Model):
    """One whole, validated configuration document (`portal.services.configuration.schema`).

    Exactly one version per studio is `published`: a partial unique index says so, on SQLite and PostgreSQL.
    `base_version` is the published version a draft was made from; publishing requires it to still be the
    published one, so a draft never silently undoes a change published meanwhile.
    """

    __tablename__ = "config_versions"
    __table_args__ = (
        UniqueConstraint("studio_id", "version"),
        Index("uq_config_versions_one_published", "studio_id", unique=True,
              sqlite_where=text("state = 'published'"), postgresql_where=text("state = 'published'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[ConfigState] = mapped_column(str_enum(ConfigState, 16), nullable=False, default=ConfigState.DRAFT)
    document: Mapped[dict] = mapped_column(JSON, nullable=False)
    base_version: Mapped[int | None] = mapped_column(Integer)
    author_kind: Mapped[str] = mapped_column(String(16), nullable=False, default="user")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_label: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ProposalState(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ConfigProposal(TenantMixin, TimestampMixin, db.Model):
    """A change proposed through the API (an API key with `config:propose`), waiting for an admin's decision."""

    __tablename__ = "config_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[ProposalState] = mapped_column(str_enum(ProposalState, 16), nullable=False,
                                                 default=ProposalState.PENDING, index=True)
    changes: Mapped[dict] = mapped_column(JSON, nullable=False)     # what was sent: a partial document
    document: Mapped[dict] = mapped_column(JSON, nullable=False)    # the changes merged onto `base_version`
    base_version: Mapped[int] = mapped_column(Integer, nullable=False)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    proposer_label: Mapped[str] = mapped_column(String(254), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    draft_version: Mapped[int | None] = mapped_column(Integer)  # the version an approval made
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ApiKey(TenantMixin, TimestampMixin, db.Model):
    """A studio's API key. The secret is shown once; only its SHA-256 is kept. `prefix` (public, unique) finds the
    row; scopes are a list of `config:read`, `config:propose`, `config:publish`, `bookings:read`."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list] = mapped_column(JSON, nullable=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
