"""Observability tests reuse the lessons' paid-lesson fixtures (booked and paid through the Stripe stand-in) and the
admin tests' two studios, admin client and API keys."""
from __future__ import annotations

import pytest

from tests.admin.conftest import admin, make_api_key, world  # noqa: F401  (fixtures)
from tests.lessons.conftest import app_env, paid_lesson, studio  # noqa: F401  (fixtures)


@pytest.fixture
def app_overrides():
    return {"METRICS_DB_CACHE_SECONDS": 0}  # every scrape reads the database, so a test sees each change at once
