"""The studio refunds the unused credits of a lesson pack: the ledger takes back exactly what is left of the pack,
the student gets its pro-rata share of the price back through Stripe (never more than is left of the payment), the
admin sees the amount first and writes a note, and a second click or a stale page changes nothing."""
from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import (
    AuditEntry,
    CreditEntry,
    CreditKind,
    LessonPack,
    PackPurchase,
    Refund,
    RefundStatus,
    Role,
    Studio,
    User,
)
from portal.payments import get_provider
from portal.services import audit, credit_admin, credits, pack_refunds
from portal.services.errors import DomainError
from tests.conftest import BOTH, csrf_token_from
from tests.credits.conftest import assert_ledger_matches_balances, local
from tests.factories import PASSWORD, make_studio, make_user, next_weekday
from tests.payments.helpers import deliver, drain, pay

STUDIO = "/s/melody-and-meter"
ADMIN_PAGE = f"{STUDIO}/admin/credits"
ENGINE = {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 20, "max_overflow": 0, "pool_timeout": 60}}


@pytest.fixture
def people(app):
    """Outside a long-lived app context: jobs write from their own threads (SQLite has one writer)."""
    with app.app_context():
        studio = make_studio(buffer_minutes=0, hours=("00:00", "23:30"), booking_horizon_days=120)
        student = make_user("learner@example.com", roles=[(studio, Role.STUDENT)])
        make_user("boss@example.com", roles=[(studio, Role.ADMIN)])
        make_user("ops@example.com", ops=True)
        with tenancy.scoped(studio.id):
            db.session.add(LessonPack(studio_id=studio.id, slug="three-60", name="Three lessons", lesson_count=3,
                                      lesson_minutes=60, valid_days=90, price_minor=10000, currency="usd"))
            db.session.commit()
        return {"studio_id": studio.id, "student_id": student.id}


def ledger_ok(app, studio_id: int) -> None:
    with app.app_context():
        assert_ledger_matches_balances(studio_id)


def log_in(app, email: str):
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(True))
    assert client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token}).status_code == 303
    return client


def buy_pack(app, stripe_standin, student) -> tuple[int, int]:
    """The student buys the pack through Checkout and pays; the webhook credits it. (purchase id, lot id)."""
    page = student.get(f"{STUDIO}/lessons").get_data(True)
    assert student.post(f"{STUDIO}/packs/three-60/buy",
                        data={"csrf_token": csrf_token_from(page)}).status_code == 303
    with app.app_context(), tenancy.all_tenants():
        purchase = db.session.scalars(select(PackPurchase).order_by(PackPurchase.id.desc())).first()
        purchase_id, session_id = purchase.id, purchase.checkout_session_id
    pay(stripe_standin, session_id)
    deliver(app, app.test_client(), stripe_standin, types=("checkout.session.completed",))
    with app.app_context(), tenancy.all_tenants():
        purchase = db.session.get(PackPurchase, purchase_id)
        assert purchase.status.value == "paid" and purchase.lot_id is not None
        return purchase_id, purchase.lot_id


def book_with_credit(app, studio_id, student_id, start):
    with app.app_context(), tenancy.scoped(studio_id):
        return credits.book_with_credit(studio=db.session.get(Studio, studio_id),
                                        student=db.session.get(User, student_id), package_slug="lesson-60",
                                        resource_slug="piano", start_raw=start.isoformat(), now=utcnow()).id


def refund_form(admin, lot_id: int) -> tuple[str, str, str]:
    """The confirmation page: (its html, its CSRF token, the fingerprint it was rendered from)."""
    html = admin.get(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund").get_data(True)
    seen = html.split('name="seen" value="', 1)[1].split('"', 1)[0]
    return html, csrf_token_from(html), seen


@BOTH
def test_unused_credits_are_refunded_pro_rata_through_stripe_once(app, people, stripe_standin):
    student = log_in(app, "learner@example.com")
    purchase_id, lot_id = buy_pack(app, stripe_standin, student)
    studio_id, student_id = people["studio_id"], people["student_id"]
    book_with_credit(app, studio_id, student_id, local(db_tz(app, studio_id), next_weekday(2), "16:00"))

    admin = log_in(app, "boss@example.com")
    listing = admin.get(ADMIN_PAGE).get_data(True)
    row = listing[listing.index(f'id="lot-{lot_id}"'):].split("</tr>", 1)[0]
    assert "learner@example.com" in row and "2 of 3" in row and "Refund unused" in row
    html, token, seen = refund_form(admin, lot_id)
    # 2 unused of 3 credits bought for $100.00: 2 × 10000 ÷ 3 = 6666.67, rounded down to $66.66
    assert '<dd id="refund-credits">2' in html and "$66.66" in html and seen == "2:6666"
    missing_note = admin.post(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund", data={"csrf_token": token, "seen": seen})
    assert missing_note.status_code == 422 and "audit log" in missing_note.get_data(True)
    done = admin.post(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund",
                      data={"csrf_token": token, "seen": seen, "note": "moving away"})
    assert done.status_code == 303
    drain(app)
    again = admin.post(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund",
                       data={"csrf_token": token, "seen": seen, "note": "moving away"})  # a double click
    assert again.status_code == 409 and "Nothing is left" in again.get_data(True)

    assert sorted((r["amount"], r["status"]) for r in stripe_standin.store.refunds.values()) == [(6666, "succeeded")]
    deliver(app, app.test_client(), stripe_standin, types=("charge.refunded",))  # Stripe's word changes nothing
    with app.app_context(), tenancy.scoped(studio_id):
        (refund,) = db.session.scalars(select(Refund)).all()
        assert (refund.pack_purchase_id, refund.payment_id, refund.amount_minor, refund.status, refund.reason) == (
            purchase_id, None, 6666, RefundStatus.SUCCEEDED, "unused_credits")
        assert credits.usable(student_id, 60) == 0
        entry = db.session.scalar(select(CreditEntry).where(CreditEntry.kind == CreditKind.REFUND))
        assert (entry.amount, entry.lot_id, entry.note) == (-2, lot_id, "moving away")
        notes = dict(db.session.execute(select(AuditEntry.action, AuditEntry.note).where(
            AuditEntry.action.in_(("credit.refund", "refund.create")))).all())
        assert notes == {"credit.refund": "moving away", "refund.create": "moving away"}
        assert pack_refunds.quote(lot_id, utcnow()).refundable is False
        db.session.commit()
    ledger_ok(app, studio_id)

    history = student.get(f"{STUDIO}/lessons").get_data(True)
    line = history[history.index('class="credit-refund"'):].split("</tr>", 1)[0]
    assert "Refunded" in line and "$66.66" in line and "-2 × 60 min" in line
    entries = student.get(f"{STUDIO}/api/me/credits").get_json()["entries"]
    assert [(e["kind"], e["amount"], e["refund"]) for e in entries if e["kind"] == "refund"] == [
        ("refund", -2, {"amount_minor": 6666, "currency": "usd", "status": "succeeded"})]
    assert all(e["refund"] is None for e in entries if e["kind"] != "refund")
    assert student.get(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund").status_code == 403


def db_tz(app, studio_id) -> SimpleNamespace:
    """The studio's timezone, in the shape `local` takes."""
    with app.app_context(), tenancy.all_tenants():
        return SimpleNamespace(tz=db.session.get(Studio, studio_id).tz)


def test_a_stale_page_is_refused_and_shows_the_new_amount(app, people, stripe_standin):
    student = log_in(app, "learner@example.com")
    _purchase_id, lot_id = buy_pack(app, stripe_standin, student)
    admin = log_in(app, "boss@example.com")
    _html, token, seen = refund_form(admin, lot_id)
    assert seen == "3:10000"
    book_with_credit(app, people["studio_id"], people["student_id"],
                     local(db_tz(app, people["studio_id"]), next_weekday(2), "10:00"))  # meanwhile
    stale = admin.post(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund",
                       data={"csrf_token": token, "seen": seen, "note": "leaving"})
    body = stale.get_data(True)
    assert stale.status_code == 409 and "changed since the page was shown" in body and "$66.66" in body
    assert stripe_standin.store.refunds == {}
    with app.app_context(), tenancy.scoped(people["studio_id"]):
        assert credits.usable(people["student_id"], 60) == 2
        assert db.session.scalar(select(Refund.id)) is None
    assert admin.get(f"{ADMIN_PAGE}/packs-bought/999999/refund").status_code == 404


@BOTH
def test_never_more_than_is_left_of_the_payment(app, people, stripe_standin):
    """A refund made in the Stripe Dashboard on the pack's payment is recorded (ops see it) and caps the refund."""
    student = log_in(app, "learner@example.com")
    purchase_id, lot_id = buy_pack(app, stripe_standin, student)
    with app.app_context(), tenancy.all_tenants():
        intent = db.session.get(PackPurchase, purchase_id).payment_intent_id
        get_provider().create_refund(payment_intent_id=intent, amount_minor=9000, reason="requested_by_customer",
                                     metadata={}, idempotency_key="dashboard-pack-refund")
    deliver(app, app.test_client(), stripe_standin, types=("charge.refunded",))
    with app.app_context(), tenancy.all_tenants():
        (external,) = db.session.scalars(select(Refund)).all()
        assert (external.reason, external.pack_purchase_id, external.amount_minor) == ("external", purchase_id, 9000)
    admin = log_in(app, "boss@example.com")
    html, token, seen = refund_form(admin, lot_id)
    assert seen == "3:1000" and "$10.00" in html and "$10.00 of it not refunded yet" in html
    assert admin.post(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund",
                      data={"csrf_token": token, "seen": seen, "note": "rest of it"}).status_code == 303
    drain(app)
    assert sorted(r["amount"] for r in stripe_standin.store.refunds.values()) == [1000, 9000]


def test_a_pack_sold_at_the_desk_refunds_its_credits_only(app, people, stripe_standin):
    with app.app_context(), tenancy.scoped(people["studio_id"]):
        pack_id = db.session.scalar(select(LessonPack.id))
        lot_id = credit_admin.sell_pack(db.session.get(Studio, people["studio_id"]), pack_id=pack_id,
                                        student_id=people["student_id"], note="cash", actor=audit.SYSTEM,
                                        now=utcnow()).id
    admin = log_in(app, "boss@example.com")
    html, token, seen = refund_form(admin, lot_id)
    assert seen == "3:0" and "credits only" in html and "sold at the desk" in html
    done = admin.post(f"{ADMIN_PAGE}/packs-bought/{lot_id}/refund",
                      data={"csrf_token": token, "seen": seen, "note": "cash returned at the desk"})
    assert done.status_code == 303
    assert "no money" in admin.get(ADMIN_PAGE).get_data(True)
    assert stripe_standin.store.refunds == {}
    with app.app_context(), tenancy.scoped(people["studio_id"]):
        assert credits.usable(people["student_id"], 60) == 0
        assert db.session.scalar(select(Refund.id)) is None
        db.session.commit()
    ledger_ok(app, people["studio_id"])


def test_expired_credits_are_not_refunded(app, people, stripe_standin):
    with app.app_context(), tenancy.scoped(people["studio_id"]):
        pack_id = db.session.scalar(select(LessonPack.id))
        lot_id = credit_admin.sell_pack(db.session.get(Studio, people["studio_id"]), pack_id=pack_id,
                                        student_id=people["student_id"], note="cash", actor=audit.SYSTEM,
                                        now=utcnow() - timedelta(days=91)).id
        with pytest.raises(DomainError) as refused:
            pack_refunds.refund_unused(db.session.get(Studio, people["studio_id"]), lot_id, seen="3:0",
                                       note="late", actor=audit.SYSTEM, now=utcnow())
        assert refused.value.status == 409 and "expired" in refused.value.message
        assert credits.usable(people["student_id"], 60) == 3  # the expiry sweep writes them off, not a refund


def _at_once(app, studio_id: int, attempts: dict) -> dict[str, str]:
    """Run each named attempt (a function of the studio, in its own thread and app context) at the same moment;
    returns how each ended: "done", or the refusal's status and code."""
    barrier = threading.Barrier(len(attempts))
    outcomes: dict[str, str] = {}

    def run(name, attempt):
        with app.app_context(), tenancy.scoped(studio_id):
            studio = db.session.get(Studio, studio_id)
            db.session.commit()  # end the read: SQLite's writers would queue behind it
            barrier.wait(timeout=30)
            try:
                attempt(studio)
                outcomes[name] = "done"
            except DomainError as refused:
                outcomes[name] = f"{refused.status} {refused.code}"
            except Exception as error:  # recorded so the assertion shows it
                outcomes[name] = f"error: {error!r}"
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=item) for item in attempts.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def _refund(lot_id: int, seen: str):
    return lambda studio: pack_refunds.refund_unused(studio, lot_id, seen=seen, note="race", actor=audit.SYSTEM,
                                                     now=utcnow())


def _book(student_id: int, start):
    return lambda studio: credits.book_with_credit(studio=studio, student=db.session.get(User, student_id),
                                                   package_slug="lesson-60", resource_slug="piano",
                                                   start_raw=start.isoformat(), now=utcnow())


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
@pytest.mark.parametrize("app_overrides", [ENGINE])
@pytest.mark.parametrize("round_", range(3))
def test_a_refund_racing_a_booking_for_the_last_credit_never_goes_below_zero(app, people, stripe_standin, backend,
                                                                              round_):
    student = log_in(app, "learner@example.com")
    purchase_id, lot_id = buy_pack(app, stripe_standin, student)
    studio_id, student_id = people["studio_id"], people["student_id"]
    tz = db_tz(app, studio_id)
    for hour in ("08:00", "09:00"):  # one credit left
        book_with_credit(app, studio_id, student_id, local(tz, next_weekday(3), hour))
    outcomes = _at_once(app, studio_id, {"refund": _refund(lot_id, "1:3333"),
                                         "book": _book(student_id, local(tz, next_weekday(3), "12:00"))})
    drain(app)
    assert sorted(outcomes.values()) in (["409 conflict", "done"], ["409 no_credit", "done"]), outcomes
    with app.app_context(), tenancy.scoped(studio_id):
        assert credits.usable(student_id, 60) == 0
        assert credits.ledger_sum(student_id) == 0
        sent = [(r.amount_minor, r.status) for r in db.session.scalars(select(Refund))]
        if outcomes["refund"] == "done":  # the refund took the last credit: its share went back, once
            assert sent == [(3333, RefundStatus.SUCCEEDED)] and outcomes["book"] == "409 no_credit"
        else:  # the booking spent it first: no money moved
            assert sent == [] and stripe_standin.store.refunds == {}
        db.session.commit()
    ledger_ok(app, studio_id)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
@pytest.mark.parametrize("app_overrides", [ENGINE])
def test_two_clicks_at_once_refund_once(app, people, stripe_standin, backend):
    student = log_in(app, "learner@example.com")
    _purchase_id, lot_id = buy_pack(app, stripe_standin, student)
    outcomes = _at_once(app, people["studio_id"], {"first": _refund(lot_id, "3:10000"),
                                                   "second": _refund(lot_id, "3:10000")})
    drain(app)
    # the second finds nothing left, before taking the lock (a stale page) or under it
    assert sorted(outcomes.values()) in (["409 conflict", "done"], ["409 no_credit", "done"]), outcomes
    assert [r["amount"] for r in stripe_standin.store.refunds.values()] == [10000]
    with app.app_context(), tenancy.scoped(people["studio_id"]):
        assert credits.usable(people["student_id"], 60) == 0
        assert len(db.session.scalars(select(CreditEntry).where(CreditEntry.kind == CreditKind.REFUND)).all()) == 1
    ledger_ok(app, people["studio_id"])
