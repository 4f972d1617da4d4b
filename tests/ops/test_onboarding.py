"""Ops open a studio and invite its first admin, from the console or the command line; the admin accepts and runs
it; bad input is a field error that keeps what was typed."""
from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

from sqlalchemy import select

from portal import tenancy
from portal.extensions import db
from portal.models import AuditEntry, ConfigState, ConfigVersion, Role, Studio, User
from tests.conftest import csrf_token_from
from tests.ops.conftest import within
from tests.payments.helpers import drain

FORM = {"name": "Harbour Harps", "slug": "harbour-harps", "timezone": "Australia/Sydney", "currency": "aud",
        "locale": "en_AU", "admin_email": "harpist@example.com"}


def invitation_link(app, address: str) -> str:
    drain(app)
    for path in sorted((Path(app.instance_path) / "mail").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == address:
            text = message.get_body(("plain",)).get_content()
            return re.sub(r"^https?://[^/]+", "", re.search(r"\S*/admin/invitations/\S*", text).group(0))
    raise AssertionError(f"no invitation to {address}")


def test_ops_open_a_studio_whose_invited_admin_takes_over(app, studio, ops):
    refused = ops.post("/ops/studios", data={**FORM, "slug": "Not A Slug", "timezone": "Mars/Olympus",
                                             "csrf_token": ops.csrf})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "lower-case letters" in html and "timezone like" in html
    assert 'value="Harbour Harps"' in html  # what was typed is kept
    taken = ops.post("/ops/studios", data={**FORM, "slug": "melody-and-meter", "csrf_token": ops.csrf})
    assert taken.status_code == 422 and "Another studio has this address" in taken.get_data(as_text=True)

    assert ops.post("/ops/studios", data={**FORM, "csrf_token": ops.csrf}).status_code == 303
    with within(app):
        created = db.session.scalar(select(Studio).where(Studio.slug == "harbour-harps"))
        assert (created.timezone, created.currency, created.locale, created.config_version) == (
            "Australia/Sydney", "aud", "en_AU", 1)
        assert db.session.scalar(select(ConfigVersion.state).where(ConfigVersion.studio_id == created.id)) == \
            ConfigState.PUBLISHED
        assert db.session.scalar(select(AuditEntry.actor_label).where(AuditEntry.action == "studio.create")) == \
            "ops@example.com"
    assert app.test_client().get("/s/harbour-harps/").status_code == 200

    link = invitation_link(app, "harpist@example.com")
    newcomer = app.test_client()
    token = csrf_token_from(newcomer.get(link).get_data(as_text=True))
    accepted = newcomer.post(link, data={"name": "Hana", "password": "harp-strings-9", "csrf_token": token})
    assert accepted.status_code == 303
    assert newcomer.get("/s/harbour-harps/admin/").status_code == 200
    with within(app):
        harpist = db.session.scalar(select(User).where(User.email == "harpist@example.com"))
        assert harpist.has_role(created.id, Role.ADMIN)


def test_a_fresh_install_opens_its_first_studio_from_the_command_line(app, studio):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ops", "create-studio", "--name", "Cello Corner", "--slug", "cello-corner",
                                 "--timezone", "Europe/Berlin", "--currency", "eur", "--locale", "de_DE",
                                 "--admin-email", "cellist@example.com"])
    assert result.exit_code == 0, result.output
    assert "cello-corner" in result.output
    again = runner.invoke(args=["ops", "create-studio", "--name", "Cello Corner", "--slug", "cello-corner",
                                "--timezone", "Europe/Berlin", "--currency", "eur", "--admin-email", "x@example.com"])
    assert again.exit_code == 1 and "Another studio has this address" in again.output
    with app.app_context(), tenancy.all_tenants():
        assert db.session.scalar(select(Studio.name).where(Studio.slug == "cello-corner")) == "Cello Corner"
    assert invitation_link(app, "cellist@example.com").startswith("/s/cello-corner/admin/invitations/")
