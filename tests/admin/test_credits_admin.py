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
