"""The demo data of the specification, seeded idempotently (development only)."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import (
    AvailabilityRule,
    Blackout,
    LessonPack,
    Membership,
    Package,
    Resource,
    ResourceKind,
    Role,
    Studio,
    User,
)
from portal.services import configuration
from portal.services.catalogue import touch_calendar

DEMO_PASSWORD = "demo-password-1"

STUDIOS = [
    {
        "slug": "melody-and-meter", "name": "Melody & Meter", "timezone": "America/New_York", "currency": "usd",
        "locale": "en_US",
        "branding": {"welcome_text": "Piano, drums and a rehearsal room in the middle of town. Book a lesson in a "
                                     "few clicks and pay online."},
        "resources": [
            # slug, name, kind, capacity minutes per day, {weekday: (open, close)}
            ("piano", "Piano room", ResourceKind.INSTRUMENT, 540, {d: ("09:00", "18:00") for d in range(6)}),
            ("drums", "Drum booth", ResourceKind.INSTRUMENT, 480, {d: ("12:00", "20:00") for d in range(5)}),
            ("studio-a", "Studio A", ResourceKind.ROOM, 660, {d: ("10:00", "21:00") for d in range(1, 7)}),
        ],
        "packages": [
            ("lesson-30", "30-minute lesson", "A focused half hour with a teacher.", 30, 3500),
            ("lesson-60", "60-minute lesson", "A full lesson: warm-up, repertoire and theory.", 60, 6500),
            ("rehearsal-90", "90-minute rehearsal", "Room time for a band or ensemble.", 90, 9000),
        ],
        "packs": [
            # slug, name, lessons, minutes each, valid days, price
            ("ten-60", "10 × 60-minute lessons", 10, 60, 183, 58500),
        ],
    },
    {
        "slug": "north-strings", "name": "North Strings", "timezone": "Europe/London", "currency": "gbp",
        "locale": "en_GB",
        "branding": {"primary_color": "#1d5c63", "accent_color": "#d4a017", "font": "serif"},
        "resources": [
            ("violin", "Violin studio", ResourceKind.ROOM, 480, {d: ("10:00", "18:00") for d in range(5)}),
            ("cello", "Cello studio", ResourceKind.ROOM, 480, {d: ("10:00", "18:00") for d in range(5)}),
        ],
        "packages": [
            ("strings-45", "45-minute strings lesson", "Violin, viola or cello.", 45, 4000),
        ],
    },
]

USERS = [
    ("student@example.com", "Sam Student", False, [("melody-and-meter", Role.STUDENT)]),
    ("admin@example.com", "Ada Admin", False, [("melody-and-meter", Role.ADMIN)]),
    ("ops@example.com", "Olive Ops", True, []),
    ("north-admin@example.com", "Nora North", False, [("north-strings", Role.ADMIN)]),
]


def _get_or_create(model, defaults: dict, **keys):
    row = db.session.scalar(select(model).where(*[getattr(model, k) == v for k, v in keys.items()]))
    if row is None:
        row = model(**keys, **defaults)
        db.session.add(row)
        db.session.flush()
    return row


def seed_demo(now: datetime) -> None:
    """Create whatever of the demo data is missing. Safe to run on every start."""
    with tenancy.all_tenants():
        studios = {}
        for spec in STUDIOS:
            studio = _get_or_create(Studio, {"name": spec["name"], "timezone": spec["timezone"],
                                             "currency": spec["currency"], "locale": spec["locale"]},
                                    slug=spec["slug"])
            studios[studio.slug] = studio
            for slug, name, kind, capacity, hours in spec["resources"]:
                resource = _get_or_create(Resource, {"name": name, "kind": kind, "capacity_minutes": capacity},
                                          studio_id=studio.id, slug=slug)
                has_rules = db.session.scalar(select(AvailabilityRule.id).where(
                    AvailabilityRule.resource_id == resource.id).limit(1))
                if has_rules is None:
                    for weekday, (opens, closes) in hours.items():
                        db.session.add(AvailabilityRule(
                            studio_id=studio.id, resource_id=resource.id, weekday=weekday,
                            start_time=time.fromisoformat(opens), end_time=time.fromisoformat(closes)))
            for slug, name, description, minutes, price in spec["packages"]:
                _get_or_create(Package, {"name": name, "description": description, "duration_minutes": minutes,
                                         "price_minor": price, "currency": studio.currency},
                               studio_id=studio.id, slug=slug)
            for slug, name, count, minutes, days, price in spec.get("packs", ()):
                _get_or_create(LessonPack, {"name": name, "lesson_count": count, "lesson_minutes": minutes,
                                            "valid_days": days, "price_minor": price, "currency": studio.currency,
                                            "created_at": now},
                               studio_id=studio.id, slug=slug)
            db.session.flush()
            configuration.start(studio, now=now, branding=spec.get("branding"))
            if db.session.scalar(select(Blackout.id).where(Blackout.studio_id == studio.id).limit(1)) is None:
                # A studio-wide closure on the second Saturday from now, local midnight to midnight.
                local_today = now.astimezone(studio.tz).date()
                saturday = local_today + timedelta(days=(5 - local_today.weekday()) % 7 + 7)
                starts = datetime.combine(saturday, time.min, studio.tz)
                db.session.add(Blackout(studio_id=studio.id, starts_at=starts,
                                        ends_at=datetime.combine(saturday + timedelta(days=1), time.min, studio.tz),
                                        reason="Studio maintenance day"))
            touch_calendar(studio.id)  # whatever was added, running processes read the catalogue afresh
        for email, name, is_ops, roles in USERS:
            user = db.session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(email=email, name=name, is_platform_ops=is_ops, email_verified_at=now)
                user.set_password(DEMO_PASSWORD)
                db.session.add(user)
                db.session.flush()
            for studio_slug, role in roles:
                if not user.has_role(studios[studio_slug].id, role):
                    db.session.add(Membership(user=user, studio_id=studios[studio_slug].id, role=role))
        db.session.commit()
