"""Login and logout (sign-up lives with the studio, since a student joins one)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from sqlalchemy import select

from portal.extensions import db, limiter
from portal.models import Studio
from portal.services import accounts

bp = Blueprint("auth", __name__)


def login_limit() -> str:
    return current_app.config["PORTAL_SETTINGS"].ratelimit_login


def safe_next(target: str | None) -> str | None:
    """Only same-site paths: an open redirect after login is a phishing tool."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def landing_url(user) -> str:
    if user.is_platform_ops:
        return url_for("ops.index")
    studio = accounts.default_studio_for(user)
    if studio is None:
        return url_for("auth.login")
    if user.has_role(studio.id, accounts.Role.ADMIN):
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
    login_user(user)
    return redirect(next_url or landing_url(user), code=303)


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("auth.login"), code=303)


@bp.get("/")
def index():
    studios = db.session.scalars(select(Studio).where(Studio.active.is_(True)).order_by(Studio.name)).all()
    return render_template("auth/index.html", studios=studios)
