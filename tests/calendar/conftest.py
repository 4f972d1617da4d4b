"""Bookings made directly as rows: calendar export only reads them, so no checkout is needed."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import Booking, BookingStatus, Membership, Package, Resource, Role, Studio, User


def make_booking(studio: Studio, student: User, start: datetime, *, status: BookingStatus = BookingStatus.CONFIRMED,
                 package: str = "lesson-60", resource: str = "piano", sequence: int = 0) -> Booking:
    with tenancy.scoped(studio.id):
        offered = db.session.scalar(select(Package).where(Package.slug == package))
        room = db.session.scalar(select(Resource).where(Resource.slug == resource))
        end = start + timedelta(minutes=offered.duration_minutes)
        booking = Booking(studio_id=studio.id, student_id=student.id, package_id=offered.id, resource_id=room.id,
                          start_at=start, end_at=end, occupied_until=end, status=status,
                          price_minor=offered.price_minor, currency=offered.currency, ical_sequence=sequence)
        db.session.add(booking)
        db.session.commit()
        return booking


def student_membership(user: User, studio: Studio) -> Membership:
    return db.session.scalar(select(Membership).where(Membership.user_id == user.id,
                                                      Membership.studio_id == studio.id,
                                                      Membership.role == Role.STUDENT))


@pytest.fixture
def booking_factory(app_ctx):
    return make_booking
