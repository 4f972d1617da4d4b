"""Running booking totals for the metrics: confirmed and late-cancelled bookings per resource and package (all time,
`resource_booking_totals`) and confirmed bookings per day of their start (UTC), resource and package
(`resource_booking_days`).

The booking state machine (`portal.services.states.booking`) calls `count` in the transaction that confirms,
cancels, moves or marks a booking, so the totals commit (or roll back) with the change. `recount` is the same
figures counted from the bookings table: what the totals must always equal. `rebuild` replaces the totals with it,
for rows written around the state machine (the benchmarks' bulk data).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import Date, bindparam, case, cast, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, ResourceBookingDay, ResourceBookingTotal

LATE_CANCEL = "late_cancel"


@dataclass(frozen=True)
class Counted:
    """Where a booking counts: its studio, resource, package and start."""
    studio_id: int
    resource_id: int
    package_id: int
    start_at: datetime

    @property
    def day(self) -> date:
        return self.start_at.astimezone(timezone.utc).date()


#: The booking's columns that make up its `Counted`, in order (for an UPDATE's RETURNING, saving a read).
COUNTED_COLUMNS = (Booking.studio_id, Booking.resource_id, Booking.package_id, Booking.start_at)


def where_counted(booking_id: int) -> Counted:
    """Read under the row lock of the change just made (or about to be made) to the booking."""
    row = db.session.execute(select(*COUNTED_COLUMNS).where(Booking.id == booking_id)).one()
    return Counted(*row)


def count(*changes: tuple[Counted, int, int]) -> None:
    """Add `(where, confirmed, late_cancels)` changes to the totals. Rows are written in key order (all totals, then
    all days), so two transactions changing the same rows (two moves in opposite directions) never deadlock."""
    totals: dict[tuple[int, int], list[int]] = {}
    days: dict[tuple[date, int, int], list[int]] = {}
    for where, confirmed, late_cancels in changes:
        total = totals.setdefault((where.resource_id, where.package_id), [where.studio_id, 0, 0])
        total[1] += confirmed
        total[2] += late_cancels
        if confirmed:
            days.setdefault((where.day, where.resource_id, where.package_id), [where.studio_id, 0])[1] += confirmed
    _add(ResourceBookingTotal, ("resource_id", "package_id"), ("confirmed", "late_cancels"),
         [{"resource_id": resource_id, "package_id": package_id, "studio_id": studio_id, "confirmed": confirmed,
           "late_cancels": late_cancels}
          for (resource_id, package_id), (studio_id, confirmed, late_cancels) in sorted(totals.items())
          if confirmed or late_cancels])
    _add(ResourceBookingDay, ("day", "resource_id", "package_id"), ("confirmed",),
         [{"day": day, "resource_id": resource_id, "package_id": package_id, "studio_id": studio_id,
           "confirmed": confirmed}
          for (day, resource_id, package_id), (studio_id, confirmed) in sorted(days.items()) if confirmed])


def _add(model, key: tuple[str, ...], amounts: tuple[str, ...], rows: list[dict]) -> None:
    """`INSERT … ON CONFLICT DO UPDATE` adding each row's `amounts` to the row of its `key` (created with them if
    missing), in key order; many rows go in one `executemany` (one round trip on PostgreSQL)."""
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    db.session.connection().execute(_upsert(model, dialect, key, amounts), rows if len(rows) > 1 else rows[0])


@functools.lru_cache(maxsize=32)
def _upsert(model, dialect: str, key: tuple[str, ...], amounts: tuple[str, ...]):
    """The upsert of `_add` with its values as parameters, built once per shape: a booking confirmed on a worker's
    hot path would otherwise spend more time building the two statements than the database spends running them.
    Core, run on the session's connection: the totals are never loaded as objects."""
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__).values(
        {name: bindparam(name) for name in (*key, "studio_id", *amounts)})
    columns = model.__table__.c
    return statement.on_conflict_do_update(
        index_elements=list(key), set_={name: columns[name] + statement.excluded[name] for name in amounts})


def _start_day():
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", Booking.start_at), Date)
    return func.date(Booking.start_at)


def _counted_from_bookings():
    """The two totals as SELECTs over the bookings: (studio, resource, package, confirmed, late cancels) and
    (studio, day, resource, package, confirmed)."""
    confirmed = Booking.status == BookingStatus.CONFIRMED
    late = (Booking.status == BookingStatus.CANCELLED) & (Booking.penalty_reason == LATE_CANCEL)
    day = _start_day()
    totals = (select(Booking.studio_id, Booking.resource_id, Booking.package_id,
                     func.sum(case((confirmed, 1), else_=0)), func.sum(case((late, 1), else_=0)))
              .where(confirmed | late).group_by(Booking.studio_id, Booking.resource_id, Booking.package_id))
    days = (select(Booking.studio_id, day, Booking.resource_id, Booking.package_id, func.count())
            .where(confirmed).group_by(Booking.studio_id, day, Booking.resource_id, Booking.package_id))
    return totals, days


def recount() -> tuple[dict, dict]:
    """The totals counted from the bookings: ({(resource, package): (confirmed, late cancels)},
    {(day, resource, package): confirmed}), without empty rows."""
    totals, days = _counted_from_bookings()
    with tenancy.all_tenants():
        return ({(r, p): (int(c), int(lc)) for _s, r, p, c, lc in db.session.execute(totals)},
                {(_as_date(d), r, p): int(c) for _s, d, r, p, c in db.session.execute(days)})


def rebuild() -> None:
    """Replace the totals with a recount (the caller commits)."""
    totals, days = _counted_from_bookings()
    with tenancy.all_tenants():
        db.session.execute(delete(ResourceBookingTotal))
        db.session.execute(delete(ResourceBookingDay))
        db.session.execute(insert(ResourceBookingTotal).from_select(
            ["studio_id", "resource_id", "package_id", "confirmed", "late_cancels"], totals))
        db.session.execute(insert(ResourceBookingDay).from_select(
            ["studio_id", "day", "resource_id", "package_id", "confirmed"], days))


def _as_date(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value
