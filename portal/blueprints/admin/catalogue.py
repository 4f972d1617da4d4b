"""The catalogue: packages (what the studio sells) and resources (what lessons use), listed, added and edited."""
from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from portal.blueprints.admin import actor, admin_action, admin_page, bp
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Package, Resource, ResourceKind
from portal.services import catalogue as catalogue_service
from portal.services import configuration
from portal.services.configuration import display

PACKAGE_FORM = ("name", "slug", "description", "duration_minutes", "price", "currency", "active")
RESOURCE_FORM = ("name", "slug", "kind", "capacity_minutes", "active")


def _typed(names) -> dict[str, str]:
    """The form as typed; a checkbox sends its value only when ticked."""
    return {name: request.form.get(name, "") for name in names}


def _configuration_url() -> str | None:
    return url_for("admin.configuration") if "admin.configuration" in current_app.view_functions else None


def _published_display() -> dict:
    return configuration.document_of(g.studio).get("packages", {})


@bp.get("/catalogue")
@admin_page
def catalogue():
    shown = display.arrange(configuration.document_of(g.studio), catalogue_service.packages())
    return render_template("admin/catalogue.html", shown=shown, resources=catalogue_service.resources(),
                           configuration_url=_configuration_url(), config_version=g.studio.config_version)


# --- packages ---------------------------------------------------------------------------------------------------

def _package_or_404(package_id: int) -> Package:
    package = db.session.scalar(select(Package).where(Package.id == package_id))
    if package is None:
        abort(404, "This studio has no such package.")
    return package


def _package_form(package: Package | None, typed: dict | None = None, errors: dict | None = None, status=200):
    studio = g.studio
    if typed is None:
        typed = {"currency": studio.currency, "active": "1", "duration_minutes": "60"} if package is None else {
            "name": package.name, "slug": package.slug, "description": package.description,
            "duration_minutes": str(package.duration_minutes),
            "price": catalogue_service.format_price(package.price_minor, package.currency),
            "currency": package.currency, "active": "1" if package.active else ""}
    used = catalogue_service.package_bookings(package.id) if package is not None else 0
    return render_template("admin/package_form.html", package=package, form=typed, errors=errors or {},
                           used=used, decimals=catalogue_service.decimals_of(studio.currency),
                           configuration_url=_configuration_url()), status


@bp.get("/catalogue/packages/new")
@admin_page
def catalogue_package_new():
    return _package_form(None)


@bp.get("/catalogue/packages/<int:package_id>")
@admin_page
def catalogue_package(package_id: int):
    return _package_form(_package_or_404(package_id))


@bp.post("/catalogue/packages")
@admin_action
def catalogue_package_create():
    return _save_package(None)


@bp.post("/catalogue/packages/<int:package_id>")
@admin_action
def catalogue_package_update(package_id: int):
    return _save_package(_package_or_404(package_id))


def _save_package(package: Package | None):
    typed = _typed(PACKAGE_FORM)
    try:
        saved = catalogue_service.save_package(g.studio, package, typed, actor=actor(), now=utcnow(),
                                       display=_published_display())
    except catalogue_service.InvalidFields as problem:
        package = db.session.get(Package, package.id) if package is not None else None
        return _package_form(package, typed, problem.fields, 422)
    _announce(saved, "package", saved.row.name)
    return redirect(url_for("admin.catalogue", _anchor="packages"), code=303)


# --- resources --------------------------------------------------------------------------------------------------

def _resource_or_404(resource_id: int) -> Resource:
    resource = db.session.scalar(select(Resource).where(Resource.id == resource_id))
    if resource is None:
        abort(404, "This studio has no such resource.")
    return resource


def _resource_form(resource: Resource | None, typed: dict | None = None, errors: dict | None = None, status=200):
    if typed is None:
        typed = {"kind": ResourceKind.ROOM.value, "capacity_minutes": "480", "active": "1"} if resource is None \
            else {"name": resource.name, "slug": resource.slug, "kind": resource.kind.value,
                  "capacity_minutes": str(resource.capacity_minutes), "active": "1" if resource.active else ""}
    used = catalogue_service.resource_bookings(resource.id) if resource is not None else 0
    return render_template("admin/resource_form.html", resource=resource, form=typed, errors=errors or {},
                           used=used, kinds=list(ResourceKind)), status


@bp.get("/catalogue/resources/new")
@admin_page
def catalogue_resource_new():
    return _resource_form(None)


@bp.get("/catalogue/resources/<int:resource_id>")
@admin_page
def catalogue_resource(resource_id: int):
    return _resource_form(_resource_or_404(resource_id))


@bp.post("/catalogue/resources")
@admin_action
def catalogue_resource_create():
    return _save_resource(None)


@bp.post("/catalogue/resources/<int:resource_id>")
@admin_action
def catalogue_resource_update(resource_id: int):
    return _save_resource(_resource_or_404(resource_id))


def _save_resource(resource: Resource | None):
    typed = _typed(RESOURCE_FORM)
    try:
        saved = catalogue_service.save_resource(g.studio, resource, typed, actor=actor(), now=utcnow())
    except catalogue_service.InvalidFields as problem:
        resource = db.session.get(Resource, resource.id) if resource is not None else None
        return _resource_form(resource, typed, problem.fields, 422)
    _announce(saved, "resource", saved.row.name)
    return redirect(url_for("admin.catalogue", _anchor="resources"), code=303)


def _announce(saved: catalogue_service.Saved, noun: str, name: str) -> None:
    if not saved.changed:
        flash(f"Nothing changed: {name} is as it was.", "info")
        return
    flash(f"Saved the {noun} {name}.", "success")
    for notice in saved.notices:
        flash(notice, "warning")
