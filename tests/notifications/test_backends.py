"""The embedded default writes .eml files; SMTP settings pick the SMTP backend without connecting."""
from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from portal.config import load_settings
from portal.mail import FileBackend, SMTPBackend, backend_for
from portal.services import notifications
from tests.notifications.helpers import make_booking, parts

LESSON = datetime(2026, 11, 25, 16, 0, tzinfo=ZoneInfo("America/New_York"))


@pytest.fixture
def app_env(stripe_standin):
    from tests.conftest import stripe_env

    return stripe_env(stripe_standin)  # no SMTP_HOST, no PORTAL_BASE_URL


def test_without_smtp_host_messages_are_written_as_eml_files(app, studio):
    booking_id = make_booking(app, studio.id, LESSON)
    assert isinstance(app.extensions["mail"], FileBackend)
    with app.app_context():
        assert notifications.send("confirmation", booking_id, key=f"confirmation:booking:{booking_id}",
                                  now=datetime(2026, 11, 20, tzinfo=timezone.utc)) is True
    [path] = (Path(app.instance_path) / "mail").iterdir()
    assert path.suffix == ".eml"
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "student@example.com" and message["Subject"].endswith("is confirmed")
    text, html = parts(message)
    link = f"/s/melody-and-meter/bookings/{booking_id}"  # no PORTAL_BASE_URL: a path, the best a job can do
    assert f"View or change your booking: {link}\n" in text and f'href="{link}"' in html
    assert "4:00 PM EST" in text and "4:00 PM EST" in html


def test_smtp_settings_choose_the_smtp_backend(tmp_path):
    settings = load_settings(env={"PORTAL_INSTANCE_PATH": str(tmp_path), "SMTP_HOST": "mail.example.com",
                                  "SMTP_PORT": "587", "SMTP_USERNAME": "portal", "SMTP_PASSWORD": "s3cret",
                                  "SMTP_STARTTLS": "true"})
    backend = backend_for(settings)
    assert isinstance(backend, SMTPBackend)
    assert (backend.host, backend.port, backend.username, backend.password, backend.starttls) == (
        "mail.example.com", 587, "portal", "s3cret", True)
    assert backend.timeout == 10
    default = backend_for(load_settings(env={"PORTAL_INSTANCE_PATH": str(tmp_path)}))
    assert isinstance(default, FileBackend) and default.directory == tmp_path / "mail"
    assert not default.directory.exists()  # nothing is created or connected until a message is sent
