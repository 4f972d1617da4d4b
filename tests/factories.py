"""Factories for test data. Fixtures return functions, so a test builds exactly what it needs."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import AvailabilityRule, Blackout, Membership, Package, Resource, ResourceKind, Role, Studio, User
from portal.services import configuration
from portal.services.catalogue import touch_calendar

PASSWORD = "test-password-1"


def next_weekday(weekday: int, *, after_days: int = 3, tz: str = "America/New_York") -> date:
    """A date at least `after_days` after today (studio-local, on the tests' clock) that falls on `weekday`
    (0 = Monday)."""
    earliest = utcnow().astimezone(ZoneInfo(tz)).date() + timedelta(days=after_days)
    return earliest + timedelta(days=(weekday - earliest.weekday()) % 7)


def make_studio(slug: str = "melody-and-meter", *, timezone: str = "America/New_York", currency: str = "usd",
                resources=("piano", "drums"), hours=("09:00", "18:00"), weekdays=range(7),
                packages=(("lesson-30", 30, 3500), ("lesson-60", 60, 6500)), **settings) -> Studio:
    """A studio with resources open every listed weekday and packages (slug, minutes, price)."""
    with tenancy.all_tenants():
        studio = Studio(slug=slug, name=slug.replace("-", " ").title(), timezone=timezone, currency=currency,
                        **settings)
        db.session.add(studio)
        db.session.flush()
        for resource_slug in resources:
            resource = Resource(studio_id=studio.id, slug=resource_slug, name=resource_slug.title(),
                                kind=ResourceKind.ROOM)
            db.session.add(resource)
            db.session.flush()
            for weekday in weekdays:
                db.session.add(AvailabilityRule(studio_id=studio.id, resource_id=resource.id, weekday=weekday,
                                                start_time=time.fromisoformat(hours[0]),
                                                end_time=time.fromisoformat(hours[1])))
        for package_slug, minutes, price in packages:
            db.session.add(Package(studio_id=studio.id, slug=package_slug, name=f"{minutes}-minute lesson",
                                   duration_minutes=minutes, price_minor=price, currency=currency))
        db.session.flush()
        configuration.start(studio, now=utcnow())
        db.session.commit()
    return studio


def make_user(email: str, *, roles=(), ops: bool = False, password: str = PASSWORD) -> User:
    """A user with `roles`: pairs of (studio, Role)."""
    user = User(email=email, name=email.split("@")[0].title(), is_platform_ops=ops, email_verified_at=utcnow())
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    for studio, role in roles:
        db.session.add(Membership(user_id=user.id, studio_id=studio.id, role=role))
    db.session.commit()
    return user


def make_blackout(studio: Studio, starts: datetime, ends: datetime, resource: Resource | None = None) -> Blackout:
    with tenancy.all_tenants():
        touch_calendar(studio.id)  # as the calendar service does: caches of the studio's calendar see it
        blackout = Blackout(studio_id=studio.id, resource_id=resource.id if resource else None, starts_at=starts,
                            ends_at=ends, reason="test")
        db.session.add(blackout)
        db.session.commit()
    return blackout


@pytest.fixture
def studio_factory(app_ctx):
    return make_studio


@pytest.fixture
def user_factory(app_ctx):
    return make_user


@pytest.fixture
def two_studios(app_ctx):
    """Two tenants with a student, an admin each, and one platform ops user."""
    a = make_studio("melody-and-meter")
    b = make_studio("north-strings", timezone="Europe/London", currency="gbp", resources=("violin",))
    people = {
        "student_a": make_user("student-a@example.com", roles=[(a, Role.STUDENT)]),
        "admin_a": make_user("admin-a@example.com", roles=[(a, Role.ADMIN)]),
        "student_b": make_user("student-b@example.com", roles=[(b, Role.STUDENT)]),
        "admin_b": make_user("admin-b@example.com", roles=[(b, Role.ADMIN)]),
        "ops": make_user("ops@example.com", ops=True),
    }
    return {"a": a, "b": b, **people}
