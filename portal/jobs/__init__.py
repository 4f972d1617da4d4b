"""Thin job entry points (RQ or in-process): ids in, one service call, clean session out.

The queue and job names live in `portal.dispatch`; jobs take ids and the clock is read here, at the edge.
"""
from __future__ import annotations

import functools
import time

from portal import logs, metrics, tracing
from portal.extensions import db


def _origin() -> tuple[str | None, dict | None]:
    """The request id and trace context of the request that queued this job: RQ keeps them in the job's meta;
    in-process jobs already run under them (None: the current trace context)."""
    from rq import get_current_job

    rq_job = get_current_job()
    if rq_job is not None:
        return rq_job.meta.get("request_id"), rq_job.meta.get("trace") or {}
    return logs.current_request_id(), None


def job(fn=None, *, concerns: tuple[type, int] | None = None):
    """Run a job under its request's id with a clean session afterwards: one log line, its run time and failures
    counted by job name.

    `concerns=(Model, i)` says the job is about one studio's row: `args[i]` is the id of a `Model` row (or of the
    `Studio` itself), and the job's log line names that studio. It is read after the job has run, because some rows
    (a webhook event) only learn their studio while being processed; a job that names it on the way
    (`logs.job_concerns`, as webhook processing does with the studio it read anyway) saves that query."""
    if fn is None:
        return functools.partial(job, concerns=concerns)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        outcome = "failed"
        request_id, trace = _origin()
        with (logs.request_id_scope(request_id), logs.job_studio_scope() as learnt,
              tracing.job_span(fn.__name__, trace, **{"job.args": repr(args)})):
            try:
                result = fn(*args, **kwargs)
                outcome = str(result)
                return result
            except Exception:
                metrics.job_failures.labels(fn.__name__).inc()
                raise
            finally:
                metrics.job_duration.labels(fn.__name__).observe(time.perf_counter() - started)
                studio = learnt.get("studio") or _studio_of(concerns, args)
                logs.log_job(fn.__name__, args, outcome, started, studio=studio)
                db.session.remove()

    return wrapper


def _studio_of(concerns: tuple[type, int] | None, args: tuple) -> tuple[int, str] | None:
    """(id, slug) of the studio a job is about, or None (a sweep, or a row without a studio yet). Never raises: a
    log line must not turn a job's outcome into a failure."""
    if concerns is None or len(args) <= concerns[1] or args[concerns[1]] is None:
        return None
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from portal import tenancy
    from portal.models import Studio

    model, index = concerns
    query = select(Studio.id, Studio.slug)
    query = (query.where(Studio.id == args[index]) if model is Studio else
             query.join(model, model.studio_id == Studio.id).where(model.id == args[index]))
    try:
        db.session.rollback()  # the job has committed what it meant to; after a failure the transaction is dead
        with tenancy.all_tenants():
            row = db.session.execute(query).first()
    except SQLAlchemyError:
        return None
    return (row.id, row.slug) if row is not None else None


def studio_scope_of(model, object_id: int):
    """The tenant scope of one tenant-owned row, for jobs that receive only its id."""
    from sqlalchemy import select

    from portal import tenancy

    with tenancy.all_tenants():
        studio_id = db.session.scalar(select(model.studio_id).where(model.id == object_id))
    return tenancy.scoped(studio_id) if studio_id is not None else tenancy.all_tenants()
