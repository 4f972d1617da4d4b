"""Thin job entry points (RQ or in-process): ids in, one service call, clean session out.

The queue and job names live in `portal.dispatch`; jobs take ids and the clock is read here, at the edge.
"""
from __future__ import annotations

import functools
import time

from portal import metrics
from portal.extensions import db


def job(fn):
    """Run a job with a clean session afterwards, counting its run time and failures by job name."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception:
            metrics.job_failures.labels(fn.__name__).inc()
            raise
        finally:
            metrics.job_duration.labels(fn.__name__).observe(time.perf_counter() - started)
            db.session.remove()

    return wrapper


def studio_scope_of(model, object_id: int):
    """The tenant scope of one tenant-owned row, for jobs that receive only its id."""
    from sqlalchemy import select

    from portal import tenancy

    with tenancy.all_tenants():
        studio_id = db.session.scalar(select(model.studio_id).where(model.id == object_id))
    return tenancy.scoped(studio_id) if studio_id is not None else tenancy.all_tenants()
