"""A studio open around the clock with students, and helpers to read the credit ledger."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import CreditBalance, CreditEntry, Role
from tests.factories import make_studio, make_user


@pytest.fixture
def studio(app_ctx):
    studio = make_studio(buffer_minutes=0, hours=("00:00", "23:30"), booking_horizon_days=120, makeup_valid_days=60)
    people = [make_user(f"student{i}@example.com", roles=[(studio, Role.STUDENT)]) for i in range(3)]
    admin = make_user("admin@example.com", roles=[(studio, Role.ADMIN)])
    return SimpleNamespace(row=studio, id=studio.id, tz=studio.tz, students=people, admin=admin)


def local(studio, day, hh_mm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hh_mm), studio.tz)


def soon_start(tz, after_hours: int = 4) -> datetime:
    """A whole-hour local start between `after_hours` and about 16 hours from now that a 60-minute lesson fits in
    an 00:00-23:30 day, whatever the clock says (any hour, any DST day): inside a 24-hour cancel window."""
    start = (utcnow() + timedelta(hours=after_hours)).astimezone(tz).replace(minute=0, second=0, microsecond=0)
    while not 8 <= start.hour <= 20:
        start = (start + timedelta(hours=1)).astimezone(tz)
    return start


def assert_ledger_matches_balances(studio_id: int) -> None:
    """The invariant: every balance row equals the sum of its ledger entries, and none is negative."""
    with tenancy.scoped(studio_id):
        rows = db.session.execute(select(CreditBalance.id, CreditBalance.balance)).all()
        for balance_id, balance in rows:
            total = db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0))
                                      .where(CreditEntry.balance_id == balance_id))
            assert balance == total, f"balance {balance_id}: row {balance} != ledger {total}"
            assert balance >= 0
        db.session.commit()
