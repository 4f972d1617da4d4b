from __future__ import annotations

from types import SimpleNamespace

import pytest

from portal.models import Role
from tests.conftest import stripe_env
from tests.factories import make_studio, make_user
from tests.notifications.helpers import SMTPServer


@pytest.fixture
def smtp_server():
    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def app_env(stripe_standin, smtp_server):
    return {**stripe_env(stripe_standin), "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_server.port),
            "PORTAL_BASE_URL": "http://portal.test", "JOB_RETRY_DELAYS": "0,0"}


@pytest.fixture
def studio(app):
    """Melody And Meter, in New York, with one student."""
    with app.app_context():
        studio = make_studio(buffer_minutes=0)
        make_user("student@example.com", roles=[(studio, Role.STUDENT)])
        return SimpleNamespace(id=studio.id, slug=studio.slug, tz=studio.tz)
