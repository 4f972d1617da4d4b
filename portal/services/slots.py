"""Pure slot computation for lesson booking (stdlib only, no DB, no Flask).

Opening hours are weekly rules in studio-local wall time; everything that is
an instant (blackouts, busy spans, ``now``) is a timezone-aware datetime and is
compared in UTC.  Candidate starts are generated on the local wall clock so a
"16:00" slot exists every day, including DST-change days, while lesson lengths
are real elapsed time.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

UTC = timezone.utc
MAX_RANGE_DAYS = 62


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


@dataclass(frozen=True)
class WeeklyRule:
    weekday: int  # 0=Monday .. 6=Sunday, studio-local
    start: time  # studio-local wall time, naive
    end: time  # studio-local wall time, naive; end > start

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0..6, got {self.weekday}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("rule times must be naive studio-local wall times")
        if self.end <= self.start:
            raise ValueError("rule end must be after start (no windows crossing midnight)")


@dataclass(frozen=True)
class Interval:
    start: datetime  # timezone-aware
    end: datetime  # timezone-aware, end > start

    def __post_init__(self) -> None:
        _require_aware(self.start, "Interval.start")
        _require_aware(self.end, "Interval.end")
        if self.end <= self.start:
            raise ValueError("Interval end must be after start")

    def overlaps(self, other: Interval) -> bool:
        """Half-open [start, end) overlap: touching intervals do not overlap."""
        return self.start < other.end and other.start < self.end


class _IntervalIndex:
    """Answers "does [a, b) overlap any stored interval?" in O(log n).

    Intervals are sorted by start; ``_max_end[i]`` is the latest end among the
    first i+1 of them.  Only intervals with start < b can overlap, and one of
    those overlaps iff the latest of their ends is > a.  This works even when
    the stored intervals overlap each other or have very different lengths.
    """

    def __init__(self, intervals: Sequence[Interval]) -> None:
        pairs = sorted((iv.start.astimezone(UTC), iv.end.astimezone(UTC)) for iv in intervals)
        self._starts = [s for s, _ in pairs]
        self._max_end: list[datetime] = []
        for _, e in pairs:
            self._max_end.append(e if not self._max_end else max(e, self._max_end[-1]))

    def overlaps(self, a: datetime, b: datetime) -> bool:
        n = bisect_left(self._starts, b)  # intervals with start < b
        return n > 0 and self._max_end[n - 1] > a


def _existing_instant(naive: datetime, tz: tzinfo) -> datetime | None:
    """UTC instant of a local wall time (fold=0), or None if it falls in a DST gap."""
    utc = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return utc


def _steady_offset(day: date, tz: tzinfo) -> timedelta | None:
    """The zone's UTC offset all through local `day`, or None when a clock change falls on it.

    Most days have one offset, and then a wall time converts by subtracting it: the same instant the general
    path (`_existing_instant`, `_end_instant`) finds, at a fraction of the cost of a zone lookup per candidate.
    The offset is read at the day's start, noon and the next day's start; no zone changes its clocks twice
    within half a day.
    """
    first = datetime.combine(day, time.min, tz).utcoffset()
    if (first is None or datetime.combine(day, time(12), tz).utcoffset() != first
            or datetime.combine(day + timedelta(days=1), time.min, tz).utcoffset() != first):
        return None
    return first


def _end_instant(naive: datetime, tz: tzinfo) -> datetime:
    """UTC instant at which wall time ``naive`` is reached on the local clock.

    Normally the fold=0 conversion.  For a wall time inside a spring-forward gap
    it is the transition itself (the first instant whose wall time is >= it),
    found by bisection between the two candidate offsets; neither fold gives it.
    """
    exact = _existing_instant(naive, tz)
    if exact is not None:
        return exact
    lo = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)  # pre-transition, wall < naive
    lo_k, hi_k = 0, int((naive.replace(tzinfo=tz, fold=0).astimezone(UTC) - lo).total_seconds())
    while hi_k - lo_k > 1:  # invariant: wall(lo + lo_k s) < naive <= wall(lo + hi_k s)
        mid = (lo_k + hi_k) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).replace(tzinfo=None) < naive:
            lo_k = mid
        else:
            hi_k = mid
    return lo + timedelta(seconds=hi_k)

def _validate(duration: timedelta, buffer: timedelta, notice: timedelta,
              step: timedelta, now: datetime) -> None:
    _require_aware(now, "now")
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    if buffer < timedelta(0):
        raise ValueError("buffer must not be negative")
    if notice < timedelta(0):
        raise ValueError("notice must not be negative")


def _day_slots(tz: tzinfo, day: date, rules: Sequence[WeeklyRule], blackouts: _IntervalIndex,
               busy: _IntervalIndex, duration: timedelta, buffer: timedelta,
               step: timedelta, earliest: datetime) -> list[datetime]:
    found: set[datetime] = set()  # UTC instants: dedupes overlapping rules safely
    offset = _steady_offset(day, tz)
    for rule in rules:
        if rule.weekday != day.weekday():
            continue
        wall, wall_end = datetime.combine(day, rule.start), datetime.combine(day, rule.end)
        window_end = (wall_end - offset).replace(tzinfo=UTC) if offset is not None else _end_instant(wall_end, tz)
        while wall < wall_end:
            start = (wall - offset).replace(tzinfo=UTC) if offset is not None else _existing_instant(wall, tz)
            wall += step
            if start is None or start in found:
                continue
            lesson_end = start + duration
            if lesson_end > window_end:
                continue
            if (start < earliest
                    or blackouts.overlaps(start, lesson_end)
                    or busy.overlaps(start, lesson_end + buffer)):
                continue
            found.add(start)
    # Convert sorted UTC instants back to local; astimezone() sets fold correctly.
    # (Do not dedupe after this step: same-zone aware comparison ignores fold.)
    return [s.astimezone(tz) for s in sorted(found)]


def free_slots(*, tz: ZoneInfo, day: date, rules: Sequence[WeeklyRule], blackouts: Sequence[Interval],
               busy: Sequence[Interval], duration: timedelta, buffer: timedelta, notice: timedelta,
               step: timedelta, now: datetime) -> list[datetime]:
    """Bookable lesson start times on studio-local ``day``, sorted, aware in ``tz``.

    A start is bookable if the lesson fits in a rule window, does not touch a
    blackout, its occupied span [start, start+duration+buffer) misses every busy
    span, and start >= now + notice.
    """
    return free_slots_range(tz=tz, first_day=day, last_day=day, rules=rules, blackouts=blackouts,
                            busy=busy, duration=duration, buffer=buffer, notice=notice,
                            step=step, now=now)[day]


def free_slots_range(*, tz: ZoneInfo, first_day: date, last_day: date, rules: Sequence[WeeklyRule],
                     blackouts: Sequence[Interval], busy: Sequence[Interval], duration: timedelta,
                     buffer: timedelta, notice: timedelta, step: timedelta,
                     now: datetime) -> dict[date, list[datetime]]:
    """``free_slots`` for every day in [first_day, last_day] (at most 62 days).

    Blackouts and busy spans are indexed once for the whole range, so each
    candidate check is O(log n) regardless of how many lessons exist.
    Every day in the range is a key, with an empty list if nothing is free.
    """
    _validate(duration, buffer, notice, step, now)
    if last_day < first_day:
        raise ValueError("last_day must not be before first_day")
    n_days = (last_day - first_day).days + 1
    if n_days > MAX_RANGE_DAYS:
        raise ValueError(f"range is {n_days} days; at most {MAX_RANGE_DAYS} allowed")
    blackout_index, busy_index = _IntervalIndex(blackouts), _IntervalIndex(busy)
    earliest = now.astimezone(UTC) + notice
    result: dict[date, list[datetime]] = {}
    for offset in range(n_days):
        day = first_day + timedelta(days=offset)
        result[day] = _day_slots(tz, day, rules, blackout_index, busy_index,
                                 duration, buffer, step, earliest)
    return result
