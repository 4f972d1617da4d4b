"""POST /webhooks/stripe: signatures, rotation, tolerance, replays, redeliveries, and the metrics they count."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.metrics import REGISTRY
from portal.models import EventStatus, WebhookEvent, WebhookSignature
from stripe_standin import sign
from tests.conftest import BOTH, STRIPE_WEBHOOK_SECRET
from tests.payments.helpers import drain, signed_post

OLD_SECRET = "whsec_" + "previous-secret-" * 2
#: Storing is one statement on PostgreSQL and two on SQLite: the tests that store run on both.


@pytest.fixture
def app_env(stripe_standin):
    from tests.conftest import stripe_env

    env = stripe_env(stripe_standin)
    env["STRIPE_WEBHOOK_SECRETS"] = f"{STRIPE_WEBHOOK_SECRET},{OLD_SECRET}"
    return env


def _event(event_id="evt_test_1", kind="customer.created"):
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
            "data": {"object": {"id": "cus_1", "object": "customer"}}}


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


class Counts:
    """Metric values before an action, to assert on the change."""

    NAMES = [("melody_webhook_signature_valid_total", {}), ("melody_webhook_signature_invalid_total", {}),
             ("melody_webhook_signature_stale_total", {}), ("melody_webhook_signature_replay_blocked_total", {}),
             ("melody_webhook_signature_multisecret_match_total", {}),
             ("webhook_events_total", {"status": "received"}), ("webhook_events_total", {"status": "duplicate"})]

    def __init__(self):
        self.before = {(name, tuple(labels.items())): metric(name, **labels) for name, labels in self.NAMES}

    def delta(self, name, **labels):
        return metric(name, **labels) - self.before[(name, tuple(labels.items()))]


def _stored(app):
    with app.app_context():
        return db.session.scalar(select(func.count(WebhookEvent.id)))


@BOTH
def test_valid_signature_stores_and_processes_the_event(app, client):
    counts = Counts()
    response = signed_post(client, _event())
    assert response.status_code == 200 and response.get_json() == {"received": True, "duplicate": False}
    drain(app)
    with app.app_context():
        event = db.session.scalar(select(WebhookEvent))
        assert (event.provider_event_id, event.type, event.status) == ("evt_test_1", "customer.created",
                                                                       EventStatus.IGNORED)
    assert counts.delta("melody_webhook_signature_valid_total") == 1
    assert counts.delta("webhook_events_total", status="received") == 1


@pytest.mark.parametrize("case,code", [
    ("tampered", "signature_invalid"),
    ("wrong_secret", "signature_invalid"),
    ("stale", "signature_stale"),
    ("future", "signature_stale"),
    ("malformed", "signature_malformed"),
    ("no_v1", "signature_malformed"),
    ("missing", "signature_missing"),
    ("unicode_digit", "signature_malformed"),
    ("not_json", "payload_invalid"),
    ("not_an_event", "payload_invalid"),
])
def test_bad_requests_are_refused_with_a_code_and_nothing_is_stored(app, client, case, code):
    body = json.dumps(_event()).encode()
    now = int(time.time())
    headers = {
        "tampered": sign(body, STRIPE_WEBHOOK_SECRET, now),
        "wrong_secret": sign(body, "whsec_someone_else", now),
        "stale": sign(body, STRIPE_WEBHOOK_SECRET, now - 301),
        "future": sign(body, STRIPE_WEBHOOK_SECRET, now + 301),
        "malformed": "t=abc,v1=zz",
        "no_v1": f"t={now}",
        "missing": "",
        "unicode_digit": "t=\u00b2,v1=ab",
        "not_json": sign(b"{nope", STRIPE_WEBHOOK_SECRET, now),
        "not_an_event": sign(b'{"hello": 1}', STRIPE_WEBHOOK_SECRET, now),
    }
    payload = {"tampered": body.replace(b"customer.created", b"customer.deleted"), "not_json": b"{nope",
               "not_an_event": b'{"hello": 1}'}.get(case, body)
    before = metric("melody_webhook_error_total", code=code)
    response = client.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": headers[case]})
    assert response.status_code == 400
    assert response.get_json()["error"] == code and response.get_json()["detail"]
    assert metric("melody_webhook_error_total", code=code) == before + 1
    assert _stored(app) == 0


def test_invalid_and_stale_have_their_own_counters(app, client):
    counts = Counts()
    body = json.dumps(_event()).encode()
    client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": sign(body, "whsec_wrong")})
    client.post("/webhooks/stripe", data=body,
                headers={"Stripe-Signature": sign(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 1000)})
    assert counts.delta("melody_webhook_signature_invalid_total") == 1
    assert counts.delta("melody_webhook_signature_stale_total") == 1
    assert counts.delta("melody_webhook_signature_valid_total") == 0


def test_rotated_secret_is_accepted_and_counted(app, client):
    counts = Counts()
    assert signed_post(client, _event("evt_rotated"), secret=OLD_SECRET).status_code == 200
    assert counts.delta("melody_webhook_signature_multisecret_match_total") == 1
    assert signed_post(client, _event("evt_active")).status_code == 200
    assert counts.delta("melody_webhook_signature_multisecret_match_total") == 1  # the active key is not counted


@BOTH
def test_the_same_signed_request_twice_is_a_replay(app, client):
    counts = Counts()
    body = json.dumps(_event("evt_replayed")).encode()
    header = sign(body, STRIPE_WEBHOOK_SECRET)
    first = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
    second = client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})
    assert first.status_code == 200
    assert second.status_code == 400 and second.get_json()["error"] == "replay_blocked"
    assert counts.delta("melody_webhook_signature_replay_blocked_total") == 1
    with app.app_context():
        assert db.session.scalar(select(WebhookEvent.deliveries)) == 1


@BOTH
def test_redelivery_with_a_fresh_signature_is_a_counted_duplicate_processed_once(app, client):
    counts = Counts()
    event = _event("evt_redelivered")
    assert signed_post(client, event, timestamp=int(time.time()) - 5).status_code == 200
    again = signed_post(client, event)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    drain(app)
    assert counts.delta("webhook_events_total", status="duplicate") == 1
    assert counts.delta("webhook_events_total", status="received") == 1
    with app.app_context():
        event_row = db.session.scalar(select(WebhookEvent))
        assert (event_row.deliveries, event_row.attempts) == (2, 1)
        assert db.session.scalar(select(func.count(WebhookSignature.id))) == 2


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_on_postgres_an_acknowledgement_is_one_statement_in_autocommit(app, client, monkeypatch):
    """Storing a delivery is one prepared INSERT (the signature in a CTE) that is its own transaction: no BEGIN
    (psycopg sends one before the first statement of a connection not in autocommit) and no COMMIT travel, for a
    new event, a redelivery and a refused replay alike."""
    import psycopg

    assert signed_post(client, _event("evt_first_connection")).status_code == 200  # the dialect's first-connect queries
    sent: list[tuple[str, bool, bool]] = []
    commits: list[object] = []
    execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit
    requests = threading.get_ident()  # the test client's requests run here; processing on the job threads

    def watched_execute(cursor, query, *args, **kwargs):
        if threading.get_ident() == requests:
            sent.append((str(query), cursor.connection.autocommit, kwargs.get("prepare")))
        return execute(cursor, query, *args, **kwargs)

    def watched_commit(connection):
        if threading.get_ident() == requests:
            commits.append(connection)
        return commit(connection)

    monkeypatch.setattr(psycopg.Cursor, "execute", watched_execute)
    monkeypatch.setattr(psycopg.Connection, "commit", watched_commit)
    event = _event("evt_one_statement")
    body = json.dumps(event).encode()
    header = sign(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 5)
    answers = [client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header}),
               signed_post(client, event),
               client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header})]
    assert [a.status_code for a in answers] == [200, 200, 400]
    assert [a.get_json().get("duplicate") for a in answers[:2]] == [False, True]
    assert answers[2].get_json()["error"] == "replay_blocked"
    assert len(sent) == 3 and all(query.lstrip().startswith("WITH signed AS") for query, _, _ in sent), sent
    assert all(autocommit and prepared for _, autocommit, prepared in sent) and commits == []
    monkeypatch.undo()
    with app.app_context():
        row = db.session.scalar(select(WebhookEvent).filter_by(provider_event_id="evt_one_statement"))
        assert row.deliveries == 2
        assert db.session.scalar(select(func.count(WebhookSignature.id))) == 3


@BOTH
def test_concurrent_deliveries_of_one_event_store_it_once(app):
    """Stripe may deliver an event again while the first delivery is still being stored: each delivery is
    answered 200, exactly one is the first, the row counts them all, and every signed request is recorded."""
    event = _event("evt_concurrent")
    deliveries = 6
    start = threading.Barrier(deliveries)
    now = int(time.time())

    def deliver(n):  # each delivery signed at its own second, as Stripe's redeliveries are
        client = app.test_client()
        start.wait()
        return signed_post(client, event, timestamp=now - n)

    with ThreadPoolExecutor(deliveries) as pool:
        answers = list(pool.map(deliver, range(deliveries)))
    assert [a.status_code for a in answers] == [200] * deliveries, [a.get_json() for a in answers]
    assert sorted(a.get_json()["duplicate"] for a in answers) == [False] + [True] * (deliveries - 1)
    drain(app)
    with app.app_context():
        row = db.session.scalar(select(WebhookEvent))
        assert (row.provider_event_id, row.deliveries, row.attempts) == ("evt_concurrent", deliveries, 1)
        assert db.session.scalar(select(func.count(WebhookSignature.id))) == deliveries


def test_replay_window_is_exposed_and_old_digests_are_pruned(app, client):
    from datetime import timedelta

    from portal.clock import utcnow
    from portal.services.sweeps import prune_webhook_signatures

    assert metric("melody_webhook_replay_window_ms") == 86400 * 1000
    signed_post(client, _event("evt_old"))
    with app.app_context():
        assert prune_webhook_signatures(now=utcnow(), replay_window=timedelta(days=1)) == 0
        assert prune_webhook_signatures(now=utcnow() + timedelta(days=2), replay_window=timedelta(days=1)) == 1


def test_every_error_code_has_a_series_from_the_start(client, app):
    text = client.get("/metrics").get_data(as_text=True)
    for code in ("signature_missing", "signature_malformed", "signature_invalid", "signature_stale",
                 "replay_blocked", "payload_invalid"):
        assert f'melody_webhook_error_total{{code="{code}"}}' in text
    assert "webhook_backlog{" in text and "paid_unconfirmed_bookings" in text
