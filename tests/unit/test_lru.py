"""The per-process LRU: bounded by count and, when it weighs its items, by bytes."""
from __future__ import annotations

import pytest

from portal.lru import LRU


def test_the_least_recently_used_goes_first_when_the_count_is_reached():
    cache = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache.put("c", 3)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True) and len(cache) == 2


def test_the_byte_bound_drops_the_oldest_until_the_rest_fit():
    cache = LRU(100, max_bytes=10, weigh=len)
    for key, value in (("a", b"1234"), ("b", b"1234"), ("c", b"12")):
        cache.put(key, value)
    assert cache.bytes == 10 and len(cache) == 3
    cache.put("d", b"123")
    assert "a" not in cache and cache.bytes == 9 and [k in cache for k in "bcd"] == [True] * 3
    cache.put("b", b"1")  # a new value for a key is weighed afresh
    assert cache.bytes == 6 and cache.get("b") == b"1"


def test_an_item_heavier_than_the_whole_budget_is_not_kept_and_its_old_value_goes():
    cache = LRU(100, max_bytes=10, weigh=len)
    cache.put("a", b"123")
    cache.put("b", b"12")
    cache.put("a", b"x" * 11)
    assert "a" not in cache and cache.get("b") == b"12" and cache.bytes == 2
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_a_byte_bound_needs_a_way_to_weigh():
    with pytest.raises(ValueError):
        LRU(10, max_bytes=100)
