"""Thin job entry points (RQ or in-process): ids in, one service call, clean session out.

The queue and job names live in `portal.dispatch`; jobs take ids and the clock is read here, at the edge.
"""
from __future__ import annotations

import functools

from portal.extensions import db


def job(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.session.remove()

    return wrapper
