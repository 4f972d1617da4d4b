"""A small thread-safe LRU map, for the per-process caches that live in `app.extensions`."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRU:
    """At most `size` items, and, given `max_bytes` and `weigh` (an item's size in bytes), at most that many bytes
    in all: the least recently used go first. An item heavier than `max_bytes` on its own is not kept."""

    def __init__(self, size: int = 1024, *, max_bytes: int | None = None, weigh: Callable[[Any], int] | None = None):
        if (max_bytes is None) != (weigh is None):
            raise ValueError("max_bytes and weigh go together")
        self.size, self.max_bytes, self._weigh = size, max_bytes, weigh
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key, value) -> None:
        weight = self._weigh(value) if self._weigh else 0
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= self._weigh(old) if self._weigh else 0
            if self.max_bytes is not None and weight > self.max_bytes:
                return
            self._items[key] = value
            self._bytes += weight
            while len(self._items) > self.size or (self.max_bytes is not None and self._bytes > self.max_bytes):
                _, dropped = self._items.popitem(last=False)
                self._bytes -= self._weigh(dropped) if self._weigh else 0

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        """The weight of what is kept (0 without `weigh`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items


def app_cache(name: str, size: int = 1024, **bounds) -> LRU:
    """The current app's LRU called `name` in `app.extensions`, made on first use (one per app, so per database);
    `bounds`: `max_bytes` and `weigh`, as `LRU` takes them."""
    from flask import current_app

    cache = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions.setdefault(name, LRU(size, **bounds))
    return cache
