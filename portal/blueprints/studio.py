"""Student-facing studio pages: home, package and slot picker, sign-up, holding a slot, the booking page."""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user
from sqlalchemy import select

from portal import formatting
from portal.blueprints.auth import login_limit
from portal.blueprints.context import (
    bookings_stamp,
    studio_changed,
    studio_scoped,
    studio_version,
    studio_view,
    visible_booking,
)
from portal.clock import utcnow
from portal.extensions import db, limiter
from portal.http import error_response, external_url, public, render
from portal.models import ConfigState, Package, PaymentStatus, Role
from portal.payments import PaymentProviderError, get_provider
from portal.services import (
    accounts,
    availability,
    bookings,
    checkout,
    configuration,
    credits,
    fulfilment,
    month_view,
    receipts,
    studio_cache,
)
from portal.services.audit import Actor
from portal.services.configuration import display
from portal.services.configuration.theme import etag as theme_etag
from portal.services.configuration.theme import stylesheet as theme_css
from portal.services.errors import DomainError, InvalidInput, SlotUnavailable
from portal.services.policy import cancel_terms, reschedule_decision
from portal.services.states.machine import IllegalTransition

bp = studio_scoped(Blueprint("studio", __name__, url_prefix="/s/<studio_slug>"))


def _listed_packages():
    """What the studio shows: active, visible packages, featured first, in the configuration's order."""
    return display.listed(studio_view().document, list(studio_cache.calendar(g.studio).packages))


def _resources():
    return studio_cache.calendar(g.studio).active_resources()


@bp.get("/")
@public(version=studio_version, modified=studio_changed, reuse=studio_version)
def home():
    joined = current_user.is_authenticated and current_user.has_role(g.studio.id, Role.STUDENT)
    return render_template("studio/home.html", packages=_listed_packages(), resources=_resources(), joined=joined)


@bp.get("/theme/<int:version>.css")
def theme(version: int):
    """The branding of one configuration version as CSS custom properties. A published (or archived) version
    never changes, so its stylesheet is cached for a year under its versioned URL; a draft's is for the studio's
    admins only and never cached, so a preview cannot leak into a shared cache."""
    row = configuration.get_version(g.studio, version)
    draft = row.state == ConfigState.DRAFT
    if draft and not (current_user.is_authenticated and current_user.has_role(g.studio.id, Role.ADMIN)):
        abort(404, "No such stylesheet.")
    css = theme_css(row.document if draft else configuration.document_of(g.studio, version))
    response = Response(css, mimetype="text/css")
    if draft:
        response.headers["Cache-Control"] = "private, no-store"
        return response
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.set_etag(theme_etag(css))
    return response.make_conditional(request)


def picker_context(package: Package, resource_slug: str | None, date_raw: str | None, *,
                   picker_endpoint: str = "studio.package", picker_values: dict | None = None,
                   slot_action: str | None = None, hidden: dict | None = None):
    """Everything the slot picker shows, with a form error instead of an exception on bad input.

    The same picker serves booking (the default) and moving a lesson: `picker_endpoint`/`picker_values` say where
    the picker reloads, `slot_action` where a chosen slot is posted, and `hidden` which fields go with it. With no
    date asked for, it opens on the first day that has a free time, and says so when that is not today.
    """
    now = utcnow()
    picker_values = picker_values if picker_values is not None else {"package_slug": package.slug}
    studio = g.studio
    resources = _resources()
    resource = next((r for r in resources if r.slug == resource_slug), resources[0] if resources else None)
    first, last = availability.booking_window(studio, now)
    error = notice = None
    try:
        day = availability.parse_day(date_raw, studio, now)
    except InvalidInput as problem:
        day, error = first, problem.message
    slots, month = [], None
    if resource is not None:
        offer = availability.Offer(package, resource)
        month = month_view.build(studio, offer, day, now)
        slots = month.slots_on(day)
        if not slots and not date_raw and error is None:
            free_day = availability.first_free_day(studio, offer, now)
            if free_day is not None:
                day = free_day
                if month.first != day.replace(day=1):
                    month = month_view.build(studio, offer, day, now)
                slots = month.slots_on(day)
                notice = (f"No free times left today. Showing {formatting.day(day)}, "
                          "the first day with a free time.")
            else:
                notice = f"No free times on {resource.name} before {formatting.day(last)}. Try another room."

    # One URL built, then the date appended: a month view links every day, and url_for is the costly part.
    day_base = url_for(picker_endpoint, **picker_values, resource=resource.slug if resource else None)
    day_base += "&date=" if "?" in day_base else "?date="

    def day_url(other_day):
        return day_base + other_day.isoformat()

    credit_balance = (credits.usable(current_user.id, package.duration_minutes)
                      if current_user.is_authenticated and slot_action is None else 0)
    return dict(package=package, resources=resources, resource=resource, day=day, first_day=first,
                credit_balance=credit_balance,
                last_day=last, slots=slots, month=month, error=error, notice=notice,
                picker_url=url_for(picker_endpoint, **picker_values),
                day_url=day_url, slot_action=slot_action or url_for("studio.create_booking"),
                hidden=hidden if hidden is not None else {"package": package.slug})


def _package_or_404(package_slug: str) -> studio_cache.CachedPackage:
    package = studio_cache.calendar(g.studio).package(package_slug)
    if package is None:
        abort(404, "This lesson package is not offered here.")
    return package


@bp.get("/packages/<package_slug>")
@public(reuse=bookings_stamp)
def package(package_slug: str):
    found = _package_or_404(package_slug)
    if request.args.get("weekly") == "1":  # "every week": a chosen time opens the plan of the series
        context = picker_context(found, request.args.get("resource"), request.args.get("date"),
                                 picker_values={"package_slug": found.slug, "weekly": 1},
                                 slot_action=url_for("series.plan"),
                                 hidden={"package": found.slug, "weeks": min(10, g.studio.series_max_weeks)})
        context.update(weekly=True, slot_method="get", slot_verb="Every week from")
    else:
        context = picker_context(found, request.args.get("resource"), request.args.get("date"))
    return render("studio/package.html", "studio/_slots.html", 422 if context["error"] else 200, **context)


# --- joining ------------------------------------------------------------------------------------------------

@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def signup():
    """Whether or not the address has an account, the answer is the same: check your inbox."""
    form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
    if request.method == "GET":
        return render_template("studio/signup.html", form=form, error=None, field=None)
    try:
        accounts.register_student(studio=g.studio, email=form["email"], password=request.form.get("password", ""),
                                  name=form["name"], now=utcnow())
    except DomainError as problem:
        return render_template("studio/signup.html", form=form, error=problem.message,
                               field=problem.field), problem.status
    return redirect(url_for("studio.signup_sent"), code=303)


@bp.route("/signup/sent", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def signup_sent():
    """"Check your inbox", and a form to send the link again (the same answer for any address)."""
    resent = request.method == "POST"
    if resent:
        accounts.resend_confirmation(request.form.get("email", ""), studio=g.studio, now=utcnow())
    return render_template("studio/signup_sent.html", resent=resent,
                           mail_folder=not current_app.config["PORTAL_SETTINGS"].smtp_host)


@bp.route("/signup/confirm/<token>", methods=["GET", "POST"])
def signup_confirm(token: str):
    """The emailed link opens a page with a button: mail scanners that follow links do not use up the link."""
    if request.method == "GET":
        return render_template("studio/signup_confirm.html", token=token, error=None)
    try:
        user = accounts.confirm_signup(token, now=utcnow())
    except DomainError as problem:
        return render_template("studio/signup_confirm.html", token=token, error=problem.message), 410
    login_user(user)
    flash("Your email is confirmed. Welcome! Choose a lesson to book.", "success")
    return redirect(url_for("studio.home"), code=303)


@bp.post("/join")
@login_required
def join():
    """A logged-in person with an account elsewhere on the portal becomes a student here."""
    accounts.join_studio(current_user._get_current_object(), g.studio, now=utcnow())
    flash(f"You can now book lessons at {g.studio.name}.", "success")
    return redirect(url_for("studio.home"), code=303)


# --- booking --------------------------------------------------------------------------------------------------

@bp.post("/bookings")
@login_required
def create_booking():
    if not current_user.has_role(g.studio.id, Role.STUDENT):
        abort(403, "Join this studio as a student to book lessons.")
    form = request.form
    now = utcnow()
    if form.get("payment") == "credit":  # a lesson credit instead of paying: confirmed at once
        try:
            booking = credits.book_with_credit(studio=g.studio, student=current_user,
                                               package_slug=form.get("package", ""),
                                               resource_slug=form.get("resource", ""), start_raw=form.get("start"),
                                               now=now)
        except DomainError as problem:
            return _booking_refused(problem)
        flash("Your lesson is booked with a credit.", "success")
        return redirect(url_for("studio.booking", booking_id=booking.id), code=303)
    try:
        booking = bookings.hold_slot(studio=g.studio, student=current_user, package_slug=form.get("package", ""),
                                     resource_slug=form.get("resource", ""), start_raw=form.get("start"), now=now)
        payment = checkout.start_checkout(
            booking=booking, student=current_user, provider=get_provider(), now=now,
            success_url=external_url("studio.booking", booking_id=booking.id, paid=1)
            + "&session_id={CHECKOUT_SESSION_ID}",
            cancel_url=external_url("studio.checkout_cancelled", booking_id=booking.id)
            + "?session_id={CHECKOUT_SESSION_ID}")
    except DomainError as problem:
        return _booking_refused(problem)
    return redirect(payment.checkout_url, code=303)


def _booking_refused(problem: DomainError):
    """Show the picker again, refreshed, with the reason: the student's next step is to pick another time (or pay
    for the hold they already have)."""
    package = db.session.scalar(select(Package).where(Package.slug == request.form.get("package", ""),
                                                      Package.active.is_(True)))
    if package is None:
        return error_response(problem.status, problem.message, problem.code)
    start = request.form.get("start", "")
    context = picker_context(package, request.form.get("resource"), start[:10] or None)
    context["error"] = problem.message
    context["taken"] = isinstance(problem, SlotUnavailable)
    if isinstance(problem, bookings.AlreadyYours):
        context["own_booking_url"] = url_for("studio.booking", booking_id=problem.booking_id)
    return render("studio/package.html", "studio/_slots.html", problem.status, **context)


@bp.get("/bookings/<int:booking_id>")
@login_required
def booking(booking_id: int):
    found = visible_booking(booking_id)
    now = utcnow()
    returning = request.args.get("paid") == "1"
    payment = found.payment
    if returning and payment is not None and payment.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
        payment_id, session_id = payment.id, payment.checkout_session_id
        db.session.commit()  # hold no transaction while Stripe answers
        try:  # back from Checkout: ask Stripe now rather than only wait for the webhook
            fulfilment.sync_from_provider(payment_id, session_id, get_provider(), now)
        except (PaymentProviderError, DomainError):
            db.session.rollback()
        db.session.expire_all()
    summary = receipts.summarize(found, now)
    context = dict(booking=found, summary=summary, now=now, returning=returning,
                   reschedule=reschedule_decision(found, now),
                   cancel=cancel_terms(found, now, paid_minor=summary.paid_minor))
    return render("studio/booking.html", "studio/_booking_status.html", **context)


@bp.get("/bookings/<int:booking_id>/checkout-cancelled")
@login_required
def checkout_cancelled(booking_id: int):
    """Stripe's cancel URL: the student left Checkout, so the slot goes back to everyone.

    The link carries the Checkout Session id (Stripe fills it in), so a forged link cannot release someone's hold:
    without the right id the page only offers a button.
    """
    found = bookings.get_booking_for(current_user, booking_id, as_admin=False)
    payment = found.payment
    genuine = payment is not None and request.args.get("session_id") == payment.checkout_session_id
    released, refusal = False, None
    if genuine:
        try:
            checkout.release_hold(booking=found, provider=get_provider(), now=utcnow(),
                                  actor=Actor.of(current_user))
            released = True
        except IllegalTransition as problem:
            refusal = problem.message
    return render_template("studio/checkout_cancelled.html", booking=found, released=released, asked=genuine,
                           refusal=refusal)


@bp.post("/bookings/<int:booking_id>/release")
@login_required
def release(booking_id: int):
    """The student gives up an unpaid hold. Anything but a hold (a paid lesson, one released already) is a 409."""
    found = bookings.get_booking_for(current_user, booking_id, as_admin=False)
    checkout.release_hold(booking=found, provider=get_provider(), now=utcnow(), actor=Actor.of(current_user))
    flash("You gave up this time; it is free for others again. Nothing was charged.", "success")
    return redirect(url_for("studio.booking", booking_id=booking_id), code=303)
