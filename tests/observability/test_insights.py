"""The utilisation anomaly endpoints on synthetic histories with known answers: a one-day spike is found by the
z-score and Holt–Winters and not by CUSUM; a level shift is found by CUSUM and not by the z-score; a steady weekly
pattern is flagged by none; severities and actions follow. Parameters are validated; access is the admin API's."""
from __future__ import annotations

import random
from datetime import datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Package, Resource, ResourceKind, User
from portal.services import utilisation_insights as insights
from tests.admin.conftest import bearer
from tests.conftest import stripe_env

API = "/s/melody-and-meter/api/admin/resources"
DAYS = 56
WEEKLY = (1, 2, 3, 2, 4, 7, 6)  # lessons a day, Monday to Sunday (capacity: 8 one-hour lessons)


@pytest.fixture
def app_env(stripe_standin):
    return stripe_env(stripe_standin)


def _yesterday(world):
    return utcnow().astimezone(world.a.tz).date() - timedelta(days=1)


@pytest.fixture
def histories(app, world):
    """56 days up to yesterday: piano 3 lessons a day with 8 three days ago; drums 2 a day, then 5 a day for the
    last 28 days; studio-a a weekly rhythm. Every resource can take 8 one-hour lessons a day."""
    last = _yesterday(world)
    first = last - timedelta(days=DAYS - 1)
    spike_day = last - timedelta(days=2)
    with app.app_context(), tenancy.scoped(world.a.id):
        db.session.add(Resource(studio_id=world.a.id, slug="studio-a", name="Studio A", kind=ResourceKind.ROOM))
        db.session.flush()
        resources = {r.slug: r for r in db.session.scalars(select(Resource))}
        student = db.session.scalar(select(User).where(User.email == "student@example.com"))
        package = db.session.scalar(select(Package).where(Package.slug == "lesson-60"))
        for i in range(DAYS):
            day = first + timedelta(days=i)
            counts = {"piano": 8 if day == spike_day else 3, "drums": 2 if i < DAYS - 28 else 5,
                      "studio-a": WEEKLY[day.weekday()]}
            for slug, count in counts.items():
                for hour in range(count):
                    start = datetime.combine(day, time(8 + hour), world.a.tz).astimezone(timezone.utc)
                    db.session.add(Booking(studio_id=world.a.id, student_id=student.id, package_id=package.id,
                                           resource_id=resources[slug].id, start_at=start,
                                           end_at=start + timedelta(hours=1), occupied_until=start + timedelta(hours=1),
                                           status=BookingStatus.CONFIRMED, price_minor=6500, currency="usd"))
        db.session.commit()
    return {"last": last, "spike_day": spike_day, "shift_day": last - timedelta(days=27)}


def _by_resource(body) -> dict:
    return {item["resource"]: item for item in body["resources"]}


def test_a_one_day_spike_is_a_point_anomaly(admin, histories):
    body = admin.get(f"{API}/utilization-anomalies?window=56").get_json()
    found = _by_resource(body)
    assert body["window"] == {"from": (histories["last"] - timedelta(days=55)).isoformat(),
                              "to": histories["last"].isoformat(), "days": 56}
    (spike,) = found["piano"]["anomalies"]
    assert spike["date"] == histories["spike_day"].isoformat() and spike["utilization"] == 1.0 and spike["z"] > 3
    assert found["drums"]["anomalies"] == []       # a shift halfway is no single odd day
    assert found["studio-a"]["anomalies"] == []    # nor is a weekly rhythm


def test_holt_winters_finds_the_spike_and_leaves_the_weekly_rhythm_alone(admin, histories):
    found = _by_resource(admin.get(f"{API}/utilization-seasonal-anomalies?window=56").get_json())
    assert found["studio-a"]["anomalies"] == []
    assert [a["date"] for a in found["piano"]["anomalies"]] == [histories["spike_day"].isoformat()]


def test_cusum_finds_the_level_shift_and_not_the_spike(admin, histories):
    found = _by_resource(admin.get(f"{API}/utilization-persistence-anomalies?window=56").get_json())
    (shift,) = found["drums"]["shifts"]
    assert shift["direction"] == "up" and shift["baseline"] == 0.25 and shift["level"] == 0.625
    assert shift["started"] == histories["shift_day"].isoformat()
    assert histories["shift_day"] <= datetime.fromisoformat(shift["detected"]).date() \
        <= histories["shift_day"] + timedelta(days=3)
    assert found["piano"]["shifts"] == [] and found["studio-a"]["shifts"] == []


def test_severities_and_actions_follow_the_findings(admin, histories):
    found = _by_resource(admin.get(f"{API}/anomaly-severity?window=56").get_json())
    assert found["drums"]["tier"] == "high" and found["drums"]["action"].startswith("Add ")
    assert "hours to Drums: 62% booked" in found["drums"]["action"]
    assert found["piano"]["tier"] == "medium"
    assert found["piano"]["action"] == (f"Check {histories['spike_day'].isoformat()}: Piano was 100% booked "
                                        "against a usual 38%.")
    assert found["studio-a"]["tier"] == "none"
    assert found["studio-a"]["action"] == "Add Saturday hours to Studio A: 88% booked on Saturdays."


def test_the_admin_home_says_the_findings_in_words(admin, histories):
    page = admin.get("/s/melody-and-meter/admin/").get_data(as_text=True)
    assert "Add Saturday hours to Studio A: 88% booked on Saturdays." in page
    assert "Drums moved up from 25% to about 62%" in page


@pytest.mark.parametrize("query, parameter", [
    ("utilization-anomalies?window=abc", "window"),
    ("utilization-anomalies?window=3", "window"),
    ("utilization-anomalies?window=1000", "window"),
    ("utilization-anomalies?threshold=0", "threshold"),
    ("utilization-anomalies?threshold=nan", "threshold"),
    ("utilization-anomalies?to=2026-13-01", "to"),
    ("utilization-anomalies?resource=tuba", "resource"),
    ("utilization-seasonal-anomalies?window=10", "window"),
    ("utilization-seasonal-anomalies?min_delta=2", "min_delta"),
    ("utilization-persistence-anomalies?k=-1", "k"),
    ("utilization-persistence-anomalies?k=2&h=2", "h"),
    ("utilization-persistence-anomalies?window=28&baseline=25", "baseline"),
    ("anomaly-severity?window=7", "window"),
])
def test_bad_parameters_get_a_clear_422(admin, world, query, parameter):
    response = admin.get(f"{API}/{query}")
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "invalid_parameter" and body["parameter"] == parameter and body["detail"]


def test_a_day_not_over_yet_is_refused(admin, world):
    today = utcnow().astimezone(world.a.tz).date()
    response = admin.get(f"{API}/utilization-anomalies?to={today.isoformat()}")
    assert response.status_code == 422 and response.get_json()["parameter"] == "to"


def test_api_keys_need_bookings_read_and_their_own_studio(app, world, make_api_key):
    client = app.test_client()
    assert client.get(f"{API}/anomaly-severity").status_code == 401
    assert client.get(f"{API}/anomaly-severity", headers=bearer(make_api_key(["config:read"]))).status_code == 403
    other = bearer(make_api_key(["bookings:read"], studio="b"))
    assert client.get(f"{API}/anomaly-severity", headers=other).status_code == 403
    reader = bearer(make_api_key(["bookings:read"]))
    answer = client.get(f"{API}/utilization-anomalies", headers=reader)
    assert answer.status_code == 200 and {r["resource"] for r in answer.get_json()["resources"]} == {"piano",
                                                                                                    "drums"}


def test_the_methods_on_noisy_series():
    rng = random.Random(7)
    noise = [0.4 + rng.uniform(-0.03, 0.03) for _ in range(56)]
    spike = noise[:40] + [0.95] + noise[41:]
    shift = noise[:28] + [v - 0.3 for v in noise[28:]]
    weekly = [(0.2, 0.3, 0.4, 0.3, 0.5, 0.9, 0.8)[i % 7] + rng.uniform(-0.01, 0.01) for i in range(56)]
    assert [i for i, _ in insights.zscore_anomalies(spike, 3)] == [40]
    assert insights.cusum_shifts(spike, 14, 0.5, 5) == []
    assert insights.zscore_anomalies(shift, 3) == []
    (down,) = insights.cusum_shifts(shift, 14, 0.5, 5)
    assert down.direction == "down" and 26 <= down.start <= 28 and down.detected <= 30
    assert insights.seasonal_anomalies(weekly, 3, 0.1) == []
    assert insights.cusum_shifts(weekly, 14, 0.5, 5) == []
    assert [i for i, *_ in insights.seasonal_anomalies(spike, 3, 0.1)] == [40]


@pytest.mark.parametrize("endpoint", ["utilization-anomalies", "utilization-seasonal-anomalies",
                                      "utilization-persistence-anomalies", "anomaly-severity"])
def test_the_answers_match_the_openapi_document(admin, histories, endpoint):
    from tests.web.test_openapi import SPEC, _check

    responses = SPEC["paths"][f"/s/{{studio}}/api/admin/resources/{endpoint}"]["get"]["responses"]
    ok = admin.get(f"{API}/{endpoint}?window=56")
    _check(ok.get_json(), responses["200"]["content"]["application/json"]["schema"])
    bad = admin.get(f"{API}/{endpoint}?window=2")
    refusal = SPEC["components"]["responses"][responses["422"]["$ref"].rsplit("/", 1)[1]]
    assert bad.status_code == 422
    _check(bad.get_json(), refusal["content"]["application/json"]["schema"])
