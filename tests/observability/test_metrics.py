"""Real traffic moves each seed metric by the expected amount: bookings paid through the Stripe stand-in,
a reschedule, a late cancellation with its refund, a failing Stripe call, jobs, and the per-resource zero series."""
from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from sqlalchemy import update

from portal import jobs
from portal.extensions import db
from portal.models import Resource
from portal.payments import PaymentProviderError, get_provider
from portal.services import lesson_changes
from tests.factories import make_studio
from tests.lessons.conftest import days_ahead, local, within
from tests.lessons.test_lessons import _service
from tests.observability.scrape import scrape
from tests.payments.helpers import drain

TENANT = "melody-and-meter"
PIANO = {"tenant": TENANT, "resource_id": "piano"}
DRUMS = {"tenant": TENANT, "resource_id": "drums"}
PER_RESOURCE = ("melody_bookings_confirmed", "melody_bookings_confirmed_minutes", "melody_bookings_cancelled_late",
                "melody_bookings_utilization_percent", "melody_bookings_active")


def test_a_paid_lesson_moves_the_booking_and_checkout_series(client, studio, paid_lesson):
    before = scrape(client)
    paid_lesson(local(studio, days_ahead(studio, 2), "10:00"))  # a 60-minute lesson on the piano, this week
    after = scrape(client)

    assert before.delta(after, "melody_bookings_confirmed", **PIANO) == 1
    assert before.delta(after, "melody_bookings_confirmed", **DRUMS) == 0
    assert before.delta(after, "melody_bookings_confirmed_total") == 1
    assert before.delta(after, "melody_bookings_confirmed_minutes", **PIANO) == 60
    assert before.delta(after, "melody_bookings_confirmed_minutes_total") == 60
    assert before.delta(after, "melody_bookings_active", **PIANO) == 1
    assert after.value("melody_bookings_utilization_percent", **PIANO) == round(60 / (480 * 7), 4)
    assert after.value("melody_bookings_utilization_percent", **DRUMS) == 0
    assert before.delta(after, "melody_booking_duration_minutes_count") == 1
    assert before.delta(after, "melody_booking_duration_minutes_sum") == 60
    assert before.delta(after, "melody_booking_duration_minutes_bucket", le="60.0") == 1
    assert before.delta(after, "melody_booking_duration_minutes_bucket", le="45.0") == 0
    assert before.delta(after, "checkout_sessions_created_total") == 1
    assert before.delta(after, "checkout_sessions_completed_total") == 1
    assert before.delta(after, "payment_to_confirmed_seconds_count") == 1
    assert before.delta(after, "payment_to_confirmed_seconds_bucket", le="5.0") == 1  # seed 004: under 5 s
    assert before.delta(after, "job_duration_seconds_count", job="drain_webhook_events") == 1
    assert before.delta(after, "job_failures_total", job="drain_webhook_events") == 0
    assert before.delta(after, "webhook_events_total", status="processed") == 1
    assert after.value("rq_queue_depth", queue="portal") == 0
    assert after.value("paid_unconfirmed_bookings") == 0
    assert after.value("reconciliation_items", query="dead_events") == 0


def test_a_reschedule_and_a_late_cancel_move_their_series(app, client, studio, paid_lesson):
    day = days_ahead(studio, 10, weekday=2)
    first = paid_lesson(local(studio, day, "10:00"))
    second = paid_lesson(local(studio, day, "15:00"), resource="drums")
    before = scrape(client)
    _service(app, studio, lesson_changes.reschedule, first, resource_slug="piano",
             start_raw=local(studio, day, "12:00").isoformat())
    _service(app, studio, lesson_changes.cancel, second,
             now=local(studio, day, "15:00").astimezone(timezone.utc) - timedelta(hours=2))
    drain(app)
    after = scrape(client)

    assert before.delta(after, "melody_reschedule_completed_total") == 1
    assert before.delta(after, "melody_bookings_confirmed", **PIANO) == 0  # moved, still confirmed
    assert before.delta(after, "melody_bookings_cancelled_late", **DRUMS) == 1
    assert before.delta(after, "melody_bookings_cancelled_late", **PIANO) == 0
    assert before.delta(after, "melody_bookings_cancelled_late_total") == 1
    assert before.delta(after, "melody_bookings_confirmed", **DRUMS) == -1
    assert before.delta(after, "melody_bookings_confirmed_minutes", **DRUMS) == -60
    # the refund less the fee, under both label names
    assert before.delta(after, "refund_operations_total", status="succeeded", outcome="succeeded") == 1
    assert before.delta(after, "job_duration_seconds_count", job="process_refund") == 1


def test_every_active_resource_of_every_active_studio_has_a_series_at_zero(app, client, studio):
    with within(app):
        make_studio("north-strings", resources=("cello", "violin"))
        db.session.execute(update(Resource).where(Resource.slug == "violin").values(active=False))
        db.session.commit()
    now = scrape(client)
    for name in PER_RESOURCE:
        for tenant, resource in ((TENANT, "piano"), (TENANT, "drums"), ("north-strings", "cello")):
            assert now.value(name, tenant=tenant, resource_id=resource) == 0
        assert not [line for line in now.text.splitlines() if line.startswith(name + "{") and "violin" in line]


def test_a_failing_stripe_call_is_counted_by_operation(app, client):
    before = scrape(client)
    with app.app_context(), pytest.raises(PaymentProviderError):
        get_provider().retrieve_checkout_session("cs_test_no_such_session")
    after = scrape(client)
    assert before.delta(after, "stripe_api_errors_total", operation="checkout.sessions.retrieve") == 1
    assert before.delta(after, "stripe_api_errors_total", operation="refunds.create") == 0


def test_a_job_that_raises_is_counted_as_a_failure_of_that_job(app, client):
    @jobs.job
    def send_due_reminders():  # stands in for the real job of that name: same wrapper, a failure inside
        raise RuntimeError("mail server refused")

    before = scrape(client)
    with app.app_context(), pytest.raises(RuntimeError):
        send_due_reminders()
    after = scrape(client)
    assert before.delta(after, "job_failures_total", job="send_due_reminders") == 1
    assert before.delta(after, "job_duration_seconds_count", job="send_due_reminders") == 1


def test_the_database_pool_is_watched(app, client):
    before = scrape(client)
    assert before.value("db_pool_size") >= 5  # SQLAlchemy's default pool size (summed over this process's apps)
    with app.app_context():
        connection = db.engine.connect()
        held = scrape(client)
        connection.close()
    after = scrape(client)
    assert before.delta(held, "db_pool_connections_in_use") == 1
    assert before.delta(after, "db_pool_connections_in_use") == 0


def test_the_database_families_are_written_exactly_as_the_library_writes_them():
    from prometheus_client import generate_latest

    from portal.metrics import DatabaseGauges, text_format

    families = DatabaseGauges._families()
    awkward = ('back\\slash', 'new\nline', 'quo"te', 'ünïcødé', '')
    for n, value in enumerate((0, 1, 0.1234, 1e21, -2.5, float("inf"), 12345678901234)):
        for name, family in families.items():
            labels = [f"{awkward[n % len(awkward)]}-{n}", f"{name}-{n}"][:len(family._labelnames)]
            family.add_metric(labels, value)

    class Families:
        def collect(self):
            return list(families.values())

    assert text_format(list(families.values())) == generate_latest(Families())
    assert b'tenant="back\\\\slash-0"' in text_format(list(families.values()))
