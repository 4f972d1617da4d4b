"""What every public page and availability answer of a studio reads, cached per process: the catalogue
(packages, resources), the weekly opening hours and the blackouts still relevant.

A request reads the studio row anyway (to resolve the URL), and that row carries two counters: `config_version`
(raised by every publish and rollback) and `calendar_version` (raised, in the same transaction, by every change
of packages, resources, opening hours or blackouts: `catalogue.touch_calendar`). An entry is used only while both
match the row just read, so a change committed by any process is seen by every worker on its next request, with
no invalidation messages and no time-to-live. Bookings are not cached: each answer reads them (one indexed query).

Entries are keyed by the studio's id and carry it: `calendar(studio)` hands back only an entry whose `studio_id`
is that studio's. The cache belongs to the app (one per database), like the configuration documents' cache.
Everything in it is immutable, so threads and requests can share it; it holds plain values, never ORM objects
(those belong to one session).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy import or_, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.lru import LRU, app_cache
from portal.models import AvailabilityRule, Blackout, Package, Resource, ResourceKind, Studio
from portal.services import slots

#: Blackouts that ended this long before an entry was loaded are left out of it; a question about older times
#: (availability never asks one: it starts at today) goes to the database.
BLACKOUT_HISTORY = timedelta(days=3)
#: Studios whose entries a process keeps (least recently used dropped first).
STUDIOS_KEPT = 512


@dataclass(frozen=True)
class CachedPackage:
    id: int
    studio_id: int
    slug: str
    name: str
    description: str
    duration_minutes: int
    price_minor: int
    currency: str
    active: bool


@dataclass(frozen=True)
class CachedResource:
    id: int
    studio_id: int
    slug: str
    name: str
    kind: ResourceKind
    capacity_minutes: int
    active: bool


@dataclass(frozen=True)
class CachedBlackout:
    resource_id: int | None  # None: the whole studio
    span: slots.Interval


@dataclass(frozen=True)
class StudioCalendar:
    studio_id: int
    versions: tuple[int, int]  # (config_version, calendar_version) of the studio row it was loaded for
    held_from: datetime  # blackouts ending before this are not held
    packages: tuple[CachedPackage, ...]  # by id
    resources: tuple[CachedResource, ...]  # by name
    rules: MappingProxyType  # resource id -> tuple[slots.WeeklyRule, ...]
    blackouts: tuple[CachedBlackout, ...]

    def package(self, slug: str) -> CachedPackage | None:
        """An active package by slug."""
        return next((p for p in self.packages if p.slug == slug and p.active), None)

    def resource(self, slug: str) -> CachedResource | None:
        """An active resource by slug."""
        return next((r for r in self.resources if r.slug == slug and r.active), None)

    def active_resources(self) -> list[CachedResource]:
        return [r for r in self.resources if r.active]

    def rules_for(self, resource_id: int) -> tuple[slots.WeeklyRule, ...]:
        return self.rules.get(resource_id, ())

    def blackouts_for(self, resource_id: int, start: datetime, end: datetime) -> list[slots.Interval] | None:
        """Blackouts of the resource or the whole studio overlapping [start, end); None when the span reaches
        back before what the entry holds."""
        if start < self.held_from:
            return None
        return [b.span for b in self.blackouts if b.resource_id in (None, resource_id)
                and b.span.start < end and b.span.end > start]


def _cache() -> LRU:
    return app_cache("studio_calendars", STUDIOS_KEPT)


def calendar(studio: Studio) -> StudioCalendar:
    """The studio's catalogue and calendar as of the versions on `studio` (read in this request)."""
    versions = (studio.config_version, studio.calendar_version)
    cache = _cache()
    found = cache.get(studio.id)
    if found is None or found.versions != versions or found.studio_id != studio.id:
        found = _load(studio.id, versions, utcnow())
        cache.put(studio.id, found)
    return found


def _load(studio_id: int, versions: tuple[int, int], now: datetime) -> StudioCalendar:
    held_from = now - BLACKOUT_HISTORY
    with tenancy.scoped(studio_id):
        packages = db.session.execute(select(
            Package.id, Package.studio_id, Package.slug, Package.name, Package.description,
            Package.duration_minutes, Package.price_minor, Package.currency, Package.active,
        ).where(Package.studio_id == studio_id).order_by(Package.id)).all()
        resources = db.session.execute(select(
            Resource.id, Resource.studio_id, Resource.slug, Resource.name, Resource.kind, Resource.capacity_minutes,
            Resource.active,
        ).where(Resource.studio_id == studio_id).order_by(Resource.name, Resource.id)).all()
        rules: dict[int, list[slots.WeeklyRule]] = {}
        for resource_id, weekday, opens, closes in db.session.execute(select(
                AvailabilityRule.resource_id, AvailabilityRule.weekday, AvailabilityRule.start_time,
                AvailabilityRule.end_time).where(AvailabilityRule.studio_id == studio_id)
                .order_by(AvailabilityRule.id)):
            rules.setdefault(resource_id, []).append(slots.WeeklyRule(weekday, opens, closes))
        blackouts = db.session.execute(select(Blackout.resource_id, Blackout.starts_at, Blackout.ends_at).where(
            Blackout.studio_id == studio_id, Blackout.ends_at > held_from).order_by(Blackout.starts_at)).all()
    return StudioCalendar(
        studio_id=studio_id, versions=versions, held_from=held_from,
        packages=tuple(CachedPackage(*row) for row in packages),
        resources=tuple(CachedResource(*row) for row in resources),
        rules=MappingProxyType({k: tuple(v) for k, v in rules.items()}),
        blackouts=tuple(CachedBlackout(resource_id, slots.Interval(starts, ends))
                        for resource_id, starts, ends in blackouts),
    )


def blackout_query(studio_id: int, resource_id: int, start: datetime, end: datetime) -> list[slots.Interval]:
    """The database's answer when the cache does not hold the span."""
    with tenancy.scoped(studio_id):
        return [slots.Interval(s, e) for s, e in db.session.execute(select(Blackout.starts_at, Blackout.ends_at).where(
            or_(Blackout.resource_id.is_(None), Blackout.resource_id == resource_id),
            Blackout.starts_at < end, Blackout.ends_at > start))]
