"""Startup objects frozen out of the collector's full passes, without leaking garbage or stopping collection."""
from __future__ import annotations

import gc
import runpy
import weakref
from pathlib import Path

import pytest

from portal.heap import freeze_startup_objects


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezing_collects_startup_garbage_first_and_later_garbage_is_still_collected(unfrozen):
    before = Node()
    left_over = weakref.ref(before)
    del before
    frozen = freeze_startup_objects()  # frozen objects freed later (their last reference gone) leave the count
    assert frozen > 1000
    assert left_over() is None, "garbage from before the freeze was frozen with the live objects"
    after = Node()
    later = weakref.ref(after)
    del after
    gc.collect()
    assert later() is None


def test_gunicorn_freezes_each_worker_once_its_app_is_loaded(unfrozen):
    settings = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    settings["post_worker_init"](None)
    assert gc.get_freeze_count() > 1000
