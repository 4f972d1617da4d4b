"""The student's pages for weekly lessons and credits, through the web client."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, BookingStatus, Payment, Role, Studio
from portal.services import audit, credits
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, make_blackout, make_studio, make_user, next_weekday

NY = ZoneInfo("America/New_York")
STUDIO = "/s/melody-and-meter"


@pytest.fixture
def student(app_ctx, auth):
    studio = make_studio(buffer_minutes=0)
    person = make_user("learner@example.com", roles=[(studio, Role.STUDENT)])
    auth.login("learner@example.com", PASSWORD)
    return studio, person


def _grant(studio, person, amount):
    with tenancy.scoped(studio.id):
        credits.grant(studio=db.session.get(Studio, studio.id), student_id=person.id, minutes=60, amount=amount,
                      valid_days=90, note="welcome pack", actor=audit.SYSTEM, now=utcnow())


def test_my_credits_api_needs_a_login_and_sums_the_entries(client, student):
    studio, person = student
    _grant(studio, person, 3)
    answer = client.get(f"{STUDIO}/api/me/credits")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["balance"] == 3 == sum(e["amount"] for e in body["entries"])
    assert body["entries"][0]["kind"] == "grant" and body["entries"][0]["expires_at"]
    client.post("/logout", data={"csrf_token": csrf_token_from(client.get(f"{STUDIO}/lessons").get_data(True))})
    assert client.get(f"{STUDIO}/api/me/credits").status_code == 401


def test_planning_holding_and_paying_a_series_by_card(client, student):
    studio, person = student
    first = datetime.combine(next_weekday(2, after_days=3), time(10), NY)
    make_blackout(studio, (first + timedelta(weeks=1)).replace(hour=0), (first + timedelta(weeks=1)).replace(hour=23))
    page = client.get(f"{STUDIO}/packages/lesson-60?weekly=1&resource=piano&date={first.date().isoformat()}")
    assert page.status_code == 200 and 'action="/s/melody-and-meter/series/plan"' in page.get_data(True)
    plan = client.get(f"{STUDIO}/series/plan", query_string={"package": "lesson-60", "resource": "piano",
                                                             "start": first.isoformat(), "weeks": 4})
    html = plan.get_data(True)
    assert plan.status_code == 200 and "Studio closed (blackout)" in html and html.count('name="occurrence"') == 3
    kept = [(first + timedelta(weeks=k)).isoformat() for k in (0, 3)]  # week 2 blacked out, week 3 skipped
    answer = client.post(f"{STUDIO}/series", data={
        "csrf_token": csrf_token_from(html), "package": "lesson-60", "resource": "piano", "start": first.isoformat(),
        "weeks": "4", "occurrence": kept, "payment": "checkout"})
    assert answer.status_code == 303 and "/c/pay/cs_test_" in answer.headers["Location"]
    with tenancy.scoped(studio.id):
        payment = db.session.scalar(select(Payment))
        assert payment.amount_minor == 2 * 6500 and payment.series_id is not None
        held = db.session.scalars(select(Booking.start_at).where(Booking.series_id == payment.series_id)
                                  .order_by(Booking.start_at)).all()
        assert [h.astimezone(NY).isoformat() for h in held] == kept
        series_id = payment.series_id
    shown = client.get(f"{STUDIO}/series/{series_id}")
    assert shown.status_code == 200 and "Waiting for payment" in shown.get_data(True)
    bad = client.post(f"{STUDIO}/series", data={
        "csrf_token": csrf_token_from(html), "package": "lesson-60", "resource": "piano", "start": first.isoformat(),
        "weeks": "99"})
    assert bad.status_code == 422


def test_a_series_and_a_single_lesson_paid_with_credits(client, student):
    studio, person = student
    _grant(studio, person, 3)
    first = datetime.combine(next_weekday(3, after_days=3), time(11), NY)
    token = csrf_token_from(client.get(f"{STUDIO}/lessons").get_data(True))
    answer = client.post(f"{STUDIO}/series", data={
        "csrf_token": token, "package": "lesson-60", "resource": "piano", "start": first.isoformat(), "weeks": "2",
        "payment": "credits", "occurrence": [first.isoformat(), (first + timedelta(weeks=1)).isoformat()]})
    assert answer.status_code == 303 and "/series/" in answer.headers["Location"]
    single = client.post(f"{STUDIO}/bookings", data={
        "csrf_token": token, "package": "lesson-60", "resource": "piano",
        "start": (first + timedelta(hours=2)).isoformat(), "payment": "credit"})
    assert single.status_code == 303 and "/bookings/" in single.headers["Location"]
    refused = client.post(f"{STUDIO}/bookings", data={
        "csrf_token": token, "package": "lesson-60", "resource": "piano",
        "start": (first + timedelta(hours=3)).isoformat(), "payment": "credit"})
    assert refused.status_code == 409 and "credit" in refused.get_data(True)
    with tenancy.scoped(studio.id):
        assert db.session.scalar(select(func.count(Booking.id)).where(
            Booking.status == BookingStatus.CONFIRMED)) == 3
    lessons = client.get(f"{STUDIO}/lessons").get_data(True)
    assert 'id="weekly-series"' in lessons and "Paid with a lesson credit" in lessons
    assert '<strong class="credit-balance" data-minutes="60">0</strong>' in lessons


def test_a_lesson_pack_bought_through_checkout_adds_its_credits_once(app, client, auth, stripe_standin):
    """Outside a long-lived app context: the webhook's job writes from its own thread (SQLite has one writer)."""
    from portal.models import LessonPack, PackPurchase, PackPurchaseStatus
    from tests.payments.helpers import deliver, pay

    with app.app_context():
        studio = make_studio(buffer_minutes=0)
        person = make_user("learner@example.com", roles=[(studio, Role.STUDENT)])
        studio_id, person_id = studio.id, person.id
        with tenancy.scoped(studio_id):
            db.session.add(LessonPack(studio_id=studio_id, slug="ten-60", name="Ten lessons", lesson_count=10,
                                      lesson_minutes=60, valid_days=180, price_minor=60000, currency="usd"))
            db.session.commit()
    auth.login("learner@example.com", PASSWORD)
    page = client.get(f"{STUDIO}/lessons").get_data(True)
    assert 'id="packs-on-sale"' in page
    answer = client.post(f"{STUDIO}/packs/ten-60/buy", data={"csrf_token": csrf_token_from(page)})
    assert answer.status_code == 303 and "/c/pay/cs_test_" in answer.headers["Location"]
    assert client.post(f"{STUDIO}/packs/nope/buy", data={"csrf_token": csrf_token_from(page)}).status_code == 404
    with app.app_context(), tenancy.scoped(studio_id):
        purchase = db.session.scalar(select(PackPurchase))
        session_id, purchase_id = purchase.checkout_session_id, purchase.id
    pay(stripe_standin, session_id)
    deliver(app, client, stripe_standin, types=("checkout.session.completed",), times=2)  # a redelivery too
    with app.app_context(), tenancy.scoped(studio_id):
        assert db.session.get(PackPurchase, purchase_id).status == PackPurchaseStatus.PAID
        assert credits.usable(person_id, 60) == 10
        entry = credits.history(person_id)[0]
        assert (entry.kind.value, entry.amount, entry.pack_id) == ("purchase", 10, db.session.scalar(
            select(LessonPack.id)))
        assert entry.expires_at == db.session.get(PackPurchase, purchase_id).paid_at + timedelta(days=180)
