"""Driving the Stripe stand-in from tests, and delivering its events to the app as Stripe would."""
from __future__ import annotations

import json
import time
import urllib.request

from stripe_standin import sign  # an implementation independent of the one under test
from tests.conftest import STRIPE_WEBHOOK_SECRET


def control(server, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{server.base_url}/_standin/{path}", method="POST",
                                     data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def pay(server, session_id: str, outcome: str = "pay") -> dict:
    return control(server, f"checkout/sessions/{session_id}/pay", {"outcome": outcome})


def events(server, types: tuple[str, ...] | None = None) -> list[dict]:
    """The stand-in's events, oldest first, as full event JSON."""
    request = urllib.request.Request(f"{server.base_url}/v1/events?limit=100",
                                     headers={"Authorization": "Bearer sk_test_reader"})
    with urllib.request.urlopen(request, timeout=10) as response:
        found = json.loads(response.read())["data"]
    found.reverse()
    return [e for e in found if types is None or e["type"] in types]


def signed_post(client, event: dict | bytes, *, secret: str = STRIPE_WEBHOOK_SECRET, timestamp: int | None = None,
                header: str | None = None):
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    if header is None:
        header = sign(body, secret, timestamp)
    return client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": header,
                                                               "Content-Type": "application/json"})


def deliver(app, client, server, types: tuple[str, ...] | None = None, times: int = 1) -> list[dict]:
    """Post the stand-in's events the app has not stored yet (each `times` times, freshly signed), then wait
    for the jobs."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import WebhookEvent

    with app.app_context():
        known = set(db.session.scalars(select(WebhookEvent.provider_event_id)))
    delivered = [e for e in events(server, types) if e["id"] not in known]
    for event in delivered:
        signed_at = int(time.time())  # one clock reading, so each delivery has its own timestamp
        for attempt in range(times):
            # A redelivery is signed afresh: same event, new timestamp (so it is not a replay).
            response = signed_post(client, event, timestamp=signed_at - attempt)
            assert response.status_code == 200, response.get_data(as_text=True)
    drain(app)
    return delivered


def drain(app) -> None:
    assert app.extensions["dispatcher"].drain(timeout=30), "jobs did not finish"
