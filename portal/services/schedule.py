"""The studio's calendar: weekly opening hours per resource, and blackouts.

Opening hours are `availability_rules` rows: spans of studio-local wall time per resource and weekday, which
availability walks on the local clock (so 09:00 stays 09:00 across DST changes). Spans of one weekday may not
overlap or touch (touching spans would read as one but split lessons at the seam).

A blackout closes the whole studio or one resource between two instants, typed in studio-local time. Before it is
saved the admin sees the confirmed lessons it would hit, and chooses to keep them or to cancel them with a full
refund and an email (`lesson_changes.cancel_by_studio`, with the blackout's reason). Saving the same blackout twice
(a form sent again) saves it once, and cancels and refunds each lesson once. Unpaid holds in the span are shown
too: they are not cancelled, and nobody else can book the span any more.

Every change is audited and raises `studios.calendar_version` (first, in the same transaction: see
`catalogue.touch_calendar`).
"""
from __future__ import annotations

import calendar as weekdays
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import joinedload

from portal import formatting
from portal.extensions import db
from portal.models import AvailabilityRule, Blackout, Booking, BookingStatus, Resource, Studio
from portal.services import audit, lesson_changes
from portal.services.catalogue import touch_calendar
from portal.services.errors import Conflict, DomainError, InvalidInput
from portal.services.timeinput import LocalInstant, parse_local, parse_wall_time

DAY_NAMES = list(weekdays.day_name)  # Monday first, as `AvailabilityRule.weekday` counts
#: Opening hours start and end on these steps (booking steps are 5 minutes or more).
HOURS_STEP_MINUTES = 5
#: The longest blackout; a longer closure is a resource (or package) to deactivate.
LONGEST_BLACKOUT = timedelta(days=366)
REASON_LENGTH = 200


# --- opening hours ----------------------------------------------------------------------------------------------

def week(resource_id: int) -> list[list[AvailabilityRule]]:
    """A resource's spans per weekday (Monday first), each day's in time order."""
    days: list[list[AvailabilityRule]] = [[] for _ in range(7)]
    for rule in db.session.scalars(select(AvailabilityRule).where(AvailabilityRule.resource_id == resource_id)
                                   .order_by(AvailabilityRule.weekday, AvailabilityRule.start_time)):
        days[rule.weekday].append(rule)
    return days


def day_spans(resource_id: int, weekday: int) -> list[AvailabilityRule]:
    return week(resource_id)[weekday]


def parse_weekday(raw: str | None) -> int:
    text = (raw or "").strip()
    if text not in ("0", "1", "2", "3", "4", "5", "6"):
        raise InvalidInput("Choose a day of the week.", code="weekday_invalid", field="weekday")
    return int(text)


def _span(start_raw: str | None, end_raw: str | None) -> tuple[time, time]:
    opens = parse_wall_time(start_raw, field="start", missing="Type when it opens, like 09:00.")
    closes = parse_wall_time(end_raw, field="end", missing="Type when it closes, like 18:00.")
    for name, value in (("start", opens), ("end", closes)):
        if value.second or value.minute % HOURS_STEP_MINUTES:
            raise InvalidInput(f"Opening hours go in {HOURS_STEP_MINUTES}-minute steps, like 09:00 or 17:45.",
                               code=f"{name}_invalid", field=name)
    if closes <= opens:
        raise InvalidInput("It must close after it opens (a span cannot run past midnight).",
                           code="span_reversed", field="end")
    return opens, closes


def _refuse_overlap(resource_id: int, weekday: int, opens: time, closes: time, *, locale: str,
                    ignore: int | None = None) -> None:
    for other in day_spans(resource_id, weekday):
        if other.id == ignore:
            continue
        if opens <= other.end_time and other.start_time <= closes:
            span = f"{_clock(other.start_time, locale)}–{_clock(other.end_time, locale)}"
            touching = opens == other.end_time or closes == other.start_time
            why = (f"It would join {span} on {DAY_NAMES[weekday]}: change that span instead." if touching
                   else f"It overlaps {span} on {DAY_NAMES[weekday]}.")
            db.session.rollback()
            raise InvalidInput(why, code="span_overlaps", field="end" if opens < other.start_time else "start")


def _clock(value: time, locale: str) -> str:
    from babel.dates import format_time

    return format_time(value, "short", locale=locale).replace("\u202f", " ")


def _rule_json(rule: AvailabilityRule, resource: Resource) -> dict:
    return {"resource": resource.slug, "weekday": DAY_NAMES[rule.weekday],
            "start": rule.start_time.strftime("%H:%M"), "end": rule.end_time.strftime("%H:%M")}


def add_span(studio: Studio, resource: Resource, weekday_raw: str | None, start_raw: str | None,
             end_raw: str | None, *, actor: audit.Actor, now: datetime) -> AvailabilityRule:
    weekday = parse_weekday(weekday_raw)
    opens, closes = _span(start_raw, end_raw)
    studio_id, locale = studio.id, studio.locale
    touch_calendar(studio_id)
    _refuse_overlap(resource.id, weekday, opens, closes, locale=locale)
    rule = AvailabilityRule(studio_id=studio_id, resource_id=resource.id, weekday=weekday, start_time=opens,
                            end_time=closes)
    db.session.add(rule)
    db.session.flush()
    audit.record(actor=actor, action="hours.add", target_type="opening hours", target_id=rule.id,
                 studio_id=studio_id, now=now, after=_rule_json(rule, resource))
    db.session.commit()
    return rule


def change_span(studio: Studio, rule: AvailabilityRule, start_raw: str | None, end_raw: str | None, *,
                actor: audit.Actor, now: datetime) -> bool:
    """Change one span's times; False when they are what it already has."""
    opens, closes = _span(start_raw, end_raw)
    if (opens, closes) == (rule.start_time, rule.end_time):
        return False
    studio_id, locale, resource = studio.id, studio.locale, rule.resource
    before = _rule_json(rule, resource)
    touch_calendar(studio_id)
    _refuse_overlap(rule.resource_id, rule.weekday, opens, closes, locale=locale, ignore=rule.id)
    rule.start_time, rule.end_time = opens, closes
    audit.record(actor=actor, action="hours.change", target_type="opening hours", target_id=rule.id,
                 studio_id=studio_id, now=now, before=before, after=_rule_json(rule, resource))
    db.session.commit()
    return True


def remove_span(studio: Studio, rule: AvailabilityRule, *, actor: audit.Actor, now: datetime) -> None:
    studio_id = studio.id
    before = _rule_json(rule, rule.resource)
    touch_calendar(studio_id)
    db.session.delete(rule)
    audit.record(actor=actor, action="hours.remove", target_type="opening hours", target_id=rule.id,
                 studio_id=studio_id, now=now, before=before)
    db.session.commit()


# --- blackouts: reading the form --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlackoutDraft:
    """A blackout as typed, parsed: what it covers, and how its typed times met any clock change."""

    resource: Resource | None
    starts: LocalInstant
    ends: LocalInstant
    reason: str

    @property
    def starts_at(self) -> datetime:
        return self.starts.utc

    @property
    def ends_at(self) -> datetime:
        return self.ends.utc


def explain(draft: BlackoutDraft, studio: Studio) -> list[str]:
    """What the admin should know about typed times that fall on a clock change."""
    tz, locale = studio.tz, studio.locale
    notes = []
    for label, instant in (("starts", draft.starts), ("ends", draft.ends)):
        typed = f"{_clock(instant.wall.time(), locale)} on {formatting.day(instant.wall.date(), locale)}"
        actual = formatting.when(instant.utc, tz, locale)
        if instant.kind == "skipped":
            notes.append(f"{typed} does not exist: the clocks go forward over it. The blackout {label} when they "
                         f"jump, at {actual}.")
        elif instant.kind == "repeated":
            which = "first" if label == "starts" else "second"
            notes.append(f"{typed} happens twice: the clocks go back. The blackout {label} at the {which} one, "
                         f"{actual}, so it covers the repeated hour.")
    return notes


def parse_blackout(studio: Studio, *, resource_raw: str | None, starts_raw: str | None, ends_raw: str | None,
                   reason_raw: str | None, now: datetime, need_reason: bool = True) -> BlackoutDraft:
    """The typed blackout, or `InvalidInput` naming the field to fix. A preview does not need the reason yet."""
    resource = None
    slug = (resource_raw or "").strip()
    if slug:
        resource = db.session.scalar(select(Resource).where(Resource.slug == slug))
        if resource is None:
            raise InvalidInput("Choose the whole studio or one of its rooms, instruments or teachers.",
                               code="resource_not_found", field="resource")
    tz = studio.tz
    starts = parse_local(starts_raw, tz, field="starts", edge="start", missing="Pick when the blackout starts.")
    ends = parse_local(ends_raw, tz, field="ends", edge="end", missing="Pick when the blackout ends.")
    if ends.utc <= starts.utc:
        raise InvalidInput("The blackout must end after it starts.", code="ends_before_starts", field="ends")
    if ends.utc <= now:
        raise InvalidInput("That blackout would be over already: pick an end in the future.",
                           code="ends_in_past", field="ends")
    if ends.utc - starts.utc > LONGEST_BLACKOUT:
        raise InvalidInput("A blackout lasts a year at most. For longer, deactivate the resource in the "
                           "catalogue.", code="blackout_too_long", field="ends")
    reason = " ".join((reason_raw or "").split())
    if not reason and need_reason:
        raise InvalidInput("Say why: students whose lessons are cancelled read it in their email.",
                           code="reason_missing", field="reason")
    if len(reason) > REASON_LENGTH:
        raise InvalidInput(f"Keep the reason to {REASON_LENGTH} characters.", code="reason_too_long",
                           field="reason")
    return BlackoutDraft(resource, starts, ends, reason)


# --- blackouts: what they hit -----------------------------------------------------------------------------------

@dataclass
class Impact:
    """The lessons a blackout's span meets: confirmed lessons not yet started (to keep or cancel), and live
    unpaid holds (left alone; nobody else can book the span)."""

    confirmed: list[Booking] = field(default_factory=list)
    held: list[Booking] = field(default_factory=list)

    @property
    def confirmed_ids(self) -> list[int]:
        return [b.id for b in self.confirmed]


def _overlapping(resource_id: int | None, starts_at: datetime, ends_at: datetime):
    where = [Booking.start_at < ends_at, Booking.end_at > starts_at]
    if resource_id is not None:
        where.append(Booking.resource_id == resource_id)
    return (select(Booking).options(joinedload(Booking.student), joinedload(Booking.resource),
                                    joinedload(Booking.package))
            .where(*where).order_by(Booking.start_at, Booking.id))


def impact(resource_id: int | None, starts_at: datetime, ends_at: datetime, now: datetime) -> Impact:
    """Lessons a blackout over [starts_at, ends_at) on `resource_id` (None: every resource) would hit. A lesson is
    hit when its time overlaps the span (availability refuses the same); lessons already started are not."""
    query = _overlapping(resource_id, starts_at, ends_at).where(or_(
        and_(Booking.status == BookingStatus.CONFIRMED, Booking.start_at > now),
        and_(Booking.status == BookingStatus.HELD, Booking.hold_expires_at > now)))
    found = Impact()
    for booking in db.session.scalars(query).unique():
        (found.confirmed if booking.status == BookingStatus.CONFIRMED else found.held).append(booking)
    return found


# --- blackouts: saving, cancelling, deleting ---------------------------------------------------------------------

class LessonsChanged(Conflict):
    """The confirmed lessons a blackout would hit are not the ones the admin saw in the preview."""

    code = "lessons_changed"


@dataclass
class Outcome:
    blackout: Blackout
    created: bool
    cancelled: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)  # cancelled (or moved out) meanwhile by someone else


def _blackout_json(blackout: Blackout, resource: Resource | None) -> dict:
    return {"resource": resource.slug if resource else None, "starts_at": blackout.starts_at.isoformat(),
            "ends_at": blackout.ends_at.isoformat(), "reason": blackout.reason}


def create_blackout(studio: Studio, draft: BlackoutDraft, *, lessons: str | None, previewed: list[int],
                    actor: audit.Actor, now: datetime) -> Outcome:
    """Save the blackout and do what the admin chose with the confirmed lessons it hits: `lessons` is "keep" or
    "cancel" (needed only when it hits some). `previewed` are the lessons the admin was shown: when cancelling,
    they must still be exactly the lessons hit (`LessonsChanged` otherwise, and nothing is saved).

    The same blackout sent again (same span, resource and reason) is not saved twice: the first one is returned,
    and with "cancel", lessons it hits that are still confirmed are cancelled (each lesson is cancelled, refunded
    and emailed once: a second cancel of a lesson is refused by its state)."""
    if lessons not in (None, "", "keep", "cancel"):
        raise InvalidInput("Choose to keep the lessons or cancel them.", code="lessons_invalid", field="lessons")
    studio_id = studio.id
    resource_id = draft.resource.id if draft.resource else None
    touch_calendar(studio_id)  # first: concurrent saves of this studio's calendar wait here for each other
    existing = db.session.scalar(select(Blackout).where(
        Blackout.resource_id.is_(None) if resource_id is None else Blackout.resource_id == resource_id,
        Blackout.starts_at == draft.starts_at, Blackout.ends_at == draft.ends_at, Blackout.reason == draft.reason))
    hits = impact(resource_id, draft.starts_at, draft.ends_at, now)
    hit_ids, held_ids = hits.confirmed_ids, [b.id for b in hits.held]
    if existing is not None:
        db.session.rollback()  # nothing new to save: leave the calendar version alone
        outcome = Outcome(existing, created=False)
    else:
        if hit_ids and lessons not in ("keep", "cancel"):
            db.session.rollback()
            count = len(hit_ids)
            raise InvalidInput(f"This blackout hits {count} confirmed lesson{'s' if count != 1 else ''}: choose "
                               f"to keep or cancel {'it' if count == 1 else 'them'}.", code="lessons_choice_missing",
                               field="lessons")
        if lessons == "cancel" and sorted(hit_ids) != sorted(previewed):
            db.session.rollback()
            raise LessonsChanged("The lessons this blackout hits changed since the preview (a lesson was booked, "
                                 "moved or cancelled meanwhile). Check the list again, then save.")
        blackout = Blackout(studio_id=studio_id, resource_id=resource_id, starts_at=draft.starts_at,
                            ends_at=draft.ends_at, reason=draft.reason, created_at=now)
        db.session.add(blackout)
        db.session.flush()
        after = {**_blackout_json(blackout, draft.resource), "lessons": lessons or "none",
                 "confirmed_hit": hit_ids, "holds_hit": held_ids}
        audit.record(actor=actor, action="blackout.create", target_type="blackout", target_id=blackout.id,
                     studio_id=studio_id, now=now, after=after)
        db.session.commit()
        outcome = Outcome(blackout, created=True)
    if lessons == "cancel":
        # Sent again: only lessons the admin saw and chose to cancel (those still confirmed are cancelled now).
        targets = hit_ids if outcome.created else [i for i in hit_ids if i in set(previewed)]
        _cancel_lessons(outcome, targets, actor=actor, now=now)
    else:
        outcome.kept = hit_ids
    return outcome


def _cancel_lessons(outcome: Outcome, booking_ids: list[int], *, actor: audit.Actor, now: datetime) -> None:
    blackout = outcome.blackout
    blackout_id, reason, starts_at, ends_at = blackout.id, blackout.reason, blackout.starts_at, blackout.ends_at
    for booking_id in booking_ids:
        db.session.expire_all()  # each lesson as it is now (another admin may have moved or cancelled it)
        booking = db.session.get(Booking, booking_id)
        if (booking is None or booking.status != BookingStatus.CONFIRMED
                or not (booking.start_at < ends_at and booking.end_at > starts_at)):
            outcome.already.append(booking_id)
            continue
        try:
            lesson_changes.cancel_by_studio(booking=booking, actor=actor, now=now, reason=reason,
                                            note=f"Blackout #{blackout_id}: cancelled with a full refund.")
        except DomainError:  # cancelled meanwhile (the same form sent twice at once): nothing more to do
            db.session.rollback()
            outcome.already.append(booking_id)
            continue
        outcome.cancelled.append(booking_id)


def delete_blackout(studio: Studio, blackout: Blackout, *, actor: audit.Actor, now: datetime) -> None:
    """Open the span again. Lessons it cancelled stay cancelled."""
    studio_id = studio.id
    before = _blackout_json(blackout, blackout.resource)
    blackout_id = blackout.id
    touch_calendar(studio_id)
    db.session.delete(blackout)
    audit.record(actor=actor, action="blackout.delete", target_type="blackout", target_id=blackout_id,
                 studio_id=studio_id, now=now, before=before)
    db.session.commit()


@dataclass(frozen=True)
class Listed:
    blackout: Blackout
    confirmed_inside: int  # confirmed lessons still inside it (kept, or paid after it was made)


def blackouts(now: datetime, *, past_limit: int = 50) -> tuple[list[Listed], list[Blackout]]:
    """Upcoming and current blackouts (soonest first, with the confirmed lessons inside them), and past ones
    (latest first)."""
    upcoming = db.session.scalars(select(Blackout).options(joinedload(Blackout.resource))
                                  .where(Blackout.ends_at > now).order_by(Blackout.starts_at, Blackout.id)).all()
    past = db.session.scalars(select(Blackout).options(joinedload(Blackout.resource))
                              .where(Blackout.ends_at <= now).order_by(Blackout.ends_at.desc(), Blackout.id.desc())
                              .limit(past_limit)).all()
    listed = [Listed(b, len(impact(b.resource_id, b.starts_at, b.ends_at, now).confirmed)) for b in upcoming]
    return listed, past
