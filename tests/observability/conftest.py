"""Observability tests reuse the lessons' paid-lesson fixtures (booked and paid through the Stripe stand-in)."""
from __future__ import annotations

import pytest

from tests.lessons.conftest import app_env, paid_lesson, studio  # noqa: F401  (fixtures)


@pytest.fixture
def app_overrides():
    return {"METRICS_DB_CACHE_SECONDS": 0}  # every scrape reads the database, so a test sees each change at once
