"""The studio's team: admins and pending invitations; invite, revoke, remove; and the page an invitation opens."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_user

from portal.blueprints.admin import actor, admin_action, admin_page, bp, is_admin
from portal.blueprints.auth import login_limit
from portal.clock import utcnow
from portal.extensions import limiter
from portal.services import account_tokens
from portal.services import team as team_service
from portal.services.errors import DomainError


def _page(status: int = 200, *, error: str | None = None, field: str | None = None, email: str = ""):
    now = utcnow()
    return render_template("admin/team/index.html", admins=team_service.admins(g.studio),
                           invitations=team_service.pending_invitations(g.studio, now=now), can_act=is_admin(),
                           error=error, field=field, email=email, me=current_user.id), status


@bp.get("/team")
@admin_page
def team():
    return _page()


@bp.post("/team/invitations")
@admin_action
def team_invite():
    email = request.form.get("email", "")
    try:
        team_service.invite(g.studio, email, actor=actor(), now=utcnow())
    except DomainError as problem:
        return _page(problem.status, error=problem.message, field=problem.field or "email", email=email)
    flash(f"Invitation sent to {email.strip()}. The link works once, for 72 hours.", "success")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/invitations/<int:invitation_id>/revoke")
@admin_action
def team_revoke(invitation_id: int):
    try:
        team_service.revoke(g.studio, invitation_id, actor=actor(), now=utcnow())
    except DomainError as problem:
        return _page(problem.status, error=problem.message)
    flash("The invitation was revoked: its link no longer works.", "success")
    return redirect(url_for("admin.team"), code=303)


@bp.post("/team/admins/<int:user_id>/remove")
@admin_action
def team_remove(user_id: int):
    leaving = user_id == current_user.id
    try:
        team_service.remove_admin(g.studio, user_id, actor=actor(), now=utcnow(),
                                  note=request.form.get("note", "").strip())
    except DomainError as problem:
        return _page(problem.status, error=problem.message)
    if leaving:
        flash(f"You are no longer an admin of {g.studio.name}.", "success")
        return redirect(url_for("auth.index"), code=303)
    flash("The admin was removed.", "success")
    return redirect(url_for("admin.team"), code=303)


# --- the invitation link (no admin role needed: the signed link is the permission) ------------------------------

def _invitation_page(token: str, status: int = 200, **context):
    return render_template("admin/team/invitation.html", token=token, **context), status


@bp.route("/invitations/<token>", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def team_invitation(token: str):
    """GET shows the invitation (mail scanners following links use nothing up); POST accepts it."""
    now = utcnow()
    try:
        welcome = team_service.open_invitation(token, g.studio, now=now)
    except account_tokens.LinkInvalid as problem:
        return _invitation_page(token, 410, error=problem.message, welcome=None)
    if request.method == "GET":
        return _invitation_page(token, welcome=welcome, error=None, name="")
    name = request.form.get("name", "")
    try:
        if welcome.needs_password:
            user = team_service.accept_as_new(token, g.studio, name=name, password=request.form.get("password", ""),
                                      now=now)
            login_user(user)
        else:
            if not current_user.is_authenticated:
                return redirect(url_for("auth.login", next=url_for("admin.team_invitation", token=token)), code=303)
            team_service.accept_as_member(token, g.studio, user=current_user._get_current_object(), now=now)
    except account_tokens.LinkInvalid as problem:
        return _invitation_page(token, 410, error=problem.message, welcome=None)
    except DomainError as problem:
        return _invitation_page(token, problem.status, welcome=welcome, error=problem.message,
                                field=problem.field, name=name)
    flash(f"Welcome to the team of {g.studio.name}.", "success")
    return redirect(url_for("admin.dashboard"), code=303)
