"""The collector and a long-running process's startup objects.

By the time a web or worker process is ready it holds a couple of hundred thousand objects that live as long as it
does (modules, the models' mappers, compiled templates, the configuration). Python's cyclic collector walks all of
them on every full (oldest-generation) collection, tens of milliseconds each, and a request that happens to trigger
one pays for it: the long tail of `/metrics` scrapes, which build thousands of samples, was mostly that. Freezing
them once at startup (`gc.freeze`, the standard library's tool for this) moves them where the collector no longer
looks; what the process allocates afterwards is collected as before.
"""
from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect the garbage startup left, then freeze every object still alive. Call once, when the process is about
    to serve (after the app is created). Returns how many objects are now frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
