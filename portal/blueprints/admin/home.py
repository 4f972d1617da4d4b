"""The admin home: today's and this week's lessons, utilisation, and what needs the admin."""
from __future__ import annotations

from flask import g, render_template

from portal.blueprints.admin import admin_page, bp
from portal.clock import utcnow
from portal.services import admin_home


@bp.get("/")
@admin_page
def dashboard():
    now = utcnow()
    return render_template("admin/dashboard.html", home=admin_home.home(g.studio, now), now=now)
