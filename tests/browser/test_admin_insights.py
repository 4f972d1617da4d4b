"""A studio admin reads the utilisation findings in words on the admin home, in a real browser on PostgreSQL and
the demo data: eight weeks in which the drum booth went from two lessons a day to five read as a lasting rise with
a recommendation to add hours, on a desktop and at phone width (where the page is also checked by axe).
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Resource, Studio, User
from tests.browser.helpers import STUDIO, assert_fits_phone_width

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

ADMIN = ("admin@example.com", "demo-password-1")
DAYS = 56


def seed_drum_rise(app) -> dict:
    """56 confirmed days up to yesterday (studio-local) on the drum booth (480 capacity minutes a day): two one-hour
    lessons a day for four weeks, then five a day: 25% booked, then 62.5%."""
    with app.app_context(), tenancy.all_tenants():
        studio = db.session.scalar(select(Studio).where(Studio.slug == "melody-and-meter"))
        with tenancy.scoped(studio.id):
            drums = db.session.scalar(select(Resource).where(Resource.slug == "drums"))
            student = db.session.scalar(select(User).where(User.email == "student@example.com"))
            package = db.session.scalar(select(Package).where(Package.slug == "lesson-60"))
            last = utcnow().astimezone(studio.tz).date() - timedelta(days=1)
            first = last - timedelta(days=DAYS - 1)
            for i in range(DAYS):
                day = first + timedelta(days=i)
                for hour in range(2 if i < DAYS - 28 else 5):
                    start = datetime.combine(day, time(12 + hour), studio.tz).astimezone(timezone.utc)
                    end = start + timedelta(hours=1)
                    db.session.add(Booking(studio_id=studio.id, student_id=student.id, package_id=package.id,
                                           resource_id=drums.id, start_at=start, end_at=end, occupied_until=end,
                                           status=BookingStatus.CONFIRMED, price_minor=6500, currency="usd"))
            db.session.commit()
        db.session.remove()
    return {"shift_day": first + timedelta(days=DAYS - 28)}


def test_admin_home_tells_the_drum_booth_rise_in_words(page: Page, live_app, live_server):
    seeded = seed_drum_rise(live_app)
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    page.goto(f"{STUDIO}/admin/")

    section = page.get_by_role("region", name="Patterns in the last eight weeks")
    expect(section).to_be_visible()
    drums = section.locator("li[data-resource='drums']")
    expect(drums).to_have_attribute("data-tier", "high")
    expect(drums.locator("strong")).to_have_text(
        re.compile(r"^Add (\w+day) hours to Drum booth: 62% booked on \1s\.$"))
    expect(drums).to_contain_text("(high)")
    expect(drums.get_by_role("listitem")).to_have_text(
        [f"Drum booth moved up from 25% to about 62% from {seeded['shift_day'].isoformat()}."])
    # The empty piano room is no rise: it reads as idle, never as the drums' finding.
    expect(section.locator("li[data-resource='piano']")).not_to_contain_text("moved up")

    assert_fits_phone_width(page, "the admin home with utilisation findings")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(drums.locator("strong")).to_be_visible()
    expect(drums.get_by_role("listitem")).to_contain_text(["Drum booth moved up from 25% to about 62%"])
