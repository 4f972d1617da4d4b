"""The studio's catalogue: packages (lessons it sells) and resources (rooms, instruments, teachers lessons use).

Admins add and edit both. A slug is part of links, API answers and booking records, so once a booking used a
package or a resource its slug stays as it is; slugs are unique per studio. Deactivating takes a package or
resource out of new bookings (pickers, the public API, the resource allowlist) and leaves existing bookings as they
are. Every change is audited with the fields before and after, and raises `studios.calendar_version`, which is
what caches of the studio's catalogue and availability key on.

Prices are typed as `65.00` or `65` and stored as integer minor units, parsed from the text without floats.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal import formatting
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Reschedule, Resource, ResourceKind, Studio
from portal.services import audit
from portal.services.errors import InvalidInput

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: The most a package may cost, in minor units ($10,000.00, £10,000.00, ¥1,000,000): more is a typing mistake.
MAX_PRICE_MINOR = 1_000_000
DURATION_MINUTES = (5, 480)
CAPACITY_MINUTES = (0, 24 * 60)
_PRICE = re.compile(r"^([0-9]+)(?:\.([0-9]*))?$")
_WHOLE = re.compile(r"^[0-9]{1,7}$")

PACKAGE_FIELDS = ("name", "slug", "description", "duration_minutes", "price_minor", "currency", "active")
RESOURCE_FIELDS = ("name", "slug", "kind", "capacity_minutes", "active")


class InvalidFields(InvalidInput):
    """A form with one or more fields refused: `fields` maps each field name to why."""

    code = "invalid_fields"

    def __init__(self, fields: dict[str, str]):
        name, message = next(iter(fields.items()))
        super().__init__(message, field=name)
        self.fields = fields


@dataclass
class Saved:
    """What a save did: the row, whether anything changed, and what the admin should know about it."""

    row: Package | Resource
    changed: bool
    notices: list[str] = field(default_factory=list)


# --- parsing what the admin typed ------------------------------------------------------------------------------

def decimals_of(currency: str) -> int:
    return 0 if currency.lower() in formatting.ZERO_DECIMAL else 2


def parse_price(raw: str | None, currency: str) -> int:
    """`65.00`, `65.5` or `65` (with an optional currency symbol) → minor units, from the digits, without floats."""
    text = (raw or "").strip().replace(" ", "")
    symbol = formatting.SYMBOLS.get(currency.lower())
    if symbol and text.startswith(symbol):
        text = text[len(symbol):]
    if not text:
        raise InvalidInput("Type a price, like 65.00.", field="price")
    if text.startswith("-"):
        raise InvalidInput("A price cannot be negative.", field="price")
    if "," in text:
        raise InvalidInput("Type the price without thousands separators, like 1250.00.", field="price")
    match = _PRICE.match(text)
    if match is None:
        raise InvalidInput("Type the price as a number, like 65.00.", field="price")
    whole, fraction = match[1], (match[2] or "")
    places = decimals_of(currency)
    if len(fraction) > places:
        raise InvalidInput(f"{currency.upper()} prices have {places} decimal places at most."
                           if places else f"{currency.upper()} prices are whole numbers.", field="price")
    if len(whole) > 12:
        raise InvalidInput("That price is far too large.", field="price")
    minor = int(whole) * 10 ** places + int(fraction.ljust(places, "0") or 0)
    if minor > MAX_PRICE_MINOR:
        raise InvalidInput(f"A lesson costs at most {formatting.money(MAX_PRICE_MINOR, currency)}: "
                           "check the price.", field="price")
    return minor


def format_price(minor: int, currency: str) -> str:
    """Minor units as the admin types them back (`65.00`), for a form's value."""
    places = decimals_of(currency)
    return str(minor) if not places else f"{minor // 10 ** places}.{minor % 10 ** places:0{places}d}"


def slugify(name: str) -> str:
    """A slug suggested from a name: `Piano room` → `piano-room`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-")


def _slug(raw: str | None, name: str, errors: dict[str, str]) -> str:
    slug = (raw or "").strip().lower() or slugify(name)
    if not SLUG.match(slug):
        errors["slug"] = ("Use lower-case letters, digits and dashes (up to 63), starting with a letter or digit, "
                          "like piano-room.")
    return slug


def _name(raw: str | None, errors: dict[str, str]) -> str:
    name = " ".join((raw or "").split())
    if not name:
        errors["name"] = "Give it a name."
    elif len(name) > 120:
        errors["name"] = "Keep the name to 120 characters."
    return name


def _whole_number(raw: str | None, low: int, high: int, *, what: str, errors: dict[str, str], key: str) -> int:
    text = (raw or "").strip()
    if not _WHOLE.match(text) or not low <= int(text) <= high:
        errors[key] = f"{what} is a whole number from {low} to {high}."
        return 0
    return int(text)


def _package_values(studio: Studio, typed: dict[str, str]) -> dict:
    errors: dict[str, str] = {}
    name = _name(typed.get("name"), errors)
    values = {"name": name, "slug": _slug(typed.get("slug"), name, errors)}
    description = (typed.get("description") or "").replace("\r\n", "\n").strip()
    if len(description) > 2000:
        errors["description"] = "Keep the description to 2,000 characters."
    values["description"] = description
    values["duration_minutes"] = _whole_number(typed.get("duration_minutes"), *DURATION_MINUTES,
                                               what="The length in minutes", errors=errors, key="duration_minutes")
    currency = (typed.get("currency") or studio.currency).strip().lower()
    if currency != studio.currency.lower():
        # One currency per studio: Checkout, refunds and the reports all add its prices up.
        errors["currency"] = f"{studio.name} sells in {studio.currency.upper()}; prices are in that currency."
    values["currency"] = studio.currency.lower()
    try:
        values["price_minor"] = parse_price(typed.get("price"), studio.currency)
    except InvalidInput as problem:
        errors["price"] = problem.message
    values["active"] = typed.get("active") in ("1", "on", "true", "yes")
    if errors:
        raise InvalidFields(errors)
    return values


def _resource_values(typed: dict[str, str]) -> dict:
    errors: dict[str, str] = {}
    name = _name(typed.get("name"), errors)
    values = {"name": name, "slug": _slug(typed.get("slug"), name, errors)}
    try:
        values["kind"] = ResourceKind((typed.get("kind") or "").strip())
    except ValueError:
        errors["kind"] = "Choose a room, an instrument or a teacher."
    values["capacity_minutes"] = _whole_number(typed.get("capacity_minutes"), *CAPACITY_MINUTES,
                                               what="Capacity in minutes per day", errors=errors,
                                               key="capacity_minutes")
    values["active"] = typed.get("active") in ("1", "on", "true", "yes")
    if errors:
        raise InvalidFields(errors)
    return values


# --- reading ----------------------------------------------------------------------------------------------------

def packages() -> list[Package]:
    return db.session.scalars(select(Package).order_by(Package.id)).all()


def resources() -> list[Resource]:
    return db.session.scalars(select(Resource).order_by(Resource.active.desc(), Resource.name)).all()


def package_bookings(package_id: int) -> int:
    return db.session.scalar(select(func.count(Booking.id)).where(Booking.package_id == package_id)) or 0


def resource_bookings(resource_id: int) -> int:
    """Bookings that are or were on the resource (moves included): each names it by its slug somewhere."""
    now_on = db.session.scalar(select(func.count(Booking.id)).where(Booking.resource_id == resource_id)) or 0
    moved = db.session.scalar(select(func.count(Reschedule.id)).where(
        or_(Reschedule.from_resource_id == resource_id, Reschedule.to_resource_id == resource_id))) or 0
    return now_on + moved


def upcoming_lessons_on(resource_id: int, now: datetime) -> int:
    return db.session.scalar(select(func.count(Booking.id)).where(
        Booking.resource_id == resource_id, Booking.status == BookingStatus.CONFIRMED,
        Booking.start_at > now)) or 0


def allowlist() -> dict:
    """The resource allowlist (seed 000's shape): the active resources are the ones bookings may use."""
    rows = db.session.scalars(select(Resource).order_by(Resource.slug)).all()
    return {"enforced": True,
            "allowed_resource_ids": [r.slug for r in rows if r.active],
            "resources": [{"id": r.slug, "name": r.name, "kind": r.kind.value,
                           "capacity_minutes": r.capacity_minutes, "active": r.active} for r in rows]}


# --- changing ---------------------------------------------------------------------------------------------------

def touch_calendar(studio_id: int) -> None:
    """Raise the studio's calendar version. Called first in a change's transaction: on PostgreSQL the row lock it
    takes makes concurrent catalogue and calendar changes of one studio wait their turn, so the checks that follow
    (unique slugs, overlapping hours, a blackout saved twice) see what the other one committed."""
    db.session.execute(update(Studio).where(Studio.id == studio_id)
                       .values(calendar_version=Studio.calendar_version + 1)
                       .execution_options(synchronize_session=False))


def _snapshot(row, names) -> dict:
    values = {}
    for name in names:
        value = getattr(row, name)
        values[name] = value.value if isinstance(value, ResourceKind) else value
    return values


def _save(studio: Studio, model, row, values: dict, *, fields: tuple[str, ...], uses, noun: str,
          actor: audit.Actor, now: datetime) -> Saved:
    """Store `values` on `row` (None: a new one). The caller has validated each field on its own; here go the
    rules that look at other rows (slug taken, slug in use), in the transaction that writes."""
    studio_id = studio.id
    touch_calendar(studio_id)
    errors: dict[str, str] = {}
    taken = db.session.scalar(select(model.id).where(model.slug == values["slug"],
                                                     *([model.id != row.id] if row is not None else [])))
    if taken is not None:
        errors["slug"] = f"Another {noun} of this studio already has the slug {values['slug']}."
    used = uses(row.id) if row is not None and values["slug"] != row.slug else 0
    if used:
        errors["slug"] = (f"{used} booking{'s' if used != 1 else ''} used the slug {row.slug}, so it stays as it "
                          "is: links, receipts and reports name it.")
    if errors:
        db.session.rollback()
        raise InvalidFields(errors)
    before = _snapshot(row, fields) if row is not None else None
    if before is not None and all(before[k] == values[k] for k in fields):
        db.session.rollback()
        return Saved(row, changed=False)
    if row is None:
        row = model(studio_id=studio_id, **values)
        db.session.add(row)
    else:
        for name in fields:
            setattr(row, name, values[name])
    try:
        db.session.flush()
    except IntegrityError:  # a slug taken at the same moment (the unique constraint)
        db.session.rollback()
        raise InvalidFields({"slug": f"Another {noun} of this studio already has the slug {values['slug']}."}
                            ) from None
    after = _snapshot(row, fields)
    if before is None:
        audit.record(actor=actor, action=f"{noun}.create", target_type=noun, target_id=row.id, studio_id=studio_id,
                     now=now, after=after)
    else:
        changed = [k for k in fields if before[k] != after[k]]
        audit.record(actor=actor, action=f"{noun}.update", target_type=noun, target_id=row.id, studio_id=studio_id,
                     now=now, before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    db.session.commit()
    return Saved(row, changed=True)


def save_package(studio: Studio, package: Package | None, typed: dict[str, str], *, actor: audit.Actor,
                 now: datetime, display: dict | None = None) -> Saved:
    """Add a package (`package` None) or change one, from the fields as typed. `InvalidFields` names what to fix.
    `display` is the published configuration's package display, to tell the admin when a changed slug leaves its
    display settings behind."""
    values = _package_values(studio, typed)
    old_slug = package.slug if package is not None else None
    was_active = package.active if package is not None else True
    saved = _save(studio, Package, package, values, fields=PACKAGE_FIELDS, uses=package_bookings, noun="package",
                  actor=actor, now=now)
    if saved.changed and old_slug and old_slug != values["slug"] and display and old_slug in display:
        hidden = not display[old_slug]["visible"]
        saved.notices.append(
            f"The published configuration sets where {old_slug} shows{' (hidden from students)' if hidden else ''}. "
            f"Until it names {values['slug']}, the package shows after the others"
            f"{' and students can see it' if hidden else ''}: set it in Configuration.")
    if saved.changed and was_active and not values["active"]:
        upcoming = db.session.scalar(select(func.count(Booking.id)).where(
            Booking.package_id == saved.row.id, Booking.status == BookingStatus.CONFIRMED,
            Booking.start_at > now)) or 0
        if upcoming:
            saved.notices.append(f"{upcoming} upcoming lesson{'s' if upcoming != 1 else ''} of this package "
                                 f"{'stay' if upcoming != 1 else 'stays'} booked; students can still open, move and "
                                 "cancel them.")
    return saved


def save_resource(studio: Studio, resource: Resource | None, typed: dict[str, str], *, actor: audit.Actor,
                  now: datetime) -> Saved:
    """Add a resource (`resource` None) or change one, from the fields as typed."""
    values = _resource_values(typed)
    was_active = resource.active if resource is not None else True
    saved = _save(studio, Resource, resource, values, fields=RESOURCE_FIELDS, uses=resource_bookings, noun="resource",
                  actor=actor, now=now)
    if saved.changed and was_active and not values["active"]:
        upcoming = upcoming_lessons_on(saved.row.id, now)
        if upcoming:
            saved.notices.append(f"{upcoming} upcoming lesson{'s stay' if upcoming != 1 else ' stays'} booked on "
                                 f"{values['name']}; students can still open, move and cancel them.")
    return saved
