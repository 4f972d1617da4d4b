"""Tests for the Stripe stand-in, driven through the real stripe SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import stripe

from stripe_standin import start_server
from stripe_standin.formcodec import decode_form
from tests.support.processes import python_env

SECRET = "whsec_standin_test_secret"
ROOT = Path(__file__).resolve().parents[2]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_RAW_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


# -- webhook receiver --------------------------------------------------------
class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.cond = threading.Condition()
        self.requests: list[dict] = []
        self.script: list[int] = []  # statuses to answer next, then 200
        self.url = f"http://127.0.0.1:{self.server_address[1]}/webhook"

    def clear(self) -> None:
        with self.cond:
            self.requests.clear()
            self.script.clear()

    def events(self, event_type: Optional[str] = None) -> list[dict]:
        with self.cond:
            out = [dict(r, event=json.loads(r["body"])) for r in self.requests]
        return [r for r in out if event_type is None or r["event"]["type"] == event_type]

    def wait_for(self, pred: Callable[[list[dict]], bool], timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.events()):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; got {[r['event']['type'] for r in self.events()]}"
                self.cond.wait(left)
        return self.events()


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.cond:
            status = self.server.script.pop(0) if self.server.script else 200
            self.server.requests.append({"headers": dict(self.headers), "body": body,
                                         "status": status})
            self.server.cond.notify_all()
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


# -- fixtures ----------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver():
    rec = Receiver()
    thread = threading.Thread(target=rec.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield rec
    rec.shutdown()
    thread.join()
    rec.server_close()


@pytest.fixture(scope="module")
def standin(receiver):
    server, base = start_server(port=0, webhook_url=receiver.url, webhook_secret=SECRET,
                                initial_delay=0.05, max_attempts=3, async_delay=0.1,
                                timeout=2.0, tick=0.05)
    yield base
    server.shutdown()


@pytest.fixture(autouse=True)
def _clean(standin, receiver):
    ctl(standin, "/_standin/reset")
    ctl(standin, "/_standin/webhooks/wait_idle")  # let in-flight deliveries land
    receiver.clear()


@pytest.fixture
def client(standin):
    http = stripe.RequestsClient()
    yield stripe.StripeClient("sk_test_standin", http_client=http, max_network_retries=0,
                              base_addresses={"api": standin, "connect": standin,
                                              "files": standin, "meter_events": standin})
    http.close()


def ctl(base: str, path: str, body: Optional[dict] = None, method: str = "POST") -> dict:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with _OPENER.open(req, timeout=10) as resp:
        return json.loads(resp.read())


def raw(base: str, path: str, form: Optional[dict] = None,
        headers: Optional[dict] = None) -> tuple[int, dict, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(base + path, data=data, headers=headers or {})
    try:
        with _RAW_OPENER.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode()


def session_params(**overrides: Any) -> dict:
    params = {
        "mode": "payment",
        "success_url": "https://portal.test/paid?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.test/cancelled",
        "client_reference_id": "booking-7",
        "customer_email": "pupil@example.com",
        "metadata": {"booking_id": "7"},
        "line_items": [{"quantity": 2, "price_data": {
            "currency": "eur", "unit_amount": 2500, "product_data": {"name": "Piano lesson"}}}],
    }
    params.update(overrides)
    return params


def pay_session(base: str, session_id: str, action: str = "pay") -> tuple[int, dict, str]:
    return raw(base, f"/c/pay/{session_id}", {"action": action})


# -- tests -------------------------------------------------------------------
def test_form_decoder_bracket_notation():
    got = decode_form("line_items[0][price_data][unit_amount]=5000&line_items[0][quantity]=1"
                      "&metadata[booking_id]=7&metadata[0]=x&types[]=a&types[]=b"
                      "&expand[0]=payment_intent&created[gte]=10")
    assert got == {"line_items": [{"price_data": {"unit_amount": "5000"}, "quantity": "1"}],
                   "metadata": {"booking_id": "7", "0": "x"}, "types": ["a", "b"],
                   "expand": ["payment_intent"], "created": {"gte": "10"}}


def test_create_and_retrieve_session(client, standin):
    expires_at = int(time.time()) + 3600
    created = client.v1.checkout.sessions.create(params=session_params(expires_at=expires_at))
    assert created.id.startswith("cs_test_")
    assert created.object == "checkout.session"
    assert created.url == f"{standin}/c/pay/{created.id}"
    assert (created.amount_total, created.currency) == (5000, "eur")
    assert (created.status, created.payment_status, created.payment_intent) == ("open", "unpaid", None)
    fetched = client.v1.checkout.sessions.retrieve(created.id)
    assert fetched.id == created.id
    assert fetched.metadata.to_dict() == {"booking_id": "7"}
    assert fetched.client_reference_id == "booking-7"
    assert fetched.customer_email == "pupil@example.com"
    assert fetched.expires_at == expires_at
    items = client.v1.checkout.sessions.retrieve(created.id, params={"expand": ["line_items"]})
    assert items.line_items.data[0].description == "Piano lesson"
    assert items.line_items.data[0].quantity == 2


@pytest.mark.parametrize("offset", [60, 25 * 3600])
def test_expires_at_validation(client, offset):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.create(params=session_params(expires_at=int(time.time()) + offset))
    assert info.value.param == "expires_at"
    assert info.value.http_status == 400


def test_missing_and_unknown_params(client):
    params = session_params()
    del params["success_url"]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.create(params=params)
    assert info.value.param == "success_url"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.create(params=session_params(mode="subscription"))
    assert info.value.param == "mode"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.create(params=session_params(bogus="1"))
    assert info.value.param == "bogus"


def test_authentication_errors(standin):
    for key in ("", "not_a_secret_key"):
        http = stripe.RequestsClient()
        bad = stripe.StripeClient(key, http_client=http, max_network_retries=0,
                                  base_addresses={"api": standin})
        try:
            with pytest.raises(stripe.AuthenticationError) as info:
                bad.v1.checkout.sessions.list()
            assert info.value.http_status == 401
        finally:
            http.close()
    status, _headers, body = raw(standin, "/v1/checkout/sessions")
    assert status == 401
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_unknown_ids_are_404(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.retrieve("cs_test_doesnotexist")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.payment_intents.retrieve("pi_doesnotexist")
    assert info.value.http_status == 404


def test_idempotency_key_returns_same_session(client):
    first = client.v1.checkout.sessions.create(params=session_params(),
                                               options={"idempotency_key": "book-7"})
    again = client.v1.checkout.sessions.create(params=session_params(),
                                               options={"idempotency_key": "book-7"})
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.checkout.sessions.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params=session_params(client_reference_id="other"),
                                           options={"idempotency_key": "book-7"})


def test_expire_and_list_sessions(client, standin):
    ids = [client.v1.checkout.sessions.create(params=session_params()).id for _ in range(3)]
    expired = client.v1.checkout.sessions.expire(ids[0])
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.expire(ids[0])
    assert info.value.http_status == 400
    page = client.v1.checkout.sessions.list(params={"limit": 2})
    assert [s.id for s in page.data] == [ids[2], ids[1]]
    assert page.has_more is True
    rest = client.v1.checkout.sessions.list(params={"limit": 2, "starting_after": ids[1]})
    assert [s.id for s in rest.data] == [ids[0]] and rest.has_more is False
    assert [s.id for s in page.auto_paging_iter()] == ids[::-1]
    assert [s.id for s in client.v1.checkout.sessions.list(params={"status": "expired"}).data] == [ids[0]]
    events = client.v1.events.list(params={"type": "checkout.session.expired"})
    assert [e.data.object.id for e in events.data] == [ids[0]]


def test_control_expiry_and_lazy_expiry(client, standin):
    first = client.v1.checkout.sessions.create(params=session_params())
    second = client.v1.checkout.sessions.create(params=session_params())
    assert ctl(standin, f"/_standin/checkout/sessions/{first.id}/expire")["status"] == "expired"
    assert client.v1.checkout.sessions.retrieve(second.id).status == "open"
    ctl(standin, "/_standin/clock/advance", {"seconds": 25 * 3600})
    assert client.v1.checkout.sessions.retrieve(second.id).status == "expired"
    status, _h, page = raw(standin, f"/c/pay/{second.id}")
    assert status == 200 and "expired" in page


def test_pay_on_hosted_page_sends_signed_webhook(client, standin, receiver):
    session = client.v1.checkout.sessions.create(params=session_params())
    status, _h, page = raw(standin, f"/c/pay/{session.id}")
    assert status == 200 and "50.00 EUR" in page and 'value="pay"' in page
    status, headers, _ = pay_session(standin, session.id)
    assert status == 303
    assert headers["Location"] == f"https://portal.test/paid?session_id={session.id}"
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    intent = client.v1.payment_intents.retrieve(paid.payment_intent)
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", 5000, 5000)
    assert intent.latest_charge.startswith("ch_")
    found = client.v1.checkout.sessions.list(params={"payment_intent": intent.id})
    assert [s.id for s in found.data] == [session.id]

    got = receiver.wait_for(lambda evs: any(e["event"]["type"] == "checkout.session.completed"
                                            for e in evs))
    delivery = next(r for r in got if r["event"]["type"] == "checkout.session.completed")
    sig = delivery["headers"]["Stripe-Signature"]
    event = stripe.Webhook.construct_event(delivery["body"], sig, SECRET)
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == session.id
    assert event.data.object.payment_status == "paid"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery["body"], sig, "whsec_wrong")
    assert client.v1.events.retrieve(event.id).type == "checkout.session.completed"
    status, _h, page = raw(standin, f"/c/pay/{session.id}")
    assert "complete" in page and 'value="pay"' not in page
    status, _h, _p = pay_session(standin, session.id)
    assert status == 409


def test_decline_then_cancel_then_pay(client, standin):
    session = client.v1.checkout.sessions.create(params=session_params())
    status, _h, page = pay_session(standin, session.id, "decline")
    assert status == 402 and "declined" in page
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    failed = client.v1.events.list(params={"type": "payment_intent.payment_failed"}).data
    assert len(failed) == 1
    assert failed[0].data.object.last_payment_error.code == "card_declined"
    status, headers, _ = pay_session(standin, session.id, "cancel")
    assert (status, headers["Location"]) == (303, "https://portal.test/cancelled")
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert pay_session(standin, session.id)[0] == 303
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert paid.payment_intent.id == failed[0].data.object.id
    assert paid.payment_intent.status == "succeeded"


def _wait_event(client, event_type: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.v1.events.list(params={"type": event_type}).data
        if data:
            return data[0]
        time.sleep(0.02)
    raise AssertionError(f"no {event_type} event")


def test_async_payment_succeeds_later(client, standin):
    session = client.v1.checkout.sessions.create(params=session_params())
    assert pay_session(standin, session.id, "async_success")[0] == 303
    completed = client.v1.events.list(params={"type": "checkout.session.completed"}).data[0]
    assert completed.data.object.payment_status == "unpaid"
    event = _wait_event(client, "checkout.session.async_payment_succeeded")
    assert event.data.object.payment_status == "paid"
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


def test_async_payment_fails(client, standin):
    ctl(standin, "/_standin/config", {"async_delay": 60})
    session = client.v1.checkout.sessions.create(params=session_params())
    assert pay_session(standin, session.id, "async_fail")[0] == 303
    assert client.v1.events.list(params={"type": "checkout.session.async_payment_failed"}).data == []
    assert ctl(standin, "/_standin/tasks/run")["ran"] == 1
    event = client.v1.events.list(params={"type": "checkout.session.async_payment_failed"}).data[0]
    assert event.data.object.id == session.id
    fetched = client.v1.checkout.sessions.retrieve(session.id)
    assert (fetched.status, fetched.payment_status) == ("complete", "unpaid")
    assert client.v1.payment_intents.retrieve(fetched.payment_intent).status == "requires_payment_method"


def _paid_intent(client, standin) -> str:
    session = client.v1.checkout.sessions.create(params=session_params())
    assert pay_session(standin, session.id)[0] == 303
    return client.v1.checkout.sessions.retrieve(session.id).payment_intent


def test_full_and_partial_refunds(client, standin):
    pi = _paid_intent(client, standin)
    partial = client.v1.refunds.create(params={"payment_intent": pi, "amount": 2000,
                                               "reason": "requested_by_customer",
                                               "metadata": {"booking_id": "7"}})
    assert (partial.object, partial.status, partial.amount) == ("refund", "succeeded", 2000)
    assert partial.id.startswith("re_")
    charge_id = client.v1.payment_intents.retrieve(pi).latest_charge
    assert client.v1.charges.retrieve(charge_id).amount_refunded == 2000
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.refunds.create(params={"payment_intent": pi, "amount": 3001})
    assert info.value.param == "amount"
    rest = client.v1.refunds.create(params={"payment_intent": pi})
    assert rest.amount == 3000
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert client.v1.refunds.retrieve(partial.id).metadata.to_dict() == {"booking_id": "7"}
    refunded = client.v1.events.list(params={"type": "charge.refunded"}).data
    assert [e.data.object.amount_refunded for e in refunded] == [5000, 2000]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"payment_intent": pi})


def test_refund_failure_switch(client, standin):
    pi = _paid_intent(client, standin)
    ctl(standin, "/_standin/refunds/fail_next", {"count": 1, "mode": "failed"})
    failed = client.v1.refunds.create(params={"payment_intent": pi, "amount": 1000})
    assert (failed.status, failed.failure_reason) == ("failed", "declined")
    ctl(standin, "/_standin/refunds/fail_next", {"count": 1, "mode": "402"})
    with pytest.raises(stripe.CardError):
        client.v1.refunds.create(params={"payment_intent": pi, "amount": 1000})
    ctl(standin, "/_standin/refunds/fail_next", {"count": 1, "mode": "500"})
    with pytest.raises(stripe.APIError) as info:
        client.v1.refunds.create(params={"payment_intent": pi, "amount": 1000},
                                 options={"idempotency_key": "refund-7"})
    assert info.value.http_status == 500
    charge = client.v1.charges.retrieve(client.v1.payment_intents.retrieve(pi).latest_charge)
    assert charge.amount_refunded == 0
    ok = client.v1.refunds.create(params={"payment_intent": pi, "amount": 1000},
                                  options={"idempotency_key": "refund-7"})
    assert ok.status == "succeeded"
    assert len(client.v1.events.list(params={"type": "refund.failed"}).data) == 1


def test_events_filters_and_pagination(client, standin):
    ids = [client.v1.checkout.sessions.create(params=session_params()).id for _ in range(4)]
    for sid in ids:
        client.v1.checkout.sessions.expire(sid)
    pay_session(standin, client.v1.checkout.sessions.create(params=session_params()).id)
    expired = client.v1.events.list(params={"type": "checkout.session.expired", "limit": 3})
    assert [e.data.object.id for e in expired.data] == ids[::-1][:3]
    assert expired.has_more is True
    older = client.v1.events.list(params={"type": "checkout.session.expired", "limit": 3,
                                          "starting_after": expired.data[-1].id})
    assert [e.data.object.id for e in older.data] == [ids[0]] and older.has_more is False
    newer = client.v1.events.list(params={"type": "checkout.session.expired",
                                          "ending_before": older.data[0].id, "limit": 2})
    assert [e.data.object.id for e in newer.data] == [ids[2], ids[1]]
    both = client.v1.events.list(params={"types": ["checkout.session.completed",
                                                   "payment_intent.succeeded"]})
    assert sorted(e.type for e in both.data) == ["checkout.session.completed",
                                                  "payment_intent.succeeded"]
    assert {e.type for e in client.v1.events.list(params={"type": "charge.*"}).data} == {"charge.succeeded"}
    first = expired.data[-1]
    assert first.object == "event" and first.livemode is False and first.api_version
    later = client.v1.events.list(params={"created": {"gt": first.created}, "limit": 100}).data
    assert all(e.created > first.created for e in later)
    assert client.v1.events.retrieve(first.id).id == first.id


def test_webhook_retry_is_resigned(client, standin, receiver):
    ctl(standin, "/_standin/config", {"initial_delay": 1.0, "enabled_events": ["checkout.session.expired"]})
    receiver.script[:] = [500]
    sid = client.v1.checkout.sessions.create(params=session_params()).id
    client.v1.checkout.sessions.expire(sid)
    got = receiver.wait_for(lambda evs: len(evs) == 2)
    assert [r["status"] for r in got] == [500, 200]
    assert got[0]["event"]["id"] == got[1]["event"]["id"]
    stamps = [r["headers"]["Stripe-Signature"].split(",")[0] for r in got]
    assert stamps[0] != stamps[1]
    for r in got:
        stripe.Webhook.construct_event(r["body"], r["headers"]["Stripe-Signature"], SECRET)
    ctl(standin, "/_standin/webhooks/wait_idle", {"timeout": 5})
    log = ctl(standin, "/_standin/deliveries", method="GET")["data"]
    assert [(a["attempt"], a["status"]) for a in log] == [(1, 500), (2, 200)]
    event_id = got[0]["event"]["id"]
    assert client.v1.events.retrieve(event_id).pending_webhooks == 0
    ok = client.v1.events.list(params={"delivery_success": True}).data
    assert event_id in [e.id for e in ok]


def test_webhook_gives_up_after_max_attempts(client, standin, receiver):
    ctl(standin, "/_standin/webhook", {"enabled_events": ["checkout.session.expired"]})
    receiver.script[:] = [500] * 10
    sid = client.v1.checkout.sessions.create(params=session_params()).id
    client.v1.checkout.sessions.expire(sid)
    assert ctl(standin, "/_standin/webhooks/wait_idle", {"timeout": 5})["idle"] is True
    assert [r["status"] for r in receiver.events()] == [500, 500, 500]
    pending = client.v1.events.list(params={"delivery_success": False}).data
    assert [e.type for e in pending] == ["checkout.session.expired"]
    assert pending[0].pending_webhooks == 1


def test_duplicate_deliveries(client, standin, receiver):
    ctl(standin, "/_standin/webhook", {"enabled_events": ["checkout.session.expired"]})
    ctl(standin, "/_standin/webhooks/duplicates", {"count": 3})
    sid = client.v1.checkout.sessions.create(params=session_params()).id
    client.v1.checkout.sessions.expire(sid)
    got = receiver.wait_for(lambda evs: len(evs) >= 3)
    assert ctl(standin, "/_standin/webhooks/wait_idle")["idle"] is True
    assert len(receiver.events()) == 3
    assert len({r["event"]["id"] for r in got}) == 1


def test_out_of_order_delivery(client, standin, receiver):
    ctl(standin, "/_standin/webhook", {"enabled_events": ["checkout.session.expired"]})
    ctl(standin, "/_standin/webhooks/out_of_order", {"enabled": True})
    ids = [client.v1.checkout.sessions.create(params=session_params()).id for _ in range(3)]
    for sid in ids:
        client.v1.checkout.sessions.expire(sid)
    status = ctl(standin, "/_standin/webhooks/wait_idle")
    assert (status["held"], receiver.events()) == (3, [])
    assert ctl(standin, "/_standin/webhooks/flush")["released"] == 3
    got = receiver.wait_for(lambda evs: len(evs) == 3)
    assert [r["event"]["data"]["object"]["id"] for r in got] == ids[::-1]


def test_pause_and_resume(client, standin, receiver):
    ctl(standin, "/_standin/webhook", {"enabled_events": ["checkout.session.expired"]})
    ctl(standin, "/_standin/webhooks/pause")
    sid = client.v1.checkout.sessions.create(params=session_params()).id
    client.v1.checkout.sessions.expire(sid)
    assert ctl(standin, "/_standin/webhooks/wait_idle", {"timeout": 0.2})["idle"] is False
    assert receiver.events() == []
    ctl(standin, "/_standin/webhooks/resume")
    got = receiver.wait_for(lambda evs: len(evs) == 1)
    assert got[0]["event"]["data"]["object"]["id"] == sid


def test_webhook_url_and_secret_at_runtime(client, standin, receiver):
    ctl(standin, "/_standin/webhook", {"url": receiver.url, "secret": "whsec_other",
                                       "enabled_events": ["checkout.session.expired"]})
    client.v1.checkout.sessions.expire(client.v1.checkout.sessions.create(params=session_params()).id)
    got = receiver.wait_for(lambda evs: len(evs) == 1)
    stripe.Webhook.construct_event(got[0]["body"], got[0]["headers"]["Stripe-Signature"], "whsec_other")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(got[0]["body"], got[0]["headers"]["Stripe-Signature"], SECRET)


def test_amount_total_override(client, standin):
    session = client.v1.checkout.sessions.create(params=session_params())
    ctl(standin, f"/_standin/checkout/sessions/{session.id}/amount_total", {"amount_total": 4200})
    assert client.v1.checkout.sessions.retrieve(session.id).amount_total == 4200
    pay_session(standin, session.id)
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert client.v1.payment_intents.retrieve(paid.payment_intent).amount_received == 4200


def test_reset_clears_state(client, standin):
    sid = client.v1.checkout.sessions.create(params=session_params()).id
    ctl(standin, "/_standin/reset")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.retrieve(sid)
    assert client.v1.events.list().data == []


def test_cli_uses_env_fallbacks(receiver):
    env = python_env(dict(os.environ, STANDIN_WEBHOOK_URL=receiver.url,
                          STRIPE_WEBHOOK_SECRETS="whsec_first, whsec_second"))
    cmd = [sys.executable, "-m", "stripe_standin", "--host", "127.0.0.1", "--port", "0"]
    with subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stderr.readline()
            assert "listening on http://127.0.0.1:" in line
            base = line.split("listening on ")[1].split()[0]
            config = ctl(base, "/_standin/config", method="GET")
            assert (config["url"], config["secret"]) == (receiver.url, "whsec_first")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    bad = subprocess.run([sys.executable, "-m", "stripe_standin", "--host", "0.0.0.0", "--port", "0"],
                         env=python_env(), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "loopback" in bad.stderr
