"""Versioned configuration pages: the published version at a glance, every version, the draft editor, preview,
publish, field-level diffs, rollback and proposals (`/s/<studio>/admin/configuration…`)."""
from __future__ import annotations

import re

from flask import flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select

from portal.blueprints.admin import actor, admin_action, admin_page, bp, config_form
from portal.blueprints.context import PREVIEW_KEY, set_preview
from portal.clock import utcnow
from portal.extensions import db
from portal.models import ConfigState, ConfigVersion, Package
from portal.services import configuration as config
from portal.services.configuration import display, proposals, schema
from portal.services.errors import Conflict, InvalidInput

NOTE_MISSING = "Write a note saying why: it goes in the audit log."
VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


def _packages() -> list[Package]:
    return list(db.session.scalars(select(Package).order_by(Package.id)))


def _version(version: int) -> ConfigVersion:
    return config.get_version(g.studio, version)


def _note() -> str:
    return (request.form.get("note") or "").strip()[:2000]


def _refused(problem: Conflict, *, title: str, version: int | None = None):
    """The clear 409 page: what was refused, why, and where to go from here."""
    return render_template("admin/configuration_refused.html", title=title, message=problem.message,
                           version=version), problem.status


def _previewing() -> int | None:
    wanted = (session.get(PREVIEW_KEY) or {}).get(str(g.studio.id))
    return int(wanted) if wanted else None


# --- reading ----------------------------------------------------------------------------------------------------

@bp.get("/configuration")
@admin_page
def configuration():
    studio = g.studio
    published = _version(studio.config_version)
    return render_template(
        "admin/configuration.html", published=published, document=published.document,
        shown=display.arrange(published.document, _packages()), versions=config.versions(studio),
        drafts=config.open_drafts(studio), pending=proposals.pending(studio),
        decided=[p for p in proposals.recent(studio) if p.state.value != "pending"], previewing=_previewing(),
        fonts=config_form.FONT_LABELS)


@bp.get("/configuration/versions/<int:version>")
@admin_page
def configuration_version(version: int):
    return _version_page(_version(version))


def _version_page(row: ConfigVersion, *, errors: dict | None = None, status: int = 200):
    studio = g.studio
    return render_template(
        "admin/configuration_version.html", row=row, document=row.document,
        shown=display.arrange(row.document, _packages()), published_version=studio.config_version,
        changes=config.diff(studio, studio.config_version, row.version),
        base_changes=config.diff(studio, row.base_version, row.version) if row.base_version else None,
        errors=errors or {}, typed_note=_note() if request.method == "POST" else "", previewing=_previewing(),
        fonts=config_form.FONT_LABELS), status


@bp.get("/configuration/diff")
@admin_page
def configuration_diff():
    studio = g.studio
    rows = config.versions(studio)
    numbers = {row.version for row in rows}

    def number(name: str, default: int) -> int:
        raw = (request.args.get(name) or "").strip()
        if not raw:
            return default
        if not VERSION_NUMBER.fullmatch(raw):
            raise InvalidInput(f"`{name}` must be a version number.", code="parameter_invalid", field=name)
        if int(raw) not in numbers:
            raise config.NotFound(f"This studio has no configuration version {int(raw)}.")
        return int(raw)

    after = number("to", studio.config_version)
    before = number("from", max((n for n in numbers if n < after), default=after))
    return render_template("admin/configuration_diff.html", versions=rows, before=before, after=after,
                           changes=config.diff(studio, before, after))


# --- the draft editor -------------------------------------------------------------------------------------------

def _editor(form: config_form.Form, *, draft: ConfigVersion | None, status: int = 200):
    return render_template("admin/configuration_edit.html", form=form, draft=draft,
                           published_version=g.studio.config_version), status


@bp.get("/configuration/edit")
@admin_page
def configuration_edit():
    """A new draft's form, filled from the published version (nothing is stored until it is saved)."""
    return _editor(config_form.of_document(config.document_of(g.studio), _packages()), draft=None)


@bp.get("/configuration/versions/<int:version>/edit")
@admin_page
def configuration_edit_draft(version: int):
    draft = _version(version)
    if draft.state != ConfigState.DRAFT:
        return _refused(Conflict(f"Version {version} is {draft.state.value}: only a draft can be changed. "
                                 "Start a new draft instead."), title="Not a draft", version=version)
    return _editor(config_form.of_document(draft.document, _packages()), draft=draft)


def _save(draft: ConfigVersion | None):
    studio = g.studio
    base_document = draft.document if draft is not None else config.document_of(studio)
    document, form = config_form.read(request.form, base_document, _packages())
    try:
        schema.validate(document)
    except schema.InvalidConfig as invalid:
        for path, why in invalid.fields.items():
            form.errors.setdefault(path, why)
    if not form.note:
        form.errors["note"] = NOTE_MISSING
    if form.errors:
        return _editor(form, draft=draft, status=422)
    try:
        if draft is None:
            saved = config.create_draft(studio, document, actor=actor(), note=form.note, now=utcnow())
        else:
            saved = config.update_draft(studio, draft.version, document, actor=actor(), note=form.note,
                                               now=utcnow())
    except schema.InvalidConfig as invalid:
        form.errors.update(invalid.fields)
        return _editor(form, draft=draft, status=422)
    except Conflict as problem:
        return _refused(problem, title="Draft not saved", version=draft.version if draft else None)
    if request.form.get("then") == "preview":
        set_preview(studio, saved.version)
        flash(f"Draft version {saved.version} saved. You are previewing it: only you see it.", "success")
        return redirect(url_for("studio.home"), code=303)
    flash(f"Draft version {saved.version} saved.", "success")
    return redirect(url_for("admin.configuration_version", version=saved.version), code=303)


@bp.post("/configuration/drafts")
@admin_action
def configuration_create():
    return _save(None)


@bp.post("/configuration/versions/<int:version>/edit")
@admin_action
def configuration_update(version: int):
    draft = _version(version)
    if draft.state != ConfigState.DRAFT:
        return _refused(Conflict(f"Version {version} is {draft.state.value}: only a draft can be changed. "
                                 "Start a new draft instead."), title="Draft not saved", version=version)
    return _save(draft)


# --- acting on a version ----------------------------------------------------------------------------------------

@bp.post("/configuration/versions/<int:version>/preview")
@admin_action
def configuration_preview(version: int):
    row = _version(version)
    if row.state != ConfigState.DRAFT:
        return _refused(Conflict(f"Version {version} is {row.state.value}: only a draft can be previewed."),
                        title="Nothing to preview", version=version)
    set_preview(g.studio, version)
    flash(f"You are previewing draft version {version}: only you see it.", "success")
    return redirect(url_for("studio.home"), code=303)


def _with_note(version: int, action: str):
    """The action's note, or the version page again with the error next to that action's note (422)."""
    note = _note()
    if not note:
        return None, _version_page(_version(version), errors={action: NOTE_MISSING}, status=422)
    return note, None


@bp.post("/configuration/versions/<int:version>/publish")
@admin_action
def configuration_publish(version: int):
    note, refusal = _with_note(version, "publish")
    if refusal:
        return refusal
    try:
        config.publish(g.studio, version, actor=actor(), note=note, now=utcnow())
    except Conflict as problem:
        return _refused(problem, title="Not published", version=version)
    if _previewing() == version:
        set_preview(g.studio, None)
    flash(f"Version {version} is published: students see it from their next page.", "success")
    return redirect(url_for("admin.configuration"), code=303)


@bp.post("/configuration/versions/<int:version>/rollback")
@admin_action
def configuration_rollback(version: int):
    note, refusal = _with_note(version, "rollback")
    if refusal:
        return refusal
    try:
        row = config.rollback(g.studio, version, actor=actor(), note=note, now=utcnow())
    except Conflict as problem:
        return _refused(problem, title="Not rolled back", version=version)
    flash(f"Rolled back: version {row.version}, a copy of version {version}, is published.", "success")
    return redirect(url_for("admin.configuration"), code=303)


@bp.post("/configuration/versions/<int:version>/discard")
@admin_action
def configuration_discard(version: int):
    note, refusal = _with_note(version, "discard")
    if refusal:
        return refusal
    try:
        config.discard(g.studio, version, actor=actor(), note=note, now=utcnow())
    except Conflict as problem:
        return _refused(problem, title="Not discarded", version=version)
    if _previewing() == version:
        set_preview(g.studio, None)
    flash(f"Draft version {version} was discarded.", "success")
    return redirect(url_for("admin.configuration"), code=303)


# --- proposals --------------------------------------------------------------------------------------------------

def _proposal_page(proposal_id: int, *, errors: dict | None = None, status: int = 200):
    return render_template("admin/configuration_proposal.html", review=proposals.review(g.studio, proposal_id),
                           published_version=g.studio.config_version, errors=errors or {}), status


@bp.get("/configuration/proposals/<int:proposal_id>")
@admin_page
def configuration_proposal(proposal_id: int):
    return _proposal_page(proposal_id)


@bp.post("/configuration/proposals/<int:proposal_id>/approve")
@admin_action
def configuration_approve(proposal_id: int):
    note = _note()
    if not note:
        return _proposal_page(proposal_id, errors={"note": NOTE_MISSING}, status=422)
    publish_now = request.form.get("then") == "publish"
    try:
        version = proposals.approve(g.studio, proposal_id, actor=actor(), note=note, publish_now=publish_now,
                                    now=utcnow())
    except schema.InvalidConfig as invalid:
        return _proposal_page(proposal_id, errors={"note": "The proposal no longer fits the published version: "
                                                   + "; ".join(f"{p} {w}" for p, w in invalid.fields.items())},
                              status=422)
    except Conflict as problem:
        return _refused(problem, title="Not approved")
    if publish_now:
        flash(f"Proposal #{proposal_id} approved and published as version {version}.", "success")
        return redirect(url_for("admin.configuration"), code=303)
    flash(f"Proposal #{proposal_id} approved into draft version {version}.", "success")
    return redirect(url_for("admin.configuration_version", version=version), code=303)


@bp.post("/configuration/proposals/<int:proposal_id>/reject")
@admin_action
def configuration_reject(proposal_id: int):
    note = _note()
    if not note:
        return _proposal_page(proposal_id, errors={"reject_note": NOTE_MISSING}, status=422)
    try:
        proposals.reject(g.studio, proposal_id, actor=actor(), note=note, now=utcnow())
    except Conflict as problem:
        return _refused(problem, title="Not rejected")
    flash(f"Proposal #{proposal_id} rejected.", "success")
    return redirect(url_for("admin.configuration"), code=303)
