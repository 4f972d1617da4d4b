"""`flask ops …` for on-call work without a browser: the same queries and the same audited repairs."""
from __future__ import annotations

import json

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEntry, EventStatus, WebhookEvent
from portal.payments.stripe_provider import StripeProvider
from tests.conftest import STRIPE_API_KEY
from tests.ops.conftest import hold, within
from tests.payments.helpers import control, deliver, drain, pay


def test_check_passes_on_a_healthy_portal_and_fails_on_a_mismatch(app, client, studio, stripe_standin):
    runner = app.test_cli_runner()
    healthy = runner.invoke(args=["ops", "check"])
    assert healthy.exit_code == 0, healthy.output
    assert "ok   amount_mismatches" in healthy.output and "FAIL" not in healthy.output
    booking_id, payment_id, session_id = hold(app, studio)
    control(stripe_standin, f"checkout/sessions/{session_id}/amount_total", {"amount_total": 100})
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    broken = runner.invoke(args=["ops", "check"])
    assert broken.exit_code == 1
    assert "FAIL amount_mismatches" in broken.output
    lines = runner.invoke(args=["ops", "list", "amount_mismatches"]).output.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [payment_id]
    assert json.loads(lines[0])["studio"] == "melody-and-meter"
    refused = runner.invoke(args=["ops", "refetch", str(payment_id), "--note", "try again"])
    assert refused.exit_code != 0 and "Never retry" in refused.output
    unknown = runner.invoke(args=["ops", "list", "nonsense"])
    assert unknown.exit_code == 2


def test_replay_from_the_cli_is_audited_and_refuses_a_second_time(app, client, studio, stripe_standin):
    booking_id, payment_id, session_id = hold(app, studio)
    pay(stripe_standin, session_id)
    app.extensions["payment_provider"] = StripeProvider(STRIPE_API_KEY, "http://127.0.0.1:1")
    deliver(app, client, stripe_standin, types=("checkout.session.completed",))
    app.extensions["payment_provider"] = StripeProvider(STRIPE_API_KEY, stripe_standin.base_url)
    with within(app):
        event_id = db.session.scalar(select(WebhookEvent.id))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["ops", "replay", str(event_id)]).exit_code == 2  # --note is required
    replayed = runner.invoke(args=["ops", "replay", str(event_id), "--note", "Stripe is back"])
    assert replayed.exit_code == 0, replayed.output
    drain(app)
    with within(app):
        assert db.session.get(WebhookEvent, event_id).status == EventStatus.PROCESSED
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "webhook_event.replay"))
        assert entry.note == "Stripe is back" and entry.actor_label.startswith("cli:")
    again = runner.invoke(args=["ops", "replay", str(event_id), "--note", "again"])
    assert again.exit_code == 1 and "processed" in again.output
