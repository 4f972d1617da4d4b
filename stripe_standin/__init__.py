"""A small, dependency-free Stripe API stand-in for local development and tests.

It speaks enough of Stripe's v1 dialect (form-encoded bracket params, Bearer
auth, Stripe error bodies, ``Idempotency-Key``, list pagination) for the real
``stripe`` SDK to drive it, and it signs and delivers webhooks like Stripe.
It binds to loopback only and keeps all state in memory.

Run it::

    python -m stripe_standin --port 12111 --webhook-url http://127.0.0.1:5000/stripe/webhook \
        --webhook-secret whsec_test

or embed it: ``server, base = start_server(port=0, webhook_url=..., webhook_secret=...)``
and ``server.shutdown()`` when done.  Point the SDK at it with
``StripeClient("sk_test_x", base_addresses={"api": base, "connect": base,
"files": base, "meter_events": base})``.

API: ``/v1/checkout/sessions`` (create/list/retrieve/expire/line_items),
``/v1/payment_intents/{id}``, ``/v1/charges/{id}``, ``/v1/refunds``
(create/list/retrieve), ``/v1/events`` (list/retrieve).  Hosted page:
``/c/pay/{session_id}`` with Pay / Decline / async Pay / Cancel buttons.

Control API (JSON, no auth, loopback only; GET routes also accept POST):

* ``GET  /_standin/health`` and ``GET|POST /_standin/config`` (webhook ``url``,
  ``secret``, ``enabled_events``, ``max_attempts``, ``initial_delay``,
  ``backoff_factor``, ``max_delay``, ``timeout``, ``duplicates``,
  ``out_of_order``, ``paused``, ``senders`` (deliveries at once), plus ``async_delay``)
* ``POST /_standin/webhook`` ``{"url", "secret", "enabled_events"}``
* ``POST /_standin/webhooks/duplicates`` ``{"count": N}``;
  ``/webhooks/out_of_order`` ``{"enabled": bool}``; ``/webhooks/flush``;
  ``/webhooks/pause``; ``/webhooks/resume``; ``/webhooks/wait_idle`` ``{"timeout"}``
* ``GET  /_standin/deliveries`` (``?event_id=``, ``?type=``): delivery attempts
* ``POST /_standin/checkout/sessions/{id}/expire`` | ``/amount_total``
  ``{"amount_total": N}`` | ``/pay`` ``{"outcome": "pay"|"decline"|"async_success"|"async_fail"}``
* ``POST /_standin/refunds/fail_next`` ``{"count": N, "mode": "failed"|"402"|"500"|"lost"}``
  (``lost``: the refund is made, then the request answers 500, as when the answer is lost on the way)
* ``POST /_standin/events/{id}/resend``, ``/_standin/clock/advance`` ``{"seconds"}``,
  ``/_standin/tasks/run``, ``/_standin/reset``
"""

from .server import StandinServer, start_server
from .webhooks import sign

__all__ = ["StandinServer", "start_server", "sign"]
