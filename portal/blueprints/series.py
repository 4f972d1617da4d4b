"""Weekly lessons for students: plan a series, hold and pay for it, see it, cancel the rest of it."""
from __future__ import annotations

from datetime import date, datetime, time

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from portal.blueprints.context import studio_role_required, studio_scoped
from portal.clock import utcnow
from portal.extensions import db
from portal.http import external_url
from portal.models import PaymentStatus, Role
from portal.payments import PaymentProviderError, get_provider
from portal.services import availability, credits, fulfilment, packs, receipts, series
from portal.services import waitlist as waiting_list
from portal.services.audit import Actor
from portal.services.errors import DomainError, InvalidInput

bp = studio_scoped(Blueprint("series", __name__, url_prefix="/s/<studio_slug>"))


def _plan_context(args, *, error: str | None = None) -> dict:
    """The plan page: every week, free or not with the reason, and other free times that day for a week that is
    not free."""
    now = utcnow()
    offer, planned = series.plan_request(g.studio, package_slug=args.get("package"),
                                         resource_slug=args.get("resource"), start_raw=args.get("start"),
                                         weeks_raw=args.get("weeks") or "10", now=now)
    alternatives = {}
    for week in planned:
        if not week.free and week.reason != "blackout":
            day = week.start.date()
            alternatives[week.week] = availability.free_slots(g.studio, offer, day, day, now).get(day, [])
    return dict(offer=offer, planned=planned, alternatives=alternatives, weeks=len(planned), error=error,
                max_weeks=g.studio.series_max_weeks, start=args.get("start"),
                credit_balance=credits.usable(current_user.id, offer.package.duration_minutes),
                total_minor=offer.package.price_minor * sum(1 for w in planned if w.free))


@bp.get("/series/plan")
@studio_role_required(Role.STUDENT)
def plan():
    try:
        context = _plan_context(request.args)
    except InvalidInput as problem:
        return render_template("errors/error.html", status=422, title="That series cannot be planned",
                               message=problem.message), 422
    return render_template("series/plan.html", **context)


@bp.post("/series")
@studio_role_required(Role.STUDENT)
def create():
    form = request.form
    now = utcnow()
    pay_with = form.get("payment", "checkout")
    try:
        held = series.hold(studio=g.studio, student=current_user, package_slug=form.get("package"),
                           resource_slug=form.get("resource"), start_raw=form.get("start"),
                           weeks_raw=form.get("weeks"), chosen_raw=form.getlist("occurrence"), now=now,
                           pay_with=pay_with)
        if pay_with == "credits":
            flash("Your weekly lessons are booked with your credits.", "success")
            return redirect(url_for("series.show", series_id=held.id), code=303)
        payment = series.start_checkout(
            series=held, student=current_user, provider=get_provider(), now=now,
            success_url=external_url("series.show", series_id=held.id, paid=1) + "&session_id={CHECKOUT_SESSION_ID}",
            cancel_url=external_url("series.checkout_cancelled", series_id=held.id)
            + "?session_id={CHECKOUT_SESSION_ID}")
    except DomainError as problem:
        try:
            context = _plan_context(form, error=problem.message)
        except InvalidInput:
            return render_template("errors/error.html", status=problem.status, title="Weekly lessons not held",
                                   message=problem.message), problem.status
        return render_template("series/plan.html", **context), problem.status
    return redirect(payment.checkout_url, code=303)


@bp.get("/series/<int:series_id>")
@studio_role_required(Role.STUDENT)
def show(series_id: int):
    found = series.get_series_for(current_user, series_id)
    now = utcnow()
    payment = series.series_payment(found.id)
    if request.args.get("paid") == "1" and payment is not None and payment.status in (
            PaymentStatus.PENDING, PaymentStatus.PROCESSING):
        payment_id, session_id = payment.id, payment.checkout_session_id
        db.session.commit()  # hold no transaction while Stripe answers
        try:  # back from Checkout: ask Stripe now rather than only wait for the webhook
            fulfilment.sync_from_provider(payment_id, session_id, get_provider(), now)
        except (PaymentProviderError, DomainError):
            db.session.rollback()
        db.session.expire_all()
        payment = series.series_payment(found.id)
    weeks = [(b, receipts.summarize(b, now)) for b in series.weeks_of(found.id)]
    return render_template("series/show.html", series=found, weeks=weeks, payment=payment, now=now,
                           rest=series.cancel_rest_terms(found, now),
                           can_pay=payment is not None and any(s.can_pay for _, s in weeks))


@bp.post("/series/<int:series_id>/cancel-rest")
@studio_role_required(Role.STUDENT)
def cancel_rest(series_id: int):
    found = series.get_series_for(current_user, series_id)
    try:
        cancelled = series.cancel_rest(series=found, actor=current_user, now=utcnow())
    except DomainError as problem:
        return render_template("errors/error.html", status=problem.status, title="Nothing was cancelled",
                               message=problem.message), problem.status
    flash(f"{len(cancelled)} weekly lesson{'s' if len(cancelled) != 1 else ''} cancelled. "
          "Any refund is on its way to your card.", "success")
    return redirect(url_for("series.show", series_id=series_id), code=303)


@bp.get("/series/<int:series_id>/checkout-cancelled")
@studio_role_required(Role.STUDENT)
def checkout_cancelled(series_id: int):
    """Stripe's cancel URL: the student left Checkout, so every week goes back to everyone (only with the right
    Checkout Session id, so a forged link releases nothing)."""
    found = series.get_series_for(current_user, series_id)
    payment = series.series_payment(found.id)
    if payment is None or request.args.get("session_id") != payment.checkout_session_id:
        abort(404)
    if payment.status == PaymentStatus.PENDING:
        series.release_holds(found.id, now=utcnow(), actor=Actor.of(current_user), note="Given up before paying.")
        db.session.commit()
        flash("You left Checkout: the weekly times are free for others again. Nothing was charged.", "info")
    return redirect(url_for("series.show", series_id=series_id), code=303)


# --- waitlist -------------------------------------------------------------------------------------------------

@bp.get("/waitlist")
@studio_role_required(Role.STUDENT)
def waitlist():
    return render_template("series/waitlist.html", entries=waiting_list.entries_of(current_user), now=utcnow())


@bp.post("/waitlist")
@studio_role_required(Role.STUDENT)
def waitlist_join():
    """Wait for a time on a day: the form sends the local date and a from/to wall-clock time."""
    form = request.form
    tz = g.studio.tz
    try:
        day = date.fromisoformat(form.get("date", ""))
        start = datetime.combine(day, time.fromisoformat(form.get("from") or "00:00"), tz)
        end = datetime.combine(day, time.fromisoformat(form.get("to") or "23:59"), tz)
    except ValueError:
        return render_template("errors/error.html", status=422, title="Not added to the waitlist",
                               message="Give a date and a time range such as 15:00 to 19:00."), 422
    try:
        waiting_list.join(studio=g.studio, student=current_user, package_slug=form.get("package"),
                          resource_slug=form.get("resource"), from_raw=start.isoformat(), to_raw=end.isoformat(),
                          now=utcnow())
    except DomainError as problem:
        return render_template("errors/error.html", status=problem.status, title="Not added to the waitlist",
                               message=problem.message), problem.status
    flash("You are on the waitlist: we email you when a time frees up.", "success")
    return redirect(url_for("series.waitlist"), code=303)


@bp.post("/waitlist/<int:entry_id>/claim")
@studio_role_required(Role.STUDENT)
def waitlist_claim(entry_id: int):
    now = utcnow()
    try:
        payment = waiting_list.claim(
            entry_id=entry_id, student=current_user, provider=get_provider(), now=now,
            success_url=external_url("series.waitlist", claimed=entry_id),
            cancel_url=external_url("series.waitlist"))
    except DomainError as problem:
        return render_template("errors/error.html", status=problem.status, title="This offer cannot be claimed",
                               message=problem.message), problem.status
    return redirect(payment.checkout_url, code=303)


@bp.post("/waitlist/<int:entry_id>/leave")
@studio_role_required(Role.STUDENT)
def waitlist_leave(entry_id: int):
    try:
        waiting_list.leave(entry_id=entry_id, student=current_user, now=utcnow())
    except DomainError as problem:
        return render_template("errors/error.html", status=problem.status, title="Not changed",
                               message=problem.message), problem.status
    flash("You left the waitlist.", "success")
    return redirect(url_for("series.waitlist"), code=303)


# --- lesson packs ---------------------------------------------------------------------------------------------

@bp.post("/packs/<pack_slug>/buy")
@studio_role_required(Role.STUDENT)
def buy_pack(pack_slug: str):
    try:
        purchase = packs.start_purchase(studio=g.studio, student=current_user, pack_slug=pack_slug,
                                        provider=get_provider(), now=utcnow(),
                                        success_url=external_url("lessons.index", pack="paid"),
                                        cancel_url=external_url("lessons.index"))
    except DomainError as problem:
        return render_template("errors/error.html", status=problem.status, title="Pack not bought",
                               message=problem.message), problem.status
    return redirect(purchase.checkout_url, code=303)
