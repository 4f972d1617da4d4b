"""With 100,000 bookings and 100,000 webhook events on PostgreSQL, the metrics collector's queries read indexes:
a scrape never scans a whole big table, and the only bookings it reads are the live ones starting before tomorrow,
from a covering index alone (the rest comes from the running totals)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import event, select, text

from benchmarks.bulk_data import fill
from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import Package, Resource, Role
from portal.services import stats
from tests.factories import make_studio, make_user
from tests.ops.test_query_plans import BIG_TABLES, _plan_nodes


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_the_booking_figures_read_indexes(app_ctx):
    studio = make_studio(resources=tuple(f"room-{i}" for i in range(20)))
    student = make_user("student@example.com", roles=[(studio, Role.STUDENT)])
    with tenancy.all_tenants():
        package_id = db.session.scalar(select(Package.id).where(Package.studio_id == studio.id).limit(1))
        resources = list(db.session.scalars(select(Resource.id).where(Resource.studio_id == studio.id)))
    now = utcnow()
    fill(studio.id, student.id, package_id, resources, bookings=100_000, events=100_000, now=now)
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE bookings"))  # what autovacuum does in production

    statements = []

    def remember(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        figures = stats.booking_stats(now)
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert sum(f.confirmed for f in figures.resources.values()) > 50_000  # the data is there
    assert len(statements) >= 4
    connection = db.session.connection()
    soon = 0
    for statement, parameters in statements:
        (plan,) = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        nodes = list(_plan_nodes(plan["Plan"]))
        full_scans = {n["Relation Name"] for n in nodes
                      if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in BIG_TABLES}
        assert not full_scans, f"scans whole tables {full_scans}: {statement}\n{json.dumps(plan)[:2000]}"
        scans = [n for n in nodes if n.get("Relation Name") == "bookings"]
        if "FROM bookings" in statement:
            # The live bookings starting before tomorrow: holds and lessons, each a range of starts in an index (the
            # covering status/start index once there are many).
            assert len(scans) == 2 and all(n["Node Type"] in ("Index Only Scan", "Index Scan")
                                           and "start_at >=" in n.get("Index Cond", "") for n in scans), \
                json.dumps(plan)[:2000]
            soon += 1
        else:
            assert not scans, statement
    assert soon == 1
