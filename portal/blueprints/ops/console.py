"""The console's reading side: the dashboard, each reconciliation query (page, CSV, JSON) and the search."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Response, abort, jsonify, render_template, request
from sqlalchemy import func, select

from portal import tenancy
from portal.blueprints.ops import bp, ops_only, page_number
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Booking, Studio
from portal.parsing import whole_number
from portal.services import ops_search, reconciliation
from portal.services.errors import InvalidInput

PER_PAGE = 50


def _query_or_404(name: str) -> reconciliation.Query:
    query = reconciliation.QUERIES.get(name)
    if query is None:
        abort(404, "No such reconciliation query.")
    return query


def _filters() -> dict:
    """`studio` (a slug) and `min_age` (minutes) from the query string; bad values are a 422."""
    filters: dict = {}
    slug = (request.args.get("studio") or "").strip()
    if slug:
        with tenancy.all_tenants():
            studio_id = db.session.scalar(select(Studio.id).where(Studio.slug == slug))
        if studio_id is None:
            raise InvalidInput(f"No studio has the slug {slug!r}.", code="studio_unknown", field="studio")
        filters["studio_id"] = studio_id
    raw_age = (request.args.get("min_age") or "").strip()
    if raw_age:
        minutes = whole_number(raw_age, 0, 525_600)
        if minutes is None:
            raise InvalidInput("The minimum age is a number of minutes.", code="min_age_invalid", field="min_age")
        filters["min_age"] = timedelta(minutes=minutes)
    return filters


@bp.get("/")
@ops_only
def index():
    now = utcnow()
    overview = reconciliation.overview(now)
    with tenancy.all_tenants():
        studios = db.session.scalars(select(Studio).order_by(Studio.name)).all()
        counts: dict[int, dict[str, int]] = {}
        for studio_id, status, count in db.session.execute(
                select(Booking.studio_id, Booking.status, func.count(Booking.id))
                .group_by(Booking.studio_id, Booking.status)):
            counts.setdefault(studio_id, {})[status.value] = count
    return render_template("ops/index.html", overview=overview, queries=reconciliation.QUERIES, studios=studios,
                           counts=counts, failing=set(reconciliation.failing(overview)))


@bp.get("/queries/<name>")
@ops_only
def query(name: str):
    definition = _query_or_404(name)
    now = utcnow()
    filters = _filters()
    page = page_number()
    found = reconciliation.items(name, now, offset=(page - 1) * PER_PAGE, limit=PER_PAGE + 1, **filters)
    summary = reconciliation.summarize(name, now, **filters)
    return render_template("ops/query.html", query=definition, items=found[:PER_PAGE], summary=summary, page=page,
                           has_next=len(found) > PER_PAGE, studio=request.args.get("studio", ""),
                           min_age=request.args.get("min_age", ""))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    text = "" if value is None else (value.isoformat() if hasattr(value, "isoformat") else str(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


@bp.get("/queries/<name>.csv")
@ops_only
def query_csv(name: str):
    _query_or_404(name)
    found = reconciliation.items(name, utcnow(), limit=100_000, **_filters())
    out = io.StringIO()
    if found:
        writer = csv.DictWriter(out, fieldnames=list(found[0].keys()))
        writer.writeheader()
        for item in found:
            writer.writerow({key: _cell(value) for key, value in item.items()})
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename={name}.csv"
    return response


@bp.get("/api/reconciliation")
@ops_only
def api_overview():
    overview = reconciliation.overview(utcnow())
    return jsonify(queries={name: {"count": s.count, "oldest_age_seconds": s.oldest_age_seconds}
                            for name, s in overview.items()},
                   failing=reconciliation.failing(overview))


@bp.get("/api/reconciliation/<name>")
@ops_only
def api_query(name: str):
    _query_or_404(name)
    page = page_number()
    found = reconciliation.items(name, utcnow(), offset=(page - 1) * PER_PAGE, limit=PER_PAGE + 1, **_filters())
    body = {"items": [{key: (value.isoformat() if hasattr(value, "isoformat") else value)
                       for key, value in item.items()} for item in found[:PER_PAGE]]}
    if len(found) > PER_PAGE:
        body["next_page"] = page + 1
    return jsonify(body)


@bp.get("/search")
@ops_only
def search():
    text = (request.args.get("q") or "").strip()
    results = ops_search.find(text) if text else []
    return render_template("ops/search.html", q=text, results=results)
