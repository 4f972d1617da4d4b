"""Student-facing studio pages: home, package and slot picker, sign-up, holding a slot, the booking page."""
from __future__ import annotations

from flask import Blueprint, abort, g, redirect, render_template, request, url_for
from flask_login import current_user, login_user
from sqlalchemy import select

from portal.blueprints.auth import login_limit
from portal.blueprints.context import login_required_here, studio_scoped
from portal.clock import utcnow
from portal.extensions import db, limiter
from portal.http import external_url, is_htmx
from portal.models import Package, Resource, Role
from portal.payments import get_provider
from portal.services import accounts, availability, bookings, checkout
from portal.services.errors import DomainError, InvalidInput, SlotUnavailable

bp = studio_scoped(Blueprint("studio", __name__, url_prefix="/s/<studio_slug>"))


def _packages():
    return db.session.scalars(select(Package).where(Package.active.is_(True))
                              .order_by(Package.position, Package.id)).all()


def _resources():
    return db.session.scalars(select(Resource).where(Resource.active.is_(True)).order_by(Resource.name)).all()


@bp.get("/")
def home():
    return render_template("studio/home.html", packages=_packages(), resources=_resources())


def _picker_context(package: Package, resource_slug: str | None, date_raw: str | None):
    """Everything the slot picker shows, with a form error instead of an exception on bad input."""
    now = utcnow()
    studio = g.studio
    resources = _resources()
    resource = next((r for r in resources if r.slug == resource_slug), resources[0] if resources else None)
    first, last = availability.booking_window(studio, now)
    error = None
    try:
        day = availability.parse_day(date_raw, studio, now)
    except InvalidInput as problem:
        day, error = first, problem.message
    slots = []
    if resource is not None:
        slots = availability.free_slots_on(studio, availability.Offer(package, resource), day, now)
    return dict(package=package, resources=resources, resource=resource, day=day, first_day=first,
                last_day=last, slots=slots, error=error)


def _package_or_404(package_slug: str) -> Package:
    package = db.session.scalar(select(Package).where(Package.slug == package_slug, Package.active.is_(True)))
    if package is None:
        abort(404, "This lesson package is not offered here.")
    return package


@bp.get("/packages/<package_slug>")
def package(package_slug: str):
    context = _picker_context(_package_or_404(package_slug), request.args.get("resource"),
                              request.args.get("date"))
    template = "studio/_slots.html" if is_htmx() else "studio/package.html"
    return render_template(template, **context), 422 if context["error"] else 200


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def signup():
    form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
    if request.method == "GET":
        return render_template("studio/signup.html", form=form, error=None, field=None)
    try:
        user = accounts.register_student(studio=g.studio, email=form["email"],
                                         password=request.form.get("password", ""), name=form["name"])
    except DomainError as problem:
        return render_template("studio/signup.html", form=form, error=problem.message,
                               field=problem.field), problem.status
    login_user(user)
    return redirect(url_for("studio.home"), code=303)


@bp.post("/bookings")
def create_booking():
    redirect_to_login = login_required_here()
    if redirect_to_login is not None:
        return redirect_to_login
    if not current_user.has_role(g.studio.id, Role.STUDENT):
        abort(403, "Join this studio as a student to book lessons.")
    form = request.form
    now = utcnow()
    try:
        booking = bookings.hold_slot(studio=g.studio, student=current_user, package_slug=form.get("package", ""),
                                     resource_slug=form.get("resource", ""), start_raw=form.get("start"), now=now)
        payment = checkout.start_checkout(
            booking=booking, student=current_user, provider=get_provider(), now=now,
            success_url=external_url("studio.booking", booking_id=booking.id, paid=1)
            + "&session_id={CHECKOUT_SESSION_ID}",
            cancel_url=external_url("studio.checkout_cancelled", booking_id=booking.id))
    except DomainError as problem:
        return _booking_refused(problem)
    return redirect(payment.checkout_url, code=303)


def _booking_refused(problem: DomainError):
    """Show the picker again, refreshed, with the reason: the student's next step is to pick another time."""
    package = db.session.scalar(select(Package).where(Package.slug == request.form.get("package", ""),
                                                      Package.active.is_(True)))
    if package is None:
        return render_template("errors/error.html", status=problem.status, title="Cannot book this",
                               message=problem.message), problem.status
    start = request.form.get("start", "")
    context = _picker_context(package, request.form.get("resource"), start[:10] or None)
    context["error"] = problem.message
    context["taken"] = isinstance(problem, SlotUnavailable)
    template = "studio/_slots.html" if is_htmx() else "studio/package.html"
    return render_template(template, **context), problem.status


@bp.get("/bookings/<int:booking_id>")
def booking(booking_id: int):
    redirect_to_login = login_required_here()
    if redirect_to_login is not None:
        return redirect_to_login
    as_admin = current_user.has_role(g.studio.id, Role.ADMIN)
    found = bookings.get_booking_for(current_user, booking_id, as_admin=as_admin)
    context = dict(booking=found, payment=found.payment, now=utcnow(), returning=request.args.get("paid") == "1")
    template = "studio/_booking_status.html" if is_htmx() else "studio/booking.html"
    return render_template(template, **context)


@bp.get("/bookings/<int:booking_id>/checkout-cancelled")
def checkout_cancelled(booking_id: int):
    """Stripe's cancel URL: the student left Checkout, so the slot goes back to everyone."""
    redirect_to_login = login_required_here()
    if redirect_to_login is not None:
        return redirect_to_login
    found = bookings.get_booking_for(current_user, booking_id, as_admin=False)
    released = checkout.release_hold(booking=found, provider=get_provider(), now=utcnow())
    return render_template("studio/checkout_cancelled.html", booking=found, released=released)
