"""The audit log page: newest first, paginated, filtered by actor, entity and studio-local dates; each row says
who, what, when (studio time), before → after, and the note; another studio's rows never show."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from portal import formatting
from portal.clock import utcnow
from portal.extensions import db
from portal.services import audit
from tests.admin.configuration_helpers import new_draft, post_action, publish, save_draft
from tests.admin.conftest import STUDIO, bearer

AUDIT = f"{STUDIO}/admin/audit"


def _entries(html: str) -> list[str]:
    return re.findall(r'<li class="card audit-entry" data-action="([^"]+)">', html)


def _record(app, studio_id, *, at, action="booking.cancel", actor=audit.SYSTEM, note="", target="booking"):
    with app.app_context():
        audit.record(actor=actor, action=action, target_type=target, target_id=1, studio_id=studio_id, now=at,
                     before={"status": "confirmed"}, after={"status": "cancelled"}, note=note)
        db.session.commit()
        db.session.remove()


def test_each_row_says_who_what_when_before_after_and_the_note(app, admin, world, make_api_key):
    save_draft(admin, {"branding.primary_color": "#0b6e4f"}, note="Green for spring")
    post_action(admin, "/configuration/versions/2/publish", note="Go green")
    token = make_api_key(["config:propose"], name="assistant")
    app.test_client().post(f"{STUDIO}/api/admin/config/proposals", headers=bearer(token),
                           json={"config": {"policy": {"max_reschedules": 1}}, "note": "Fewer moves"})
    html = admin.get(AUDIT).get_data(as_text=True)
    assert _entries(html) == ["config.propose", "api_key.create", "configuration_version.publish", "config.draft"]
    entries = html.split('<li class="card audit-entry"')[1:]
    proposal, key, published, draft = entries
    assert "Proposed a configuration change" in proposal and "By <strong>assistant (key #1)</strong>" in proposal
    assert "API key</span>" in proposal and "Fewer moves" in proposal
    assert "Created an API key" in key and "By <strong>system</strong>" in key
    assert "Published a configuration version" in published and "configuration version 2" in published
    assert re.search(r"<code>status</code></th><td class=\"before\">draft</td><td class=\"after\">published</td>",
                     published)
    assert "Go green" in published and "By <strong>admin@example.com</strong>" in published
    assert re.search(r'<code>branding.primary_color</code></th><td class="before">#4b3fa7</td>'
                     r'<td class="after">#0b6e4f</td>', draft)
    assert "Green for spring" in draft
    at = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', draft)
    stamp = datetime.fromisoformat(at.group(1))
    assert at.group(2) == formatting.when(stamp, tz=world.a.tz, locale="en_US")
    assert at.group(2).endswith(("EDT", "EST"))


def test_another_studios_rows_never_show(app, admin, world):
    publish(app, world.b.id, new_draft(app, world.b.id, {"branding": {"font": "serif"}}, note="north only"),
            note="north only")
    html = admin.get(AUDIT).get_data(as_text=True)
    assert "north only" not in html and _entries(html) == []
    assert "0 entries." in html


def test_filters_by_actor_entity_and_studio_local_dates(app, admin, world):
    tz = world.a.tz
    today = utcnow().astimezone(tz).date()
    # 23:30 local on the day before yesterday is already the next day in UTC: the filter must use local days.
    late = datetime.combine(today - timedelta(days=2), time(23, 30), tz)
    _record(app, world.a.id, at=late, note="late evening")
    _record(app, world.a.id, at=late + timedelta(hours=1), note="after midnight", actor=audit.Actor.job("sweeper"))
    save_draft(admin, {"branding.font": "mono"}, note="today")
    day = (today - timedelta(days=2)).isoformat()
    html = admin.get(f"{AUDIT}?from={day}&to={day}").get_data(as_text=True)
    assert "late evening" in html and "after midnight" not in html and "today" not in html.split("audit-list")[1]
    next_day = (today - timedelta(days=1)).isoformat()
    html = admin.get(f"{AUDIT}?from={next_day}&to={next_day}").get_data(as_text=True)
    assert "after midnight" in html and "late evening" not in html
    html = admin.get(f"{AUDIT}?actor=sweeper").get_data(as_text=True)
    assert _entries(html) == ["booking.cancel"] and "after midnight" in html
    assert '<option value="sweeper" selected>' in html
    html = admin.get(f"{AUDIT}?entity=configuration%20version").get_data(as_text=True)
    assert _entries(html) == ["config.draft"]
    html = admin.get(f"{AUDIT}?entity=booking&from={today.isoformat()}").get_data(as_text=True)
    assert _entries(html) == [] and "that matches these filters" in html


def test_bad_dates_are_field_errors(app, admin, world):
    bad = admin.get(f"{AUDIT}?from=31/12/2026")
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'id="from-error"' in html and "Dates look like 2026-12-31." in html and 'value="31/12/2026"' in html
    reversed_range = admin.get(f"{AUDIT}?from=2026-06-10&to=2026-06-01")
    assert reversed_range.status_code == 422 and 'id="to-error"' in reversed_range.get_data(as_text=True)
    assert admin.get(f"{AUDIT}?from=9999-12-31").status_code == 422


def test_pages_of_fifty_newest_first_keeping_the_filters(app, admin, world):
    start = utcnow() - timedelta(hours=3)
    for i in range(60):
        _record(app, world.a.id, at=start + timedelta(minutes=i), note=f"entry {i:02d}")
    _record(app, world.a.id, at=start, note="someone else", actor=audit.Actor.job("other"))
    first = admin.get(f"{AUDIT}?actor=system").get_data(as_text=True)
    notes = re.findall(r"“entry (\d\d)”", first)
    assert notes == [f"{i:02d}" for i in range(59, 9, -1)]
    assert "Page 1 of 2" in first and "60 entries match." in first
    assert f'href="{AUDIT}?page=2&amp;actor=system" rel="next"' in first
    second = admin.get(f"{AUDIT}?page=2&actor=system").get_data(as_text=True)
    assert re.findall(r"“entry (\d\d)”", second) == [f"{i:02d}" for i in range(9, -1, -1)]
    assert "someone else" not in first + second
    assert "Page 2 of 2" in admin.get(f"{AUDIT}?page=99&actor=system").get_data(as_text=True)
    for odd in ("%C2%B2", "9" * 5000, "-3", "x"):
        assert "Page 1 of 2" in admin.get(f"{AUDIT}?page={odd}&actor=system").get_data(as_text=True), odd
