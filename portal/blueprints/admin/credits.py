"""Weekly lessons and credits (`/s/<studio>/admin/credits`): the series booked, lesson packs (on sale and sold),
each student's balances, and credits granted, sold at the desk, taken back or refunded, each with a note."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

from portal.blueprints.admin import actor, admin_action, admin_page, bp, required_note
from portal.clock import utcnow
from portal.formatting import money
from portal.services import credit_admin, credits, pack_refunds
from portal.services.catalogue import InvalidFields
from portal.services.errors import DomainError


def _page(*, error: str | None = None, pack_errors: dict | None = None, pack_form: dict | None = None,
          status: int = 200):
    return render_template("admin/credits.html", series=credit_admin.series_list(), packs=credit_admin.packs(),
                           balances=credit_admin.balances(), students=credit_admin.students(g.studio),
                           lengths=credit_admin.lesson_lengths(), waitlist=credit_admin.waitlist(utcnow()),
                           bought=pack_refunds.packs_bought(utcnow()),
                           error=error, pack_errors=pack_errors or {},
                           pack_form=pack_form or {}), status


@bp.get("/credits")
@admin_page
def credits_page():
    return _page()


def _whole(name: str, default: int | None = None) -> int | None:
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return default
    return int(raw) if raw.isdigit() and len(raw) < 7 else -1


@bp.post("/credits/adjust")
@admin_action
def credits_adjust():
    """Grant or take back credits, or record a pack sold at the desk; a note is required (audited)."""
    form = request.form
    try:
        note = required_note()
        student_id = _whole("student", 0)
        if form.get("pack"):
            credit_admin.sell_pack(g.studio, pack_id=_whole("pack", 0), student_id=student_id, note=note,
                                   actor=actor(), now=utcnow())
            flash("Pack recorded: its credits are on the student's balance.", "success")
        elif form.get("action") == "revoke":
            credits.revoke(studio=g.studio, student_id=student_id, minutes=_whole("minutes", 0),
                           amount=_whole("amount", 0), note=note, actor=actor(), now=utcnow())
            flash("Credits taken back.", "success")
        else:
            credits.grant(studio=g.studio, student_id=student_id, minutes=_whole("minutes", 0),
                          amount=_whole("amount", 0), valid_days=_whole("valid_days"), note=note, actor=actor(),
                          now=utcnow())
            flash("Credits granted.", "success")
    except DomainError as problem:
        return _page(error=problem.message, status=problem.status)
    return redirect(url_for("admin.credits_page"), code=303)


@bp.post("/credits/packs")
@admin_action
def credits_pack_create():
    typed = {k: request.form.get(k, "") for k in ("name", "slug", "lesson_count", "lesson_minutes", "valid_days",
                                                   "price")}
    try:
        credit_admin.create_pack(g.studio, typed, actor=actor(), now=utcnow())
    except InvalidFields as problem:
        return _page(pack_errors=problem.fields, pack_form=typed, status=422)
    flash("Lesson pack added.", "success")
    return redirect(url_for("admin.credits_page"), code=303)


def _refund_form(lot_id: int, *, error: str | None = None, note: str = "", status: int = 200):
    return render_template("admin/credits_refund.html", quote=pack_refunds.quote(lot_id, utcnow()), error=error,
                           note=note), status


@bp.get("/credits/packs-bought/<int:lot_id>/refund")
@admin_page
def credits_refund_form(lot_id: int):
    """What refunding a pack's unused credits would send back, before the admin confirms."""
    return _refund_form(lot_id)


@bp.post("/credits/packs-bought/<int:lot_id>/refund")
@admin_action
def credits_refund(lot_id: int):
    note = request.form.get("note", "")
    try:
        done = pack_refunds.refund_unused(g.studio, lot_id, seen=request.form.get("seen"), note=note, actor=actor(),
                                          now=utcnow())
    except DomainError as problem:
        if problem.status == 404:
            raise
        return _refund_form(lot_id, error=problem.message, note=note, status=problem.status)
    credits_word = f"{done.credits} unused credit{'' if done.credits == 1 else 's'}"
    if done.refund_id is not None:
        flash(f"{credits_word} refunded; {money(done.amount_minor, done.currency)} is on its way back to the "
              "student's card.", "success")
    else:
        flash(f"{credits_word} refunded (no money: the pack was not paid through the portal).", "success")
    return redirect(url_for("admin.credits_page", _anchor="packs-bought"), code=303)
