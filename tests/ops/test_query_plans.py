"""With 100,000 bookings and 100,000 webhook events on PostgreSQL, every reconciliation query reads an index:
the planner never scans a whole big table to find the rare broken rows, and the overlap check probes the live
bookings' span index once per recently changed booking (a nested loop, not a hash of every live booking)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from benchmarks.bulk_data import fill
from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Package, Resource, Role
from portal.services import reconciliation
from tests.factories import make_studio, make_user

BIG_TABLES = {"bookings", "payments", "refunds", "webhook_events"}


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_every_reconciliation_query_uses_an_index(app_ctx):
    studio = make_studio(resources=tuple(f"room-{i}" for i in range(20)))
    student = make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    with tenancy.all_tenants():
        package_id = db.session.scalar(select(Package.id).where(Package.studio_id == studio.id).limit(1))
        resources = list(db.session.scalars(select(Resource.id).where(Resource.studio_id == studio.id)))
    now = utcnow()
    fill(studio.id, student.id, package_id, resources, bookings=100_000, events=100_000, now=now)
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE bookings, payments"))  # what autovacuum does in production
    for name in reconciliation.QUERIES:
        found = reconciliation._filtered(reconciliation.QUERIES[name], now)
        statement = select(found).limit(50)
        compiled = statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
        (plan,) = db.session.execute(text("EXPLAIN (FORMAT JSON) " + str(compiled))).scalar()
        nodes = list(_plan_nodes(plan["Plan"]))
        scans = {(n["Node Type"], n.get("Relation Name")) for n in nodes if "Relation Name" in n}
        full_scans = {relation for node_type, relation in scans if node_type == "Seq Scan" and relation in BIG_TABLES}
        assert not full_scans, f"{name} scans whole tables {full_scans}: {json.dumps(plan)[:2000]}"
        assert any("Index" in n["Node Type"] for n in nodes), f"{name} uses no index: {scans}"
        if name == "overlapping_bookings":
            probing = [(parent["Node Type"], child["Parent Relationship"], child["Node Type"], child.get("Index Name"))
                       for parent in nodes for child in parent.get("Plans", []) if child.get("Alias") == "bookings_1"]
            assert probing == [("Nested Loop", "Inner", "Index Only Scan", "ix_bookings_live_span")], \
                json.dumps(plan)[:3000]
