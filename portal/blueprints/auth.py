"""Logging in and out, resetting a forgotten password, changing it (sign-up lives with the studio a student joins)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from portal.clock import utcnow
from portal.extensions import db, limiter
from portal.models import Role, Studio
from portal.services import account_tokens, accounts
from portal.services.errors import DomainError

bp = Blueprint("auth", __name__)


def login_limit() -> str:
    return current_app.config["PORTAL_SETTINGS"].ratelimit_login


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: an open redirect after login is a phishing tool."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


def landing_url(user) -> str:
    if user.is_platform_ops:
        return url_for("ops.index")
    studio = accounts.default_studio_for(user)
    if studio is None:
        return url_for("auth.index")
    if user.has_role(studio.id, Role.ADMIN):
        return url_for("admin.dashboard", studio_slug=studio.slug)
    return url_for("studio.home", studio_slug=studio.slug)


@bp.get("/login")
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or landing_url(current_user))
    return render_template("auth/login.html", next=safe_next(request.args.get("next")), email="", error=None)


@bp.post("/login")
@limiter.limit(login_limit, methods=["POST"])
def login_submit():
    email = request.form.get("email", "")
    user = accounts.authenticate(email, request.form.get("password", ""))
    next_url = safe_next(request.form.get("next"))
    if user is None:
        return render_template("auth/login.html", next=next_url, email=email,
                               error="That email and password do not match an account."), 422
    if user.email_verified_at is None:
        studio = accounts.default_studio_for(user)
        if studio is not None:
            accounts.resend_confirmation(user.email, studio=studio, now=utcnow())
        return render_template("auth/login.html", next=next_url, email=email,
                               error="Please confirm your email address first. We have just sent you a new link: "
                                     "open it, then log in."), 422
    login_user(user)
    return redirect(next_url or landing_url(user), code=303)


@bp.post("/logout")
def logout():
    """Ends the session on the server too: a copy of the session cookie stops working at once."""
    if current_user.is_authenticated:
        accounts.end_sessions(current_user._get_current_object())
    logout_user()
    return redirect(url_for("auth.login"), code=303)


@bp.get("/")
def index():
    studios = db.session.scalars(select(Studio).where(Studio.active.is_(True)).order_by(Studio.name)).all()
    return render_template("auth/index.html", studios=studios)


# --- a forgotten password --------------------------------------------------------------------------------------

@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def forgot_password():
    if request.method == "GET":
        return render_template("auth/forgot_password.html", sent=False, email="")
    email = request.form.get("email", "").strip()
    accounts.request_password_reset(email, now=utcnow())
    # The same answer whether or not the address has an account.
    return render_template("auth/forgot_password.html", sent=True, email="")


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def reset_password(token: str):
    now = utcnow()
    if request.method == "GET":
        try:
            accounts.check_reset_link(token, now=now)
        except account_tokens.LinkInvalid as problem:
            return render_template("auth/reset_password.html", token=token, error=problem.message,
                                   link_invalid=True), 410
        return render_template("auth/reset_password.html", token=token, error=None, link_invalid=False)
    try:
        accounts.reset_password(token, request.form.get("password", ""), now=now)
    except account_tokens.LinkInvalid as problem:
        return render_template("auth/reset_password.html", token=token, error=problem.message,
                               link_invalid=True), 410
    except DomainError as problem:
        return render_template("auth/reset_password.html", token=token, error=problem.message,
                               link_invalid=False), problem.status
    logout_user()
    flash("Your password was changed and every session was logged out. Log in with the new password.", "success")
    return redirect(url_for("auth.login"), code=303)


# --- the account of whoever is logged in ------------------------------------------------------------------------

@bp.get("/account")
@login_required
def account():
    return render_template("auth/account.html", error=None, field=None)


@bp.post("/account/password")
@login_required
@limiter.limit(login_limit, methods=["POST"])
def change_password():
    user = current_user._get_current_object()
    try:
        accounts.change_password(user, current=request.form.get("current_password", ""),
                                 new=request.form.get("new_password", ""))
    except DomainError as problem:
        return render_template("auth/account.html", error=problem.message, field=problem.field), problem.status
    login_user(user)  # this browser goes on with the new session generation; every other session has ended
    flash("Your password was changed. Other browsers and devices were logged out.", "success")
    return redirect(url_for("auth.account"), code=303)


def init_login() -> None:
    """Sessions name their user and session generation (`User.get_id`); an ended one loads no user."""
    from portal.extensions import login_manager

    login_manager.user_loader(accounts.load_session_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
