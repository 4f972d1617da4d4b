"""The team: invite an admin by email (a single-use link that expires after 72 hours), accept it as a new person
or with an existing account, revoke it, remove an admin; a studio always keeps its last admin."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import AccountToken, AuditEntry, Membership, Role, Studio, TokenPurpose, User
from portal.services import account_mail, account_tokens
from portal.services import team as team_service
from portal.services.audit import Actor
from tests.admin.bookings_support import mails
from tests.admin.conftest import STUDIO, log_in
from tests.factories import PASSWORD
from tests.payments.helpers import drain

TEAM = f"{STUDIO}/admin/team"
SUBJECT = "You are invited to help run"


def _invite(app, admin, email: str):
    response = admin.post(f"{TEAM}/invitations", data={"csrf_token": admin.csrf, "email": email})
    drain(app)
    return response


def _link(app, email: str) -> str:
    sent = mails(app, to=email, subject=SUBJECT)
    assert sent, f"no invitation to {email}"
    text = sent[-1].get_body(("plain",)).get_content()
    return re.search(r"/s/melody-and-meter/admin/invitations/\S+", text).group(0)


def _roles(app, email: str) -> set[tuple[int, str]]:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        return {(m.studio_id, m.role.value) for m in user.memberships} if user else set()


def _actions(app) -> list[str]:
    with app.app_context():
        return [a.action for a in db.session.scalars(select(AuditEntry).where(AuditEntry.action.like("team.%"))
                                                     .order_by(AuditEntry.id))]


def _csrf(client, path: str) -> str:
    from tests.conftest import csrf_token_from

    return csrf_token_from(client.get(path).get_data(as_text=True))


def test_a_new_person_joins_through_the_emailed_link_once(app, admin, world):
    invited = _invite(app, admin, "  New.Teacher@Example.com ")
    assert invited.status_code == 303
    team_page = admin.get(TEAM).get_data(as_text=True)
    assert "new.teacher@example.com" in team_page and "Pending invitations" in team_page
    link = _link(app, "new.teacher@example.com")
    assert "72 hours" in mails(app, to="new.teacher@example.com")[0].get_body(("plain",)).get_content()

    visitor = app.test_client()
    page = visitor.get(link)
    assert page.status_code == 200 and "Choose your name and a password" in page.get_data(as_text=True)
    token = _csrf(visitor, link)
    short = visitor.post(link, data={"csrf_token": token, "name": "Nadia", "password": "short"})
    assert short.status_code == 422 and 'value="Nadia"' in short.get_data(as_text=True)
    joined = visitor.post(link, data={"csrf_token": token, "name": "Nadia", "password": "a-long-password-1"})
    assert joined.status_code == 303 and joined.headers["Location"].endswith(f"{STUDIO}/admin/")
    assert visitor.get(f"{STUDIO}/admin/").status_code == 200  # logged in, and an admin now
    assert _roles(app, "new.teacher@example.com") == {(world.a.id, "admin")}
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "new.teacher@example.com"))
        assert user.name == "Nadia" and user.email_verified_at is not None
    assert _actions(app) == ["team.invite", "team.join"]

    again = app.test_client().get(link)
    assert again.status_code == 410 and "not valid any more" in again.get_data(as_text=True)
    fresh = app.test_client()
    csrf = _csrf(fresh, "/login")
    login = fresh.post("/login", data={"email": "new.teacher@example.com", "password": "a-long-password-1",
                                       "csrf_token": csrf})
    assert login.status_code == 303 and login.headers["Location"].endswith(f"{STUDIO}/admin/")
    assert "new.teacher@example.com" not in admin.get(TEAM).get_data(as_text=True).split("Pending invitations")[1]


def test_someone_with_an_account_logs_in_and_accepts(app, admin, world):
    assert _invite(app, admin, "student@example.com").status_code == 303
    link = _link(app, "student@example.com")
    body = mails(app, to="student@example.com", subject=SUBJECT)[0].get_body(("plain",)).get_content()
    assert "log in with your account" in body

    visitor = app.test_client()
    page = visitor.get(link).get_data(as_text=True)
    assert "Log in to accept" in page and "Choose your name" not in page
    csrf = _csrf(visitor, "/login")  # the invitation offers an anonymous visitor no form: a token from elsewhere
    anonymous = visitor.post(link, data={"csrf_token": csrf})
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["Location"]

    rival = app.test_client()
    log_in(rival, "rival@example.com")
    wrong = rival.post(link, data={"csrf_token": _csrf(rival, link)})
    assert wrong.status_code == 403 and "sent to student@example.com" in wrong.get_data(as_text=True)
    assert (world.a.id, "admin") not in _roles(app, "rival@example.com")

    log_in(visitor, "student@example.com")
    assert "Accept the invitation" in visitor.get(link).get_data(as_text=True)
    accepted = visitor.post(link, data={"csrf_token": _csrf(visitor, link)})
    assert accepted.status_code == 303
    assert _roles(app, "student@example.com") == {(world.a.id, "student"), (world.a.id, "admin")}
    assert visitor.get(f"{STUDIO}/admin/").status_code == 200
    assert visitor.post(link, data={"csrf_token": _csrf(visitor, f"{STUDIO}/")}).status_code == 410


def test_the_link_expires_after_72_hours(app, admin, world):
    assert _invite(app, admin, "late@example.com").status_code == 303
    raw = _link(app, "late@example.com").rsplit("/", 1)[1]
    with app.app_context(), tenancy.scoped(world.a.id):
        studio = db.session.get(Studio, world.a.id)
        issued = db.session.scalar(select(AccountToken.created_at).where(AccountToken.purpose == TokenPurpose.INVITE))
        assert team_service.open_invitation(raw, studio, now=issued + timedelta(hours=72, seconds=-1)).needs_password
        with pytest.raises(account_tokens.LinkInvalid, match="expired"):
            team_service.open_invitation(raw, studio, now=issued + timedelta(hours=72))
        with pytest.raises(account_tokens.LinkInvalid):
            team_service.accept_as_new(raw, studio, name="Late", password="a-long-password-1",
                                       now=issued + timedelta(hours=73))
        other = db.session.scalar(select(Studio).where(Studio.id == world.b.id))
        with pytest.raises(account_tokens.LinkInvalid, match="another studio"):
            team_service.open_invitation(raw, other, now=issued)
    assert _roles(app, "late@example.com") == set()
    # Past its expiry it is no longer pending either.
    with app.app_context():
        studio = db.session.get(Studio, world.a.id)
        assert team_service.pending_invitations(studio, now=utcnow() + timedelta(hours=72, minutes=1)) == []
        assert len(team_service.pending_invitations(studio, now=utcnow())) == 1


def test_revoking_an_invitation_kills_its_link(app, admin, world):
    assert _invite(app, admin, "maybe@example.com").status_code == 303
    link = _link(app, "maybe@example.com")
    with app.app_context():
        invitation_id = db.session.scalar(select(AccountToken.id).where(AccountToken.purpose == TokenPurpose.INVITE))
    revoked = admin.post(f"{TEAM}/invitations/{invitation_id}/revoke", data={"csrf_token": admin.csrf})
    assert revoked.status_code == 303
    assert "maybe@example.com" not in admin.get(TEAM).get_data(as_text=True).split("Pending invitations")[1]
    assert app.test_client().get(link).status_code == 410
    twice = admin.post(f"{TEAM}/invitations/{invitation_id}/revoke", data={"csrf_token": admin.csrf})
    assert twice.status_code == 409
    assert _actions(app) == ["team.invite", "team.revoke_invitation"]


def test_inviting_again_replaces_the_link_and_each_invitation_is_emailed_once(app, admin, world):
    assert _invite(app, admin, "twice@example.com").status_code == 303
    first = _link(app, "twice@example.com")
    with app.app_context():
        token = db.session.scalar(select(AccountToken).where(AccountToken.purpose == TokenPurpose.INVITE))
        token_id, user_id = token.id, token.user_id
        account_mail.enqueue("invite", user_id, token_id=token_id, studio_id=world.a.id)  # the job, run again
    drain(app)
    assert len(mails(app, to="twice@example.com", subject=SUBJECT)) == 1
    assert _invite(app, admin, "twice@example.com").status_code == 303
    second = _link(app, "twice@example.com")
    assert second != first and len(mails(app, to="twice@example.com", subject=SUBJECT)) == 2
    assert app.test_client().get(first).status_code == 410
    assert app.test_client().get(second).status_code == 200


def test_inviting_an_admin_or_a_bad_address_says_so(app, admin, world):
    already = _invite(app, admin, "Second-Admin@example.com")
    assert already.status_code == 409
    assert "second-admin@example.com is already an admin of this studio" in already.get_data(as_text=True)
    bad = _invite(app, admin, "not-an-address")
    assert bad.status_code == 422 and 'value="not-an-address"' in bad.get_data(as_text=True)
    # An admin of another studio can be invited here.
    assert _invite(app, admin, "north-admin@example.com").status_code == 303
    assert _actions(app) == ["team.invite"]


def test_removing_admins_and_the_last_admin_stays(app, admin, world):
    with app.app_context():
        second = db.session.scalar(select(User.id).where(User.email == "second-admin@example.com"))
        me = db.session.scalar(select(User.id).where(User.email == "admin@example.com"))
    removed = admin.post(f"{TEAM}/admins/{second}/remove", data={"csrf_token": admin.csrf, "note": "left"})
    assert removed.status_code == 303
    assert (world.a.id, "admin") not in _roles(app, "second-admin@example.com")
    page = admin.get(TEAM).get_data(as_text=True)
    assert "second-admin@example.com" not in page and "The only admin" in page
    myself = admin.post(f"{TEAM}/admins/{me}/remove", data={"csrf_token": admin.csrf})
    assert myself.status_code == 409 and "at least one admin" in myself.get_data(as_text=True)
    assert (world.a.id, "admin") in _roles(app, "admin@example.com")
    gone = admin.post(f"{TEAM}/admins/{second}/remove", data={"csrf_token": admin.csrf})
    assert gone.status_code == 404
    assert _actions(app) == ["team.remove_admin"]
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "team.remove_admin"))
        assert entry.actor_label == "admin@example.com" and entry.before["email"] == "second-admin@example.com"


def test_an_admin_may_leave_while_another_remains(app, admin, world):
    with app.app_context():
        me = db.session.scalar(select(User.id).where(User.email == "admin@example.com"))
    left = admin.post(f"{TEAM}/admins/{me}/remove", data={"csrf_token": admin.csrf})
    assert left.status_code == 303 and admin.get(TEAM).status_code == 403


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_admins_removing_each_other_at_once_leave_one(app, world):
    with app.app_context():
        ids = {e: db.session.scalar(select(User.id).where(User.email == e))
               for e in ("admin@example.com", "second-admin@example.com")}
    barrier, outcomes, lock = threading.Barrier(2), [], threading.Lock()

    def remove(who: str, whom: str):
        with app.app_context():
            studio = db.session.get(Studio, world.a.id)
            actor = Actor.of(db.session.get(User, ids[who]))
            barrier.wait()
            try:
                team_service.remove_admin(studio, ids[whom], actor=actor, now=utcnow())
                outcome = "removed"
            except team_service.LastAdmin:
                outcome = "refused"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=remove, args=("admin@example.com", "second-admin@example.com")),
               threading.Thread(target=remove, args=("second-admin@example.com", "admin@example.com"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused", "removed"]
    with app.app_context():
        left = db.session.scalars(select(Membership).where(Membership.studio_id == world.a.id,
                                                          Membership.role == Role.ADMIN)).all()
    assert len(left) == 1


def test_a_new_person_cannot_log_in_before_accepting(app, admin, world):
    assert _invite(app, admin, "pending@example.com").status_code == 303
    client = app.test_client()
    response = client.post("/login", data={"email": "pending@example.com", "password": PASSWORD,
                                           "csrf_token": _csrf(client, "/login")})
    assert response.status_code == 422
