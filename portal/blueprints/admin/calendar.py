"""The calendar: weekly opening hours per resource (edited in place with htmx, or as plain forms), the booking
rules of the published configuration, and blackouts with a preview of the lessons they hit."""
from __future__ import annotations

import re

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from portal.blueprints.admin import actor, admin_action, admin_page, bp
from portal.clock import utcnow
from portal.extensions import db
from portal.http import render
from portal.models import AvailabilityRule, Blackout, Resource
from portal.services import catalogue, schedule
from portal.services.errors import InvalidInput


def _configuration_url() -> str | None:
    return url_for("admin.configuration") if "admin.configuration" in current_app.view_functions else None


# --- opening hours ----------------------------------------------------------------------------------------------

def _calendar_context(resource_slug: str | None, *, weekday: int = 0, hours_error: dict | None = None) -> dict:
    resources = catalogue.resources()
    resource = next((r for r in resources if r.slug == resource_slug), None) if resource_slug else \
        (resources[0] if resources else None)
    if resource_slug and resource is None:
        abort(404, "This studio has no such resource.")
    now = utcnow()
    upcoming, _past = schedule.blackouts(now, past_limit=0)
    return dict(resources=resources, resource=resource, days=schedule.week(resource.id) if resource else [],
                day_names=schedule.DAY_NAMES, weekday=weekday, hours_error=hours_error or {},
                studio=g.studio, configuration_url=_configuration_url(), upcoming=upcoming[:5],
                upcoming_count=len(upcoming))


def _weekday_arg() -> int:
    try:
        return schedule.parse_weekday(request.args.get("day") or "0")
    except InvalidInput:
        return 0


@bp.get("/calendar")
@admin_page
def calendar():
    """The week of one resource. An htmx request gets the block of one day (`day`, 0 = Monday): that is where the
    in-place edits land after saving."""
    context = _calendar_context(request.args.get("resource"), weekday=_weekday_arg())
    context["spans"] = context["days"][context["weekday"]] if context["days"] else []
    return render("admin/calendar.html", "admin/_weekday.html", **context)


def _resource_from_form() -> Resource:
    resource = db.session.scalar(select(Resource).where(Resource.slug == request.form.get("resource", "")))
    if resource is None:
        abort(404, "This studio has no such resource.")
    return resource


def _rule_or_404(rule_id: int) -> AvailabilityRule:
    rule = db.session.scalar(select(AvailabilityRule).where(AvailabilityRule.id == rule_id))
    if rule is None:
        abort(404, "These opening hours no longer exist (changed elsewhere?). Reload the page.")
    return rule


def _after_hours_change(resource_slug: str, weekday: int):
    """303 to the calendar at that day: a plain form lands on the page, htmx follows it and gets the day's block."""
    return redirect(url_for("admin.calendar", resource=resource_slug, day=weekday, _anchor=f"day-{weekday}"),
                    code=303)


def _hours_refused(resource: Resource, weekday: int, row, problem: InvalidInput):
    """The day again (the whole page without JavaScript) with the span as typed and the field error: 422."""
    error = {"weekday": weekday, "row": row, "field": problem.field, "message": problem.message,
             "start": request.form.get("start", ""), "end": request.form.get("end", "")}
    context = _calendar_context(resource.slug, weekday=weekday, hours_error=error)
    context["spans"] = context["days"][weekday]
    return render("admin/calendar.html", "admin/_weekday.html", problem.status, **context)


@bp.post("/calendar/hours")
@admin_action
def calendar_hours_add():
    resource = _resource_from_form()
    slug = resource.slug
    try:
        weekday = schedule.parse_weekday(request.form.get("weekday"))
    except InvalidInput as problem:
        abort(problem.status, problem.message)
    try:
        schedule.add_span(g.studio, resource, str(weekday), request.form.get("start"), request.form.get("end"),
                          actor=actor(), now=utcnow())
    except InvalidInput as problem:
        return _hours_refused(db.session.get(Resource, resource.id), weekday, "new", problem)
    return _after_hours_change(slug, weekday)


@bp.post("/calendar/hours/<int:rule_id>")
@admin_action
def calendar_hours_change(rule_id: int):
    rule = _rule_or_404(rule_id)
    resource, weekday, slug = rule.resource, rule.weekday, rule.resource.slug
    try:
        schedule.change_span(g.studio, rule, request.form.get("start"), request.form.get("end"), actor=actor(),
                             now=utcnow())
    except InvalidInput as problem:
        return _hours_refused(db.session.get(Resource, resource.id), weekday, rule_id, problem)
    return _after_hours_change(slug, weekday)


@bp.post("/calendar/hours/<int:rule_id>/delete")
@admin_action
def calendar_hours_remove(rule_id: int):
    rule = _rule_or_404(rule_id)
    weekday, slug = rule.weekday, rule.resource.slug
    schedule.remove_span(g.studio, rule, actor=actor(), now=utcnow())
    return _after_hours_change(slug, weekday)


# --- blackouts --------------------------------------------------------------------------------------------------

BLACKOUT_FORM = ("resource", "starts", "ends", "reason", "lessons")


def _typed_blackout() -> dict:
    typed = {name: request.form.get(name, "") for name in BLACKOUT_FORM}
    typed["previewed"] = _previewed()
    return typed


def _previewed() -> list[int]:
    """The confirmed lessons the preview showed (hidden fields), as ids."""
    return sorted({int(v) for v in request.form.getlist("lesson") if re.fullmatch(r"[0-9]{1,12}", v)})


def _blackouts_context(typed: dict | None = None, **preview) -> dict:
    now = utcnow()
    upcoming, past = schedule.blackouts(now)
    return dict(upcoming=upcoming, past=past, resources=catalogue.resources(), now=now,
                form=typed or {"resource": "", "starts": "", "ends": "", "reason": "", "lessons": ""},
                preview=preview or None)


def _preview(typed: dict, *, need_reason: bool) -> dict:
    """What the preview shows: the span as understood (clock-change notes) and the lessons it hits, or the error."""
    try:
        draft = schedule.parse_blackout(g.studio, resource_raw=typed["resource"], starts_raw=typed["starts"],
                                        ends_raw=typed["ends"], reason_raw=typed["reason"], now=utcnow(),
                                        need_reason=need_reason)
    except InvalidInput as problem:
        return {"error": problem.message, "field": problem.field, "status": problem.status}
    hits = schedule.impact(draft.resource.id if draft.resource else None, draft.starts_at, draft.ends_at, utcnow())
    return {"draft": draft, "notes": schedule.explain(draft, g.studio), "hits": hits, "status": 200}


@bp.get("/calendar/blackouts")
@admin_page
def calendar_blackouts():
    return render_template("admin/blackouts.html", **_blackouts_context())


@bp.post("/calendar/blackouts/preview")
@admin_action
def calendar_blackout_preview():
    """The confirmed lessons (and unpaid holds) the typed blackout would hit: the fragment for htmx, the page with
    the form as typed otherwise. Nothing is saved."""
    typed = _typed_blackout()
    preview = _preview(typed, need_reason=False)
    return render("admin/blackouts.html", "admin/_blackout_preview.html", preview["status"],
                  **_blackouts_context(typed, **preview))


@bp.post("/calendar/blackouts")
@admin_action
def calendar_blackout_create():
    typed = _typed_blackout()
    now = utcnow()
    try:
        draft = schedule.parse_blackout(g.studio, resource_raw=typed["resource"], starts_raw=typed["starts"],
                                        ends_raw=typed["ends"], reason_raw=typed["reason"], now=now)
        outcome = schedule.create_blackout(g.studio, draft, lessons=typed["lessons"] or None,
                                           previewed=typed["previewed"], actor=actor(), now=now)
    except (InvalidInput, schedule.LessonsChanged) as problem:
        preview = _preview(typed, need_reason=False)
        preview.update(error=problem.message, field=problem.field or "lessons")
        return render_template("admin/blackouts.html", **_blackouts_context(typed, **preview)), problem.status
    flash(_summary(outcome), "success")
    return redirect(url_for("admin.calendar_blackouts"), code=303)


def _summary(outcome: schedule.Outcome) -> str:
    def lessons(n: int) -> str:
        return f"{n} lesson{'s' if n != 1 else ''}"

    parts = ["Blackout saved." if outcome.created else "This blackout was already saved: nothing was added."]
    if outcome.cancelled:
        parts.append(f"Cancelled {lessons(len(outcome.cancelled))} with a full refund; the students are emailed.")
    if outcome.kept:
        parts.append(f"Kept {lessons(len(outcome.kept))} in it as booked.")
    if outcome.already:
        parts.append(f"{lessons(len(outcome.already))} had been cancelled or moved out of it already.")
    return " ".join(parts)


@bp.post("/calendar/blackouts/<int:blackout_id>/delete")
@admin_action
def calendar_blackout_delete(blackout_id: int):
    blackout = db.session.scalar(select(Blackout).where(Blackout.id == blackout_id))
    if blackout is None:
        flash("That blackout was already deleted.", "info")
    else:
        schedule.delete_blackout(g.studio, blackout, actor=actor(), now=utcnow())
        flash("Blackout deleted: its time can be booked again. Lessons it cancelled stay cancelled.", "success")
    return redirect(url_for("admin.calendar_blackouts"), code=303)
