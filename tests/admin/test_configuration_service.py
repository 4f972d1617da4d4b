"""The configuration service: validation, drafts, publishing once, stale drafts, rollback, diffs, the per-app
cache of published documents, proposals and the audit trail they leave."""
from __future__ import annotations

import importlib

import pytest
from sqlalchemy import select, update

from portal.clock import utcnow
from portal.extensions import db
from portal.models import AuditEntry, ConfigProposal, ConfigState, ConfigVersion, Studio
from portal.services import configuration
from portal.services.configuration import proposals, schema
from portal.services.errors import Conflict
from tests.admin.configuration_helpers import (
    ADMIN,
    audit_rows,
    new_draft,
    publish,
    published,
    studio_scope,
    version_rows,
)
from tests.conftest import build_app, empty_tables

# The module, not the function of the same name that the package exports.
versions = importlib.import_module("portal.services.configuration.versions")
BRANDING = {"display_name": "Studio", "primary_color": "#112233", "accent_color": "#445566"}


# --- the document ---------------------------------------------------------------------------------------------

def test_a_minimal_document_gets_every_default():
    document = schema.validate({"branding": BRANDING})
    assert document["booking"] == {"min_notice_minutes": 120, "slot_interval_minutes": 30, "buffer_minutes": 10,
                                   "hold_minutes": 30, "horizon_days": 90, "series_max_weeks": 16,
                                   "waitlist_offer_minutes": 120, "makeup_valid_days": 90}
    assert document["branding"]["font"] == "system" and document["branding"]["logo_url"] == ""


@pytest.mark.parametrize("value", ["#aabbcc\n", "#aabbcc\r", "\n#aabbcc", "#aabbc", "#aabbccd", "aabbcc", "red",
                                   "#aabbcc;}", "rgb(1,2,3)", "#aabbcc</style>", " #aabbcc x"])
def test_a_colour_is_exactly_six_hex_digits(value):
    with pytest.raises(schema.InvalidConfig) as refused:
        schema.validate({"branding": {**BRANDING, "primary_color": value}})
    assert refused.value.fields == {"branding.primary_color": "must be a colour written #rrggbb, like #3b2f5c"}


def test_colours_are_stored_in_lower_case():
    assert schema.validate({"branding": {**BRANDING, "accent_color": "#ABCDEF"}})["branding"]["accent_color"] == \
        "#abcdef"


@pytest.mark.parametrize("name,why", [("   ", "is required"), ("", "is required"), ("a" * 81, "at most 80"),
                                      ("Two\nlines", "one line"), ("Tab\there", "one line"),
                                      ("Sep\u2028arator", "one line"), ("C1\x85", "one line")])
def test_the_display_name_is_one_short_line(name, why):
    with pytest.raises(schema.InvalidConfig) as refused:
        schema.validate({"branding": {**BRANDING, "display_name": name}})
    assert why in refused.value.fields["branding.display_name"]


@pytest.mark.parametrize("url", ["http://cdn.example.com/logo.png", "javascript:alert(1)", "https://", "//cdn.x/y",
                                 "https://cdn.example.com/a b.png", 'https://cdn.example.com/"onerror=x',
                                 "https://cdn.example.com/a'.png", "https://cdn.example.com/a).png",
                                 "https://cdn.example.com/a\nb.png", "https://cdn.example.com/a\x00b.png",
                                 "https://cdn.example.com/" + "a" * 500, "data:image/png;base64,AAAA"])
def test_the_logo_is_a_plain_https_address(url):
    with pytest.raises(schema.InvalidConfig) as refused:
        schema.validate({"branding": {**BRANDING, "logo_url": url}})
    assert "https://" in refused.value.fields["branding.logo_url"]


def test_the_welcome_text_keeps_line_breaks_and_refuses_control_characters():
    ok = schema.validate({"branding": {**BRANDING, "welcome_text": "Hello\r\nthere\rfriend "}})
    assert ok["branding"]["welcome_text"] == "Hello\nthere\nfriend"
    with pytest.raises(schema.InvalidConfig) as refused:
        schema.validate({"branding": {**BRANDING, "welcome_text": "bell\x07"}})
    assert list(refused.value.fields) == ["branding.welcome_text"]


@pytest.mark.parametrize("minutes,ok", [(29, False), (30, True), (1439, True), (1440, False)])
def test_a_hold_lasts_within_checkouts_limits_including_the_portals_extra_minute(minutes, ok):
    from datetime import timedelta

    from portal.services.checkout import hold_expiry

    document = {"branding": BRANDING, "booking": {"hold_minutes": minutes}}
    if ok:
        schema.validate(document)
        now = utcnow()
        assert timedelta(minutes=30) < hold_expiry(now, minutes) - now <= timedelta(hours=24)
    else:
        with pytest.raises(schema.InvalidConfig) as refused:
            schema.validate(document)
        assert list(refused.value.fields) == ["booking.hold_minutes"]


def test_every_problem_is_named_by_its_path():
    with pytest.raises(schema.InvalidConfig) as refused:
        schema.validate({"branding": {**BRANDING, "font": "comic"}, "booking": {"buffer_minutes": "10",
                         "slot_interval_minutes": 7, "min_notice_minutes": -1}, "policy": {"late_cancel_makeup": 1},
                         "packages": {"Bad Slug": {}}, "colour": "#fff"})
    assert refused.value.fields == {
        "branding.font": "must be one of system, humanist, serif, rounded or mono",
        "booking.min_notice_minutes": "must be at least 0",
        "booking.slot_interval_minutes": "must be one of 5, 10, 15, 20, 30 or 60",
        "booking.buffer_minutes": "must be a whole number",
        "policy.late_cancel_makeup": "must be true or false",
        "packages.Bad Slug": "is not a package slug (lower-case letters, digits and dashes)",
        "colour": "is not a setting",
    }


def test_the_diff_names_each_changed_field_and_only_those():
    before = schema.validate({"branding": BRANDING, "packages": {"a": {"position": 0}}})
    after = schema.merge(before, {"branding": {"font": "serif"}, "policy": {"max_reschedules": 5},
                                  "packages": {"a": {"featured": True}, "b": {"position": 1}}})
    assert schema.diff(before, after) == [
        {"path": "branding.font", "before": "system", "after": "serif"},
        {"path": "packages.a.featured", "before": False, "after": True},
        {"path": "packages.b.position", "before": None, "after": 1},
        {"path": "policy.max_reschedules", "before": 2, "after": 5},
    ]
    assert schema.diff(after, after) == []
    empty = schema.validate({"branding": BRANDING})
    assert [c["path"] for c in schema.diff(empty, before)] == ["packages.a.featured", "packages.a.position",
                                                                "packages.a.visible"]


# --- versions -------------------------------------------------------------------------------------------------

def test_publishing_writes_the_rules_onto_the_studio_row_and_archives_the_old_version(app, world):
    draft = new_draft(app, world.a.id, {"booking": {"min_notice_minutes": 45, "buffer_minutes": 5},
                                        "policy": {"cancel_window_hours": 12, "late_cancel_makeup": True}})
    publish(app, world.a.id, draft)
    with studio_scope(app, world.a.id) as studio:
        assert (studio.config_version, studio.min_notice_minutes, studio.buffer_minutes, studio.cancel_window_hours,
                studio.late_cancel_makeup) == (draft, 45, 5, 12, True)
    assert version_rows(app, world.a.id) == {1: "archived", draft: "published"}


def test_a_draft_is_published_once(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    publish(app, world.a.id, draft)
    with pytest.raises(Conflict) as refused:
        publish(app, world.a.id, draft)
    assert "only a draft can be published" in refused.value.message
    assert version_rows(app, world.a.id) == {1: "archived", draft: "published"}
    actions = [row.action for row in audit_rows(app, world.a.id)]
    assert actions[-2:] == ["configuration_version.publish", "config.publish_refused"]


def test_a_draft_made_before_another_publish_is_refused_and_changes_nothing(app, world):
    older = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    newer = new_draft(app, world.a.id, {"branding": {"font": "mono"}})
    publish(app, world.a.id, newer)
    with pytest.raises(Conflict) as refused:
        publish(app, world.a.id, older)
    assert f"Version {newer} was published after this draft was made from version 1" in refused.value.message
    assert published(app, world.a.id)[1]["branding"]["font"] == "mono"
    assert version_rows(app, world.a.id) == {1: "archived", older: "draft", newer: "published"}


def test_a_draft_changed_while_it_is_published_is_refused(app, world, monkeypatch):
    """Publishing writes the draft it read onto the studio row; if the draft changed meanwhile, nothing is
    published (else the studio's rules and the published document would disagree)."""
    draft = new_draft(app, world.a.id, {"booking": {"buffer_minutes": 5}})
    real = versions._project

    def edited_meanwhile(*args, **kwargs):
        db.session.execute(update(ConfigVersion).where(ConfigVersion.version == draft)
                           .values(updated_at=utcnow()).execution_options(synchronize_session=False))
        return real(*args, **kwargs)

    monkeypatch.setattr(versions, "_project", edited_meanwhile)
    with pytest.raises(Conflict) as refused:
        publish(app, world.a.id, draft)
    assert "changed while it was being published" in refused.value.message
    with studio_scope(app, world.a.id) as studio:
        assert (studio.config_version, studio.buffer_minutes) == (1, 0)


def test_update_draft_changes_only_a_draft(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    with studio_scope(app, world.a.id) as studio:
        row = configuration.update_draft(studio, draft, {"branding": {"accent_color": "#000000"}}, actor=ADMIN,
                                         note="darker", now=utcnow())
        assert (row.document["branding"]["font"], row.document["branding"]["accent_color"]) == ("serif", "#000000")
    publish(app, world.a.id, draft)
    with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict):
        configuration.update_draft(studio, draft, {"branding": {"font": "mono"}}, actor=ADMIN, note="x",
                                   now=utcnow())
    assert published(app, world.a.id)[1]["branding"]["font"] == "serif"


def test_rollback_restores_every_field_exactly(app, world):
    original = published(app, world.a.id)[1]
    everything = {
        "branding": {"display_name": "Changed", "primary_color": "#0a0b0c", "accent_color": "#fafbfc",
                     "logo_url": "https://cdn.example.com/logo.svg", "font": "rounded", "welcome_text": "Hi\nthere"},
        "booking": {"min_notice_minutes": 15, "slot_interval_minutes": 15, "buffer_minutes": 20, "hold_minutes": 45,
                    "horizon_days": 30},
        "policy": {"cancel_window_hours": 6, "late_cancel_fee_percent": 100, "reschedule_lead_hours": 3,
                   "max_reschedules": 9, "late_cancel_makeup": True},
        "packages": {"lesson-30": {"position": 7, "visible": False, "featured": True},
                     "lesson-60": {"position": 0, "visible": True, "featured": True}},
    }
    changed = new_draft(app, world.a.id, everything)
    publish(app, world.a.id, changed)
    assert published(app, world.a.id)[1] == schema.validate(everything)
    with studio_scope(app, world.a.id) as studio:
        row = configuration.rollback(studio, 1, actor=ADMIN, note="undo", now=utcnow())
        assert (row.version, row.state) == (changed + 1, ConfigState.PUBLISHED)
    version, document = published(app, world.a.id)
    assert (version, document) == (changed + 1, original)
    with studio_scope(app, world.a.id) as studio:
        assert configuration.diff(studio, 1, version) == []
        assert (studio.min_notice_minutes, studio.slot_interval_minutes, studio.buffer_minutes, studio.hold_minutes,
                studio.booking_horizon_days, studio.policy_snapshot()) == (
            original["booking"]["min_notice_minutes"], original["booking"]["slot_interval_minutes"],
            original["booking"]["buffer_minutes"], original["booking"]["hold_minutes"],
            original["booking"]["horizon_days"], original["policy"])
    assert version_rows(app, world.a.id) == {1: "archived", changed: "archived", changed + 1: "published"}


def test_rollback_needs_a_version_that_was_published(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    discarded = new_draft(app, world.a.id, {"branding": {"font": "mono"}})
    with studio_scope(app, world.a.id) as studio:
        configuration.discard(studio, discarded, actor=ADMIN, note="no", now=utcnow())
    for version in (draft, discarded):
        with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict) as refused:
            configuration.rollback(studio, version, actor=ADMIN, note="x", now=utcnow())
        assert "never published" in refused.value.message
    assert published(app, world.a.id)[0] == 1
    assert version_rows(app, world.a.id) == {1: "published", draft: "draft", discarded: "archived"}


def test_a_refused_rollback_leaves_no_draft_behind(app, world, monkeypatch):
    monkeypatch.setattr(versions, "_project", lambda *args, **kwargs: False)  # as if another publish came first
    with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict):
        configuration.rollback(studio, 1, actor=ADMIN, note="undo", now=utcnow())
    assert version_rows(app, world.a.id) == {1: "published"}
    assert audit_rows(app, world.a.id)[-1].action == "config.rollback_refused"


def test_two_drafts_saved_at_once_get_the_next_free_numbers(app, world, monkeypatch):
    """The number is the next free one; when another draft took it meanwhile, the unique constraint refuses it
    and the next number is tried."""
    first = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    real, calls = versions._next_version, []

    def stale_number(studio_id):
        calls.append(1)
        return first if len(calls) == 1 else real(studio_id)

    monkeypatch.setattr(versions, "_next_version", stale_number)
    second = new_draft(app, world.a.id, {"branding": {"font": "mono"}})
    assert (second, len(calls)) == (first + 1, 2)
    assert version_rows(app, world.a.id) == {1: "published", first: "draft", second: "draft"}


def test_published_documents_are_cached_per_app_not_per_process(app, world, tmp_path, app_env):
    """Two apps (two databases) with a studio of the same id and version never see each other's document."""
    publish(app, world.a.id, new_draft(app, world.a.id, {"branding": {"display_name": "First app"}}))
    assert published(app, world.a.id)[1]["branding"]["display_name"] == "First app"
    other = build_app("sqlite:///" + str(tmp_path / "other.sqlite3"), tmp_path / "other", env=app_env)
    try:
        from tests.factories import make_studio

        with other.app_context():
            studio = make_studio()
            studio_id = studio.id
            db.session.remove()
        version, document = published(other, studio_id)
        assert (studio_id, document["branding"]["display_name"]) == (world.a.id, "Melody And Meter")
    finally:
        empty_tables(other)


def test_the_audit_trail_of_a_draft_and_its_publish(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"primary_color": "#ff0000"}}, note="Redder")
    publish(app, world.a.id, draft, note="Go live")
    rows = [(r.action, r.note, r.actor_label) for r in audit_rows(app, world.a.id)][-2:]
    assert rows == [("config.draft", "Redder", "admin@example.com"),
                    ("configuration_version.publish", "Go live", "admin@example.com")]
    draft_row = audit_rows(app, world.a.id)[-2]
    assert draft_row.after["changes"] == [{"path": "branding.primary_color", "before": "#4b3fa7",
                                           "after": "#ff0000"}]


# --- proposals ------------------------------------------------------------------------------------------------

def _propose(app, studio_id, changes, note="please"):
    with studio_scope(app, studio_id) as studio:
        return proposals.propose(studio, changes, actor=ADMIN, api_key_id=None, note=note, now=utcnow()).id


def test_a_proposal_is_approved_once(app, world):
    proposal = _propose(app, world.a.id, {"policy": {"max_reschedules": 4}})
    with studio_scope(app, world.a.id) as studio:
        version = proposals.approve(studio, proposal, actor=ADMIN, note="ok", publish_now=False, now=utcnow())
    with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict) as refused:
        proposals.approve(studio, proposal, actor=ADMIN, note="again", publish_now=True, now=utcnow())
    assert refused.value.status == 409
    assert version_rows(app, world.a.id) == {1: "published", version: "draft"}
    with studio_scope(app, world.a.id):
        row = db.session.scalar(select(ConfigProposal))
        assert (row.state.value, row.draft_version, row.decision_note) == ("approved", version, "ok")


def test_a_stale_proposal_is_laid_over_the_published_version(app, world):
    proposal = _propose(app, world.a.id, {"policy": {"max_reschedules": 4}})
    publish(app, world.a.id, new_draft(app, world.a.id, {"branding": {"font": "serif"}}))
    with studio_scope(app, world.a.id) as studio:
        review = proposals.review(studio, proposal)
        assert review.stale
        assert [c["path"] for c in review.against_base] == ["policy.max_reschedules"]
        assert review.against_published == [{"path": "policy.max_reschedules", "before": 2, "after": 4}]
        version = proposals.approve(studio, proposal, actor=ADMIN, note="ok", publish_now=True, now=utcnow())
    document = published(app, world.a.id)[1]
    assert (document["branding"]["font"], document["policy"]["max_reschedules"]) == ("serif", 4)
    assert published(app, world.a.id)[0] == version


def test_an_approval_whose_publish_is_refused_changes_nothing(app, world, monkeypatch):
    proposal = _propose(app, world.a.id, {"policy": {"max_reschedules": 4}})
    monkeypatch.setattr(versions, "_project", lambda *args, **kwargs: False)
    with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict):
        proposals.approve(studio, proposal, actor=ADMIN, note="ok", publish_now=True, now=utcnow())
    assert version_rows(app, world.a.id) == {1: "published"}
    with studio_scope(app, world.a.id):
        assert db.session.scalar(select(ConfigProposal.state)).value == "pending"
        assert db.session.scalar(select(AuditEntry.action).order_by(AuditEntry.id.desc())) == \
            "config.publish_refused"


def test_rejecting_twice_is_refused(app, world):
    proposal = _propose(app, world.a.id, {"policy": {"max_reschedules": 4}})
    with studio_scope(app, world.a.id) as studio:
        proposals.reject(studio, proposal, actor=ADMIN, note="no", now=utcnow())
    with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict):
        proposals.reject(studio, proposal, actor=ADMIN, note="no again", now=utcnow())
    with studio_scope(app, world.a.id) as studio, pytest.raises(Conflict):
        proposals.approve(studio, proposal, actor=ADMIN, note="yes", publish_now=False, now=utcnow())
    assert version_rows(app, world.a.id) == {1: "published"}


def test_an_invalid_proposal_is_not_stored(app, world):
    with studio_scope(app, world.a.id) as studio, pytest.raises(schema.InvalidConfig) as refused:
        proposals.propose(studio, {"branding": {"primary_color": "red"}}, actor=ADMIN, api_key_id=None, note="",
                          now=utcnow())
    assert list(refused.value.fields) == ["branding.primary_color"]
    with studio_scope(app, world.a.id):
        assert db.session.scalar(select(ConfigProposal.id)) is None
        assert db.session.get(Studio, world.a.id).config_version == 1
