"""The admin's weekly lessons and credits page: balances, packs, series; grants and revocations need a note and
are audited; platform ops may look but not change; students may not look."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import AuditEntry, LessonPack, Role
from portal.services import credits
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, make_studio, make_user

PAGE = "/s/melody-and-meter/admin/credits"


@pytest.fixture
def people(app_ctx):
    studio = make_studio()
    return {"studio": studio, "admin": make_user("boss@example.com", roles=[(studio, Role.ADMIN)]),
            "student": make_user("pupil@example.com", roles=[(studio, Role.STUDENT)]),
            "ops": make_user("ops@example.com", ops=True)}


def test_access(client, auth, people):
    assert client.get(PAGE).status_code == 302
    auth.login("pupil@example.com", PASSWORD)
    assert client.get(PAGE).status_code == 403
    auth.logout()
    auth.login("ops@example.com", PASSWORD)
    page = client.get(PAGE)
    assert page.status_code == 200 and 'id="adjust-credits"' not in page.get_data(True)
    assert client.post(f"{PAGE}/adjust", data={"csrf_token": csrf_token_from(page.get_data(True)),
                                               "student": people["student"].id, "amount": 1, "minutes": 60,
                                               "note": "x"}).status_code == 403


def test_grant_revoke_and_sell_a_pack_with_notes(client, auth, people):
    auth.login("boss@example.com", PASSWORD)
    token = csrf_token_from(client.get(PAGE).get_data(True))
    student = people["student"].id
    missing_note = client.post(f"{PAGE}/adjust", data={"csrf_token": token, "student": student, "amount": 2,
                                                       "minutes": 60, "note": ""})
    assert missing_note.status_code == 422 and "note" in missing_note.get_data(True)
    assert client.post(f"{PAGE}/adjust", data={"csrf_token": token, "student": student, "amount": 2,
                                               "minutes": 60, "valid_days": 30, "note": "goodwill"}).status_code == 303
    too_many = client.post(f"{PAGE}/adjust", data={"csrf_token": token, "student": student, "amount": 5,
                                                   "minutes": 60, "action": "revoke", "note": "oops"})
    assert too_many.status_code == 409
    assert client.post(f"{PAGE}/adjust", data={"csrf_token": token, "student": student, "amount": 1,
                                               "minutes": 60, "action": "revoke", "note": "oops"}).status_code == 303
    bad_pack = client.post(f"{PAGE}/packs", data={"csrf_token": token, "name": "Ten", "lesson_count": "0",
                                                  "lesson_minutes": "60", "valid_days": "180", "price": "abc"})
    assert bad_pack.status_code == 422
    assert client.post(f"{PAGE}/packs", data={"csrf_token": token, "name": "Ten piano lessons", "lesson_count": "10",
                                              "lesson_minutes": "60", "valid_days": "180",
                                              "price": "600.00"}).status_code == 303
    with tenancy.scoped(people["studio"].id):
        pack = db.session.scalar(select(LessonPack))
        assert (pack.slug, pack.price_minor) == ("ten-piano-lessons", 60000)
        pack_id = pack.id
    assert client.post(f"{PAGE}/adjust", data={"csrf_token": token, "student": student, "pack": pack_id,
                                               "note": "paid at the desk"}).status_code == 303
    page = client.get(PAGE).get_data(True)
    assert '<td class="balance">11</td>' in page and "Ten piano lessons" in page
    with tenancy.scoped(people["studio"].id):
        assert credits.usable(student, 60) == 11
        notes = dict(db.session.execute(select(AuditEntry.action, AuditEntry.note)
                                        .where(AuditEntry.action.like("credit.%"))).all())
        assert notes == {"credit.grant": "goodwill", "credit.revoke": "oops", "credit.purchase": "paid at the desk"}


def test_the_waitlist_shows_who_waits_for_what_and_the_offers_out_with_their_expiry(client, auth, people):
    from datetime import datetime, time, timedelta

    from portal.clock import utcnow
    from portal.formatting import when
    from portal.models import User, WaitlistEntry, WaitlistStatus
    from portal.services import waitlist

    studio = people["studio"]
    rival = make_user("rival@example.com", roles=[(studio, Role.STUDENT)])
    day = utcnow().astimezone(studio.tz).date() + timedelta(days=3)
    window = [datetime.combine(day, time(h), studio.tz).isoformat() for h in (10, 11)]  # room for one lesson
    now = utcnow()
    with tenancy.scoped(studio.id):
        pupil = db.session.get(User, people["student"].id)
        waitlist.join(studio=studio, student=pupil, package_slug="lesson-60", resource_slug="drums",
                      from_raw=window[0], to_raw=window[1], now=now)
        assert waitlist.sweep(now=now)["offered"] == 1
        waitlist.join(studio=studio, student=db.session.get(User, rival.id), package_slug="lesson-60",
                      resource_slug="drums", from_raw=window[0], to_raw=window[1], now=now)
        assert waitlist.sweep(now=now)["offered"] == 0  # the one time is held for the first student
        offered = db.session.scalar(select(WaitlistEntry).where(WaitlistEntry.status == WaitlistStatus.OFFERED))
        expiry = when(offered.offer_expires_at, studio.tz)
    auth.login("boss@example.com", PASSWORD)
    page = client.get(PAGE).get_data(True)
    section = page[page.index('id="waitlist"'):]
    rows = section.split("<tr")[2:]
    assert len(rows) == 2
    assert "pupil@example.com" in rows[0] and "offer out" in rows[0] and expiry in rows[0]
    assert "rival@example.com" in rows[1] and "waiting" in rows[1] and "60-minute lesson" in rows[1]
