"""The admin's bookings list: filters in the studio's dates, stable pages, the CSV of the same set, the JSON API,
and one booking's timeline."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import yaml

from portal import tenancy
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import db
from portal.models import Role, Studio
from tests.admin.bookings_support import add_booking, days_ahead, local, page_form, paid_lesson
from tests.admin.conftest import STUDIO, bearer
from tests.factories import make_user
from tests.payments.helpers import drain

LIST = f"{STUDIO}/admin/bookings"


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'/admin/bookings/(\d+)"', html)]


def _people(app, world):
    with app.app_context(), tenancy.all_tenants():
        studio = db.session.get(Studio, world.a.id)
        make_user("zoe.obrien@example.com", roles=[(studio, Role.STUDENT)]).name = "Zoë O'Brien"
        make_user("percent@example.com", roles=[(studio, Role.STUDENT)]).name = "100% Sure"
        db.session.commit()


def test_filters_by_local_dates_resource_status_and_student(app, admin, world):
    _people(app, world)
    day = days_ahead(world, 4)
    late_evening = add_booking(app, world, local(world, day, "17:30"))  # 17:30 New York is the next day in UTC
    morning = add_booking(app, world, local(world, day, "09:00"), resource="drums", email="zoe.obrien@example.com")
    next_day = add_booking(app, world, local(world, day + timedelta(days=1), "09:00"), status="cancelled",
                           email="percent@example.com")
    held = add_booking(app, world, local(world, day + timedelta(days=1), "10:00"), status="held",
                       email="rival@example.com")

    def listed(**args):
        response = admin.get(LIST, query_string=args)
        assert response.status_code == 200, response.get_data(as_text=True)
        return _ids(response.get_data(as_text=True))

    assert listed() == [held, next_day, late_evening, morning]  # latest start first
    assert listed(**{"from": day.isoformat(), "to": day.isoformat()}) == [late_evening, morning]
    assert listed(**{"from": (day + timedelta(days=1)).isoformat()}) == [held, next_day]
    assert listed(resource="drums") == [morning]
    assert listed(status="cancelled") == [next_day]
    assert listed(status="held", resource="piano") == [held]
    assert listed(q="ZOË") == [morning]  # name, any case
    assert listed(q="OBRIEN@") == [morning]  # email, any case
    assert listed(q="100%") == [next_day]  # % is a character, not a wildcard
    assert listed(q="%") == [next_day]
    assert listed(q="nobody") == []
    assert "No bookings match these filters" in admin.get(LIST, query_string={"q": "nobody"}).get_data(as_text=True)


def test_bad_filters_are_a_422_that_keeps_what_was_typed(admin, world):
    response = admin.get(LIST, query_string={"from": "2026-02-30", "status": "lost", "resource": "tuba",
                                             "q": "keep me"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Dates look like 2026-12-31" in html and "Status is one of" in html and "No such room" in html
    assert 'value="keep me"' in html and 'value="2026-02-30"' in html
    backwards = admin.get(LIST, query_string={"from": "2026-05-02", "to": "2026-05-01"})
    assert backwards.status_code == 422 and "comes before" in backwards.get_data(as_text=True)
    assert admin.get(LIST, query_string={"page": "0"}).status_code == 422
    assert admin.get(f"{LIST}.csv", query_string={"to": "x"}).status_code == 422


def test_pages_are_stable_and_their_links_keep_the_filters(app, admin, world):
    day = days_ahead(world, 3)
    made = []
    for i in range(30):  # 15 each on piano and drums, several sharing a start time
        made.append(add_booking(app, world, local(world, day + timedelta(days=i // 2), "10:00"),
                                resource="piano" if i % 2 else "drums"))
    drums = [b for i, b in enumerate(made) if i % 2 == 0]
    first = admin.get(LIST, query_string={"resource": "drums", "per_page": "10"}).get_data(as_text=True)
    assert "Bookings 1–10 of 15" in first and "Page 1 of 2" in first
    next_link = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert "resource=drums" in next_link and "page=2" in next_link and "per_page=10" in next_link
    second = admin.get(next_link).get_data(as_text=True)
    assert _ids(first) + _ids(second) == list(reversed(drums))
    everything = _ids(admin.get(LIST).get_data(as_text=True)) + _ids(admin.get(LIST + "?page=2")
                                                                    .get_data(as_text=True))
    assert sorted(everything) == sorted(made) and len(set(everything)) == 30
    past_the_end = admin.get(LIST, query_string={"page": "9"}).get_data(as_text=True)
    assert "There is no page 9" in past_the_end


def test_the_csv_holds_the_whole_filtered_set_with_decimal_money_and_no_formulas(app, client, admin, world,
                                                                                  stripe_standin):
    with app.app_context(), tenancy.all_tenants():
        studio = db.session.get(Studio, world.a.id)
        for email, name in (("eq@example.com", "=HYPERLINK(\"http://evil\",\"x\")"), ("plus@example.com", "+1+1"),
                            ("at@example.com", "@SUM(A1)"), ("minus@example.com", "-2+3")):
            make_user(email, roles=[(studio, Role.STUDENT)]).name = name
        db.session.commit()
    day = days_ahead(world, 5)
    paid = paid_lesson(app, client, stripe_standin, world, local(world, day, "10:00"))
    refund = admin.post(f"{STUDIO}/admin/bookings/{paid}/refund",
                        data={"csrf_token": admin.csrf, "amount": "12.5", "note": "late start",
                              **page_form(admin, paid)})
    assert refund.status_code == 303
    drain(app)
    for hour, email in enumerate(("eq@example.com", "plus@example.com", "at@example.com", "minus@example.com")):
        add_booking(app, world, local(world, day, f"{12 + hour}:00"), resource="drums", email=email,
                    package="lesson-30")
    for i in range(30):  # more than a page, on another day
        add_booking(app, world, local(world, day + timedelta(days=1 + i // 8), f"{9 + i % 8:02d}:00"))

    response = admin.get(f"{LIST}.csv", query_string={"from": day.isoformat(), "to": day.isoformat()})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["reference", "date and time (America/New_York)", "start (UTC, ISO 8601)", "duration (min)",
                       "package", "resource", "student name", "email", "status", "price", "paid", "refunded",
                       "currency"]
    assert len(rows) == 1 + 5
    paid_row = next(r for r in rows if r[0] == f"#{paid}")
    start = local(world, day, "10:00")
    assert paid_row == [f"#{paid}", f"{day.isoformat()} 10:00", start.astimezone(utcnow().tzinfo).isoformat()
                        .replace("+00:00", "Z"), "60", "60-minute lesson", "Piano", "Student",
                        "student@example.com", "confirmed", "65.00", "65.00", "12.50", "USD"]
    names = {r[7]: r[6] for r in rows[1:]}
    assert names["eq@example.com"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert names["plus@example.com"] == "'+1+1" and names["at@example.com"] == "'@SUM(A1)"
    assert names["minus@example.com"] == "'-2+3"
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)
    unpaid = next(r for r in rows if r[7] == "plus@example.com")
    assert unpaid[9:12] == ["35.00", "0.00", "0.00"]

    everything = list(csv.reader(io.StringIO(admin.get(f"{LIST}.csv").get_data(as_text=True))))
    assert len(everything) == 1 + 35  # all pages, not the first 25
    drums = list(csv.reader(io.StringIO(admin.get(f"{LIST}.csv?resource=drums").get_data(as_text=True))))
    assert len(drums) == 1 + 4 and {r[5] for r in drums[1:]} == {"Drums"}


def test_the_list_page_links_the_csv_with_the_same_filters(admin, world):
    html = admin.get(LIST, query_string={"status": "confirmed", "q": "stu"}).get_data(as_text=True)
    link = re.search(r'href="([^"]*bookings\.csv[^"]*)"', html).group(1).replace("&amp;", "&")
    assert "status=confirmed" in link and "q=stu" in link and "page" not in link


# --- the JSON API -----------------------------------------------------------------------------------------------

SPEC = yaml.safe_load((PROJECT_ROOT / "docs" / "openapi.yaml").read_text())


def test_the_api_lists_the_same_filtered_pages(app, client, world, make_api_key):
    day = days_ahead(world, 4)
    ids = [add_booking(app, world, local(world, day, f"{9 + i:02d}:00"), resource="drums") for i in range(3)]
    add_booking(app, world, local(world, day, "09:00"), status="cancelled")
    token = make_api_key(["bookings:read"])
    response = client.get("/s/melody-and-meter/api/admin/bookings?resource=drums&per_page=2", headers=bearer(token))
    body = response.get_json()
    assert response.status_code == 200
    assert (body["total"], body["page"], body["per_page"], body["pages"]) == (3, 1, 2, 2)
    assert [b["id"] for b in body["bookings"]] == [ids[2], ids[1]]
    first = body["bookings"][0]
    assert first["resource"] == {"slug": "drums", "name": "Drums"} and first["status"] == "confirmed"
    assert first["student"] == {"name": "Student", "email": "student@example.com"}
    assert first["start"] == local(world, day, "11:00").astimezone(utcnow().tzinfo).isoformat()
    assert (first["price_minor"], first["paid_minor"], first["currency"]) == (6500, 0, "usd")
    page2 = client.get("/s/melody-and-meter/api/admin/bookings?resource=drums&per_page=2&page=2",
                       headers=bearer(token)).get_json()
    assert [b["id"] for b in page2["bookings"]] == [ids[0]]
    schema = SPEC["paths"]["/s/{studio}/api/admin/bookings"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert set(schema["required"]) <= set(body)
    assert set(schema["properties"]["bookings"]["items"]["required"]) <= set(first)
    bad = client.get("/s/melody-and-meter/api/admin/bookings?status=lost", headers=bearer(token))
    assert bad.status_code == 422 and bad.get_json()["error"] == "status_invalid"
    cancelled = client.get("/s/melody-and-meter/api/admin/bookings?status=cancelled&q=STUDENT",
                           headers=bearer(token)).get_json()
    assert cancelled["total"] == 1


# --- the timeline -----------------------------------------------------------------------------------------------

def test_the_timeline_shows_everything_that_happened_oldest_first(app, client, admin, world, stripe_standin):
    day = days_ahead(world, 6)
    booking_id = paid_lesson(app, client, stripe_standin, world, local(world, day, "10:00"))
    drain(app)  # the confirmation email
    moved = admin.post(f"{STUDIO}/admin/bookings/{booking_id}/move",
                       data={"csrf_token": admin.csrf, "resource": "drums", "note": "Piano tuning",
                             "start": local(world, day, "14:00").isoformat(), **page_form(admin, booking_id)})
    assert moved.status_code == 303
    drain(app)
    refunded = admin.post(f"{STUDIO}/admin/bookings/{booking_id}/refund",
                          data={"csrf_token": admin.csrf, "amount": "5", "note": "Sorry for the move",
                                **page_form(admin, booking_id)})
    assert refunded.status_code == 303
    drain(app)
    html = admin.get(f"{STUDIO}/admin/bookings/{booking_id}").get_data(as_text=True)
    timeline = html[html.index('id="timeline"'):]
    kinds = re.findall(r'data-kind="(\w+)"', timeline)
    assert {"hold", "checkout", "webhook", "payment", "move", "refund", "email", "audit"} <= set(kinds)
    stamps = re.findall(r'<time datetime="([^"]+)"', timeline)
    assert stamps == sorted(stamps) and len(stamps) == len(kinds)
    assert kinds[0] == "hold" and kinds.index("checkout") < kinds.index("webhook") < kinds.index("move")
    assert kinds.index("move") < kinds.index("refund")
    for text in ("Stripe event checkout.session.completed", "1 attempt", "Email: confirmation",
                 "Email: reschedule", "booking.move by admin@example.com", "note: Piano tuning",
                 "refund.create by admin@example.com", "Refund of $5.00 succeeded", "Payment received",
                 "from Piano", "to Drums", "student@example.com"):
        assert text in timeline, text
    assert "badge status-processed" in timeline and "badge status-sent" in timeline
    # Studio-local times: 14:00 New York reads as 2:00 PM.
    assert "2:00 PM" in timeline
