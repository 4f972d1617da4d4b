"""The ops console is for platform staff only: every page, repair and JSON endpoint refuses everyone else."""
from __future__ import annotations

import pytest

from tests.conftest import csrf_token_from
from tests.ops.conftest import log_in

ROUTES = [
    ("GET", "/ops/"), ("GET", "/ops/queries/dead_events"), ("GET", "/ops/queries/dead_events.csv"),
    ("GET", "/ops/api/reconciliation"), ("GET", "/ops/api/reconciliation/stuck_refunds"),
    ("GET", "/ops/search?q=student@example.com"),
    ("POST", "/ops/events/1/replay"), ("POST", "/ops/payments/1/refetch"), ("POST", "/ops/bookings/1/release"),
    ("POST", "/ops/refunds/1/retry"), ("POST", "/ops/payments/1/refund"), ("POST", "/ops/resolve/dead_events/1"),
    ("POST", "/ops/drift"), ("GET", "/ops/studios"), ("POST", "/ops/studios/1/suspend"),
    ("POST", "/ops/studios/1/resume"),
]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("who", [None, "student@example.com", "admin@example.com"])
def test_only_ops_get_in(app, studio, method, path, who):
    client = app.test_client()
    token = log_in(client, who) if who else csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.get(path) if method == "GET" else client.post(path, data={"csrf_token": token,
                                                                                "note": "trying"})
    if who is None and "/api/" in path:
        assert response.status_code == 401
    elif who is None and method == "GET":
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    elif who is None:
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    else:
        assert response.status_code == 403
    assert "student@example.com" not in response.get_data(as_text=True) or who == "student@example.com"


def test_ops_answers_every_page_and_json(app, studio, ops):
    for path in ("/ops/", "/ops/queries/paid_unconfirmed", "/ops/queries/stripe_drift.csv",
                 "/ops/search?q=%2342", "/ops/search?q=cs_nothing"):
        assert ops.get(path).status_code == 200, path
    overview = ops.get("/ops/api/reconciliation").get_json()
    assert set(overview["queries"]) == {
        "paid_unconfirmed", "packs_paid_uncredited", "stuck_events", "dead_events", "unreleased_holds",
        "amount_mismatches", "stuck_refunds", "confirmed_without_payment", "overlapping_bookings", "external_refunds",
        "stripe_drift"}
    assert overview["queries"]["dead_events"] == {"count": 0, "oldest_age_seconds": None}
    assert ops.get("/ops/api/reconciliation/nope").status_code == 404
    assert ops.get("/ops/queries/dead_events?min_age=soon").status_code == 422
    assert ops.get("/ops/queries/dead_events?studio=nowhere").status_code == 422
