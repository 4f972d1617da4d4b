"""The configuration pages: the published version and history, the draft editor (field errors next to their
fields, typed values kept), preview for the admin only, publish (409 when stale or twice), diff, rollback,
discard, and reviewing proposals."""
from __future__ import annotations

import re

from sqlalchemy import select

from portal.clock import utcnow
from portal.extensions import db
from portal.models import ConfigProposal
from portal.services import configuration
from portal.services.configuration import proposals
from tests.admin.configuration_helpers import (
    ADMIN,
    audit_rows,
    editor_fields,
    new_draft,
    post_action,
    publish,
    published,
    save_draft,
    studio_scope,
    version_rows,
)
from tests.admin.conftest import STUDIO, bearer, log_in

CONFIG = f"{STUDIO}/admin/configuration"


def _html(response) -> str:
    return response.get_data(as_text=True)


def _theme_version(html: str) -> int:
    return int(re.search(r'href="/s/melody-and-meter/theme/(\d+)\.css"', html).group(1))


def test_the_landing_page_shows_the_published_version_the_history_and_what_waits(app, admin, world):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}}, note="Try serif")
    with studio_scope(app, world.a.id) as studio:
        proposal = proposals.propose(studio, {"policy": {"max_reschedules": 5}}, actor=ADMIN, api_key_id=None,
                                     note="More moves", now=utcnow()).id
    html = _html(admin.get(CONFIG))
    assert "Published: version 1" in html
    assert 'class="config-primary">#4b3fa7<' in html
    versions = html[html.index('id="versions"'):]
    assert f'id="version-{draft}"' in versions and "Try serif" in versions and "admin@example.com" in versions
    assert f'href="{CONFIG}/versions/{draft}"' in versions
    assert f"{CONFIG}/diff?from=1&amp;to={draft}" in versions
    assert f'id="draft-{draft}"' in html and f"{CONFIG}/versions/{draft}/edit" in html
    pending = html[html.index('id="pending-proposals"'):]
    assert f"{CONFIG}/proposals/{proposal}" in pending and "More moves" in pending
    nav = html[html.index('class="admin-nav"'):html.index("</nav>", html.index('class="admin-nav"'))]
    assert 'aria-current="page">Configuration<' in nav and "API keys" in nav and "Audit log" in nav


def test_saving_the_editor_makes_a_draft_the_students_do_not_see(app, admin, world):
    response = save_draft(admin, {"branding.primary_color": "#D0312D", "booking.min_notice_minutes": "60",
                                  "policy.late_cancel_makeup": "1", "packages.lesson-30.visible": ""},
                          note="Red for the spring", drop=("packages.lesson-30.visible",))
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{CONFIG}/versions/2")
    assert version_rows(app, world.a.id) == {1: "published", 2: "draft"}
    with studio_scope(app, world.a.id) as studio:
        document = configuration.get_version(studio, 2).document
    assert (document["branding"]["primary_color"], document["booking"]["min_notice_minutes"],
            document["policy"]["late_cancel_makeup"], document["packages"]["lesson-30"]["visible"]) == (
        "#d0312d", 60, True, False)
    assert published(app, world.a.id)[0] == 1
    row = audit_rows(app, world.a.id)[-1]
    assert (row.action, row.note) == ("config.draft", "Red for the spring")
    assert {c["path"] for c in row.after["changes"]} == {"branding.primary_color", "booking.min_notice_minutes",
                                                          "policy.late_cancel_makeup", "packages.lesson-30.visible"}
    page = _html(admin.get(f"{CONFIG}/versions/2"))
    assert 'data-path="branding.primary_color"' in page and "#d0312d" in page


def test_the_colour_picker_counts_when_the_text_field_was_left_alone(app, admin, world):
    save_draft(admin, {"branding.primary_color.picker": "#00ff00"})
    with studio_scope(app, world.a.id) as studio:
        assert configuration.get_version(studio, 2).document["branding"]["primary_color"] == "#00ff00"


def test_field_errors_show_next_to_their_fields_and_keep_what_was_typed(app, admin, world):
    response = save_draft(admin, {"branding.primary_color": "#12345", "branding.display_name": "  ",
                                  "booking.min_notice_minutes": "two hours", "booking.hold_minutes": "20",
                                  "branding.logo_url": "http://insecure.example.com/x.png",
                                  "policy.late_cancel_fee_percent": "150", "branding.welcome_text": "Hello\nall"},
                          note="")
    assert response.status_code == 422
    html = _html(response)
    for path, message in [("branding.primary_color", "must be a colour written #rrggbb"),
                          ("branding.display_name", "is required"),
                          ("booking.min_notice_minutes", "must be a whole number"),
                          ("booking.hold_minutes", "must be at least 30"),
                          ("branding.logo_url", "must be an https:// address"),
                          ("policy.late_cancel_fee_percent", "must be at most 100"),
                          ("note", "Write a note saying why")]:
        error_id = path.replace(".", "-") + "-error"
        assert re.search(rf'<span class="field-error" id="{re.escape(error_id)}" data-field="{re.escape(path)}">'
                         rf'{re.escape(message)}', html, re.IGNORECASE), path
        field = re.search(rf'<(?:input|textarea)[^>]*name="{re.escape(path)}"[^>]*>', html).group(0)
        assert f'aria-describedby="{error_id}"' in field and 'aria-invalid="true"' in field, path
    for typed in ('value="#12345"', 'value="two hours"', 'value="20"', 'value="150"',
                  'value="http://insecure.example.com/x.png"', ">Hello\nall</textarea>"):
        assert typed in html
    assert "nothing was saved" in html
    assert version_rows(app, world.a.id) == {1: "published"}


def test_continuing_a_draft_changes_it_in_place(app, admin, world):
    save_draft(admin, {"branding.font": "serif"})
    fields = editor_fields(admin, draft=2)
    assert fields["branding.font"] == "serif"
    response = save_draft(admin, {"branding.accent_color": "#101010"}, draft=2, note="Darker accent")
    assert response.status_code == 303
    assert version_rows(app, world.a.id) == {1: "published", 2: "draft"}
    with studio_scope(app, world.a.id) as studio:
        branding = configuration.get_version(studio, 2).document["branding"]
    assert (branding["font"], branding["accent_color"]) == ("serif", "#101010")
    assert audit_rows(app, world.a.id)[-1].action == "config.edit_draft"


def test_preview_shows_the_draft_to_this_admin_only(app, admin, world):
    student = app.test_client()
    log_in(student, "student@example.com")
    save_draft(admin, {"branding.display_name": "Draft Name", "branding.primary_color": "#123456",
                       "packages.lesson-60.featured": "1"})
    response = post_action(admin, "/configuration/versions/2/preview")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"{STUDIO}/")
    mine = _html(admin.get(f"{STUDIO}/"))
    assert "Preview of draft version 2" in mine and "Draft Name" in mine and _theme_version(mine) == 2
    theirs = _html(student.get(f"{STUDIO}/"))
    assert "Preview of draft" not in theirs and "Draft Name" not in theirs and _theme_version(theirs) == 1
    assert "Featured" not in theirs
    public = app.test_client().get(f"{STUDIO}/api/config").get_json()
    assert (public["version"], public["config"]["branding"]["display_name"]) == (1, "Melody And Meter")
    assert "#123456" not in app.test_client().get(f"{STUDIO}/theme/1.css").get_data(as_text=True)
    assert "#123456" in admin.get(f"{STUDIO}/theme/2.css").get_data(as_text=True)
    stop = admin.post(f"{STUDIO}/admin/preview/stop", data={"csrf_token": admin.csrf})
    assert stop.status_code == 303
    assert "Preview of draft" not in _html(admin.get(f"{STUDIO}/"))


def test_publishing_from_the_page_reaches_students_on_their_next_page(app, admin, world):
    student = app.test_client()
    log_in(student, "student@example.com")
    save_draft(admin, {"branding.primary_color": "#0b6e4f"})
    post_action(admin, "/configuration/versions/2/preview")
    response = post_action(admin, "/configuration/versions/2/publish", note="Green")
    assert response.status_code == 303 and response.headers["Location"].endswith(CONFIG)
    html = _html(student.get(f"{STUDIO}/"))
    assert _theme_version(html) == 2
    assert "--brand: #0b6e4f;" in app.test_client().get(f"{STUDIO}/theme/2.css").get_data(as_text=True)
    assert "Preview of draft" not in _html(admin.get(f"{STUDIO}/"))  # the preview ended with the publish
    assert version_rows(app, world.a.id) == {1: "archived", 2: "published"}


def test_publishing_needs_a_note(app, admin, world):
    save_draft(admin, {"branding.font": "mono"})
    response = post_action(admin, "/configuration/versions/2/publish", note="  ")
    assert response.status_code == 422
    html = _html(response)
    assert re.search(r'<span class="field-error" id="publish-error" data-field="publish">Write a note saying why', html)
    assert version_rows(app, world.a.id) == {1: "published", 2: "draft"}


def test_a_stale_draft_and_a_second_publish_get_a_clear_409_page(app, admin, world):
    save_draft(admin, {"branding.font": "serif"})
    save_draft(admin, {"branding.font": "mono"})
    assert post_action(admin, "/configuration/versions/3/publish", note="Mono").status_code == 303
    stale = post_action(admin, "/configuration/versions/2/publish", note="Serif")
    assert stale.status_code == 409
    html = _html(stale)
    assert "<h1>Not published</h1>" in html
    assert "Version 3 was published after this draft was made from version 1" in html
    assert f'href="{CONFIG}/edit"' in html
    again = post_action(admin, "/configuration/versions/3/publish", note="Again")
    assert again.status_code == 409 and "only a draft can be published, and only once" in _html(again)
    assert version_rows(app, world.a.id) == {1: "archived", 2: "draft", 3: "published"}
    actions = [r.action for r in audit_rows(app, world.a.id)]
    assert actions.count("config.publish_refused") == 2


def test_the_diff_page_names_each_changed_field(app, admin, world):
    draft = new_draft(app, world.a.id, {"branding": {"accent_color": "#000000"}, "booking": {"buffer_minutes": 15}})
    html = _html(admin.get(f"{CONFIG}/diff?from=1&to={draft}"))
    assert re.findall(r'<tr data-path="([^"]+)">', html) == ["booking.buffer_minutes", "branding.accent_color"]
    assert "2 fields differ." in html
    row = html[html.index('data-path="branding.accent_color"'):]
    assert row.index("#c8553d") < row.index("#000000")
    same = _html(admin.get(f"{CONFIG}/diff?from=1&to=1"))
    assert "These versions are the same." in same
    for bad in ("one", "%C2%B2", "9" * 5000, "-1", "0"):
        assert admin.get(f"{CONFIG}/diff?from={bad}&to=2").status_code == 422, bad
    assert admin.get(f"{CONFIG}/diff?from=1&to=99").status_code == 404


def test_rollback_from_the_page_publishes_a_copy(app, admin, world):
    publish(app, world.a.id, new_draft(app, world.a.id, {"branding": {"primary_color": "#ff0000"}}))
    page = _html(admin.get(f"{CONFIG}/versions/1"))
    assert 'id="rollback"' in page
    response = post_action(admin, "/configuration/versions/1/rollback", note="Back to purple")
    assert response.status_code == 303
    version, document = published(app, world.a.id)
    assert (version, document["branding"]["primary_color"]) == (3, "#4b3fa7")
    assert version_rows(app, world.a.id) == {1: "archived", 2: "archived", 3: "published"}
    assert [r.action for r in audit_rows(app, world.a.id)][-2:] == ["config.rollback",
                                                                    "configuration_version.publish"]
    assert 'id="rollback"' not in _html(admin.get(f"{CONFIG}/versions/3"))  # the published one


def test_discarding_a_draft(app, admin, world):
    save_draft(admin, {"branding.font": "serif"})
    post_action(admin, "/configuration/versions/2/preview")
    response = post_action(admin, "/configuration/versions/2/discard", note="Changed my mind")
    assert response.status_code == 303
    assert version_rows(app, world.a.id) == {1: "published", 2: "archived"}
    assert "Preview of draft" not in _html(admin.get(f"{STUDIO}/"))
    assert post_action(admin, "/configuration/versions/2/publish", note="x").status_code == 409
    assert post_action(admin, "/configuration/versions/2/rollback", note="x").status_code == 409
    assert admin.get(f"{CONFIG}/versions/2/edit").status_code == 409


def test_package_display_reaches_the_students_list(app, admin, world):
    save_draft(admin, {"packages.lesson-60.position": "0", "packages.lesson-30.position": "1",
                       "packages.lesson-30.featured": "1"})
    post_action(admin, "/configuration/versions/2/publish", note="Feature the short lesson")
    html = _html(app.test_client().get(f"{STUDIO}/"))
    assert html.index("30-minute lesson") < html.index("60-minute lesson")  # featured first
    save_draft(admin, {}, drop=("packages.lesson-30.visible",))
    post_action(admin, "/configuration/versions/3/publish", note="Hide it")
    html = _html(app.test_client().get(f"{STUDIO}/"))
    assert "30-minute lesson" not in html and "60-minute lesson" in html


def _proposal(app, world, changes, note="From the assistant") -> int:
    with studio_scope(app, world.a.id) as studio:
        return proposals.propose(studio, changes, actor=ADMIN, api_key_id=None, note=note, now=utcnow()).id


def test_a_proposal_is_reviewed_in_the_diff_view_and_approved_into_a_draft(app, admin, world):
    proposal = _proposal(app, world, {"policy": {"cancel_window_hours": 48}})
    publish(app, world.a.id, new_draft(app, world.a.id, {"branding": {"font": "serif"}}))
    html = _html(admin.get(f"{CONFIG}/proposals/{proposal}"))
    assert "Changes against version 1, which it was made from" in html
    assert "against the published version (2)" in html and "approving lays" in html
    assert html.count('data-path="policy.cancel_window_hours"') == 2 and 'data-path="branding.font"' not in html
    missing = post_action(admin, f"/configuration/proposals/{proposal}/approve", note="", then="draft")
    assert missing.status_code == 422 and 'id="note-error"' in _html(missing)
    response = post_action(admin, f"/configuration/proposals/{proposal}/approve", note="Fine", then="draft")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"{CONFIG}/versions/3")
    assert version_rows(app, world.a.id) == {1: "archived", 2: "published", 3: "draft"}
    again = post_action(admin, f"/configuration/proposals/{proposal}/approve", note="Again", then="publish")
    assert again.status_code == 409 and "already approved" in _html(again)
    assert version_rows(app, world.a.id) == {1: "archived", 2: "published", 3: "draft"}


def test_a_proposal_approved_and_published_at_once(app, admin, world):
    proposal = _proposal(app, world, {"branding": {"accent_color": "#222222"}})
    response = post_action(admin, f"/configuration/proposals/{proposal}/approve", note="Ship it", then="publish")
    assert response.status_code == 303
    version, document = published(app, world.a.id)
    assert (version, document["branding"]["accent_color"]) == (2, "#222222")
    with studio_scope(app, world.a.id):
        row = db.session.scalar(select(ConfigProposal))
        assert (row.state.value, row.draft_version, row.decision_note) == ("approved", 2, "Ship it")


def test_rejecting_a_proposal(app, admin, world):
    proposal = _proposal(app, world, {"branding": {"accent_color": "#222222"}})
    assert post_action(admin, f"/configuration/proposals/{proposal}/reject", note="").status_code == 422
    response = post_action(admin, f"/configuration/proposals/{proposal}/reject", note="Too dark")
    assert response.status_code == 303
    assert post_action(admin, f"/configuration/proposals/{proposal}/reject", note="x").status_code == 409
    assert post_action(admin, f"/configuration/proposals/{proposal}/approve", note="x").status_code == 409
    assert version_rows(app, world.a.id) == {1: "published"}
    html = _html(admin.get(f"{CONFIG}/proposals/{proposal}"))
    assert "rejected" in html and "Too dark" in html and 'id="approve"' not in html


def test_a_keys_proposal_is_approved_by_an_admin_on_the_page(app, admin, world, make_api_key):
    token = make_api_key(["config:propose"], name="assistant")
    answer = app.test_client().post(f"{STUDIO}/api/admin/config/proposals", headers=bearer(token),
                                    json={"config": {"branding": {"font": "rounded"}}, "note": "Friendlier"})
    proposal = answer.get_json()["proposal"]
    landing = _html(admin.get(CONFIG))
    assert f"{CONFIG}/proposals/{proposal}" in landing and "assistant (key #1)" in landing
    response = post_action(admin, f"/configuration/proposals/{proposal}/approve", note="Yes", then="publish")
    assert response.status_code == 303
    version, document = published(app, world.a.id)
    assert (version, document["branding"]["font"]) == (2, "rounded")


def test_platform_staff_see_the_pages_without_their_forms(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    ops = app.test_client()
    log_in(ops, "ops@example.com")
    page = _html(ops.get(f"{CONFIG}/versions/{draft}"))
    assert "nothing can be changed here" in page and 'id="publish"' not in page and 'id="discard"' not in page
    assert 'id="rollback"' not in _html(ops.get(f"{CONFIG}/versions/1"))
    assert 'name="then"' not in _html(ops.get(f"{CONFIG}/edit"))
    assert "Create key" not in _html(ops.get(f"{STUDIO}/admin/api-keys"))
