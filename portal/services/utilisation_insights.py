"""Unusual utilisation per resource (seed 000's anomaly endpoints): point z-scores, Holt–Winters residuals with a
weekly season, CUSUM for sustained shifts, and a severity per resource with a recommended action.

Daily utilisation is a resource's confirmed (or no-show: the lesson took place) lesson minutes starting on a
studio-local day over its capacity for a day (`capacity_minutes`), 0–1 (it can pass 1 when lessons overrun the
stated capacity). The window ends on the day before `today` (today is not over).

Why each method finds what it finds:
- z-score: `|x − mean| / std` over the window; a one-day spike stands out, a shift halfway through does not
  (each half is within about one standard deviation of the mean of both).
- Holt–Winters (statsmodels, additive weekly season): the one-step-ahead forecast learns the weekly rhythm, so a
  steady "busy Saturday, quiet Monday" pattern leaves tiny residuals; a day that breaks the rhythm does not.
- CUSUM: standardised deviations from a baseline (median and MAD of the first `baseline` days) accumulate with a
  slack of `k` and alarm past `h`. Each day's deviation is clipped to `h − k`, so no single day, however
  extreme, can alarm on its own: it takes a run of days, which is what a level shift is.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select

from portal.extensions import db
from portal.models import Booking, BookingStatus, Resource, Studio

TOOK_PLACE = (BookingStatus.CONFIRMED, BookingStatus.NO_SHOW)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SEASON = 7
NO_ACTION = "No action needed."
#: A robust standard deviation is never taken below this (3 points of utilisation, about one 15-minute lesson in an
#: 8-hour day), so a flat or nearly flat history does not turn every small wobble into an alarm.
MIN_SIGMA = 0.03


class InvalidParameter(ValueError):
    def __init__(self, name: str, detail: str):
        super().__init__(f"{name}: {detail}")
        self.name, self.detail = name, detail


@dataclass(frozen=True)
class History:
    resource: str               # slug
    name: str
    days: list[date]
    values: list[float]


# --- parameters --------------------------------------------------------------------------------------------------

def number(args, name: str, default: float, low: float, high: float, *, whole: bool = False) -> float:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise InvalidParameter(name, f"must be {kind}, got {raw!r}") from None
    if not low <= value <= high or value != value:
        raise InvalidParameter(name, f"must be between {low:g} and {high:g}, got {raw}")
    return value


def end_day(args, today: date) -> date:
    """The last day of the window: `to` (YYYY-MM-DD, before today) or yesterday."""
    raw = args.get("to")
    if not raw:
        return today - timedelta(days=1)
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter("to", f"must be a date as YYYY-MM-DD, got {raw!r}") from None
    if day >= today:
        raise InvalidParameter("to", "must be a day that is over (before today)")
    return day


# --- the data ----------------------------------------------------------------------------------------------------

def _midnight(studio: Studio, day: date) -> datetime:
    return datetime.combine(day, time.min, studio.tz).astimezone(timezone.utc)


def histories(studio: Studio, last: date, window: int, resource: str | None = None) -> list[History]:
    """Daily utilisation of each active resource (or the one named) over `window` days ending on `last`."""
    first = last - timedelta(days=window - 1)
    query = select(Resource).where(Resource.studio_id == studio.id, Resource.active.is_(True))
    if resource:
        query = query.where(Resource.slug == resource)
    resources = db.session.scalars(query.order_by(Resource.name)).all()
    if resource and not resources:
        raise InvalidParameter("resource", f"no active resource {resource!r} in this studio")
    rows = db.session.execute(
        select(Booking.resource_id, Booking.start_at, Booking.end_at)
        .where(Booking.studio_id == studio.id, Booking.status.in_(TOOK_PLACE),
               Booking.start_at >= _midnight(studio, first),
               Booking.start_at < _midnight(studio, last + timedelta(days=1)),
               Booking.resource_id.in_([r.id for r in resources]))).all()
    minutes: dict[tuple[int, date], float] = {}
    for resource_id, start, end in rows:
        key = (resource_id, start.astimezone(studio.tz).date())
        minutes[key] = minutes.get(key, 0) + (end - start) / timedelta(minutes=1)
    days = [first + timedelta(days=i) for i in range(window)]
    return [History(r.slug, r.name, days,
                    [round(minutes.get((r.id, day), 0) / r.capacity_minutes, 4) if r.capacity_minutes else 0.0
                     for day in days])
            for r in resources]


# --- the methods (plain lists in, findings out) -------------------------------------------------------------------

def zscore_anomalies(values: list[float], threshold: float) -> list[tuple[int, float]]:
    """(index, z) of each day whose |z| reaches `threshold`."""
    if len(values) < 3:
        return []
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    if std == 0:
        return []
    return [(i, round((x - mean) / std, 3)) for i, x in enumerate(values) if abs(x - mean) / std >= threshold]


def seasonal_anomalies(values: list[float], threshold: float, min_delta: float) -> list[tuple[int, float, float]]:
    """(index, expected, residual) of each day whose Holt–Winters residual passes both `threshold` standard
    deviations of the residuals and `min_delta` (utilisation points) in size."""
    import numpy as np
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    series = np.asarray(values, dtype=float)
    if series.std() == 0:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels warns about convergence on short or flat series
        fit = ExponentialSmoothing(series, seasonal="add", seasonal_periods=SEASON,
                                   initialization_method="estimated").fit()
    expected = np.asarray(fit.fittedvalues)
    residuals = series - expected
    spread = float(np.std(residuals))
    limit = max(threshold * spread, min_delta)
    return [(i, round(float(expected[i]), 4), round(float(residuals[i]), 4))
            for i in range(len(series)) if abs(residuals[i]) > limit]


@dataclass(frozen=True)
class Shift:
    direction: str      # up | down
    start: int          # index of the first day of the run that alarmed
    detected: int       # index of the day the sum passed h
    baseline: float     # what the baseline's weekly profile expects from `start` on (mean)
    level: float        # mean from `start` to the end of the window
    ongoing: bool = False  # still past the limit on the window's last day


def cusum_shifts(values: list[float], baseline_days: int, k: float, h: float) -> list[Shift]:
    """Sustained shifts against the baseline's weekly profile: each day is compared with the median of the same
    weekday (same position modulo 7) over the first `baseline_days`, in robust standard deviations."""
    base = values[:baseline_days]
    profile = [statistics.median(base[day::SEASON]) for day in range(SEASON)]
    expected = [profile[i % SEASON] for i in range(len(values))]
    # A later day's deviation from a profile fitted on n weeks spreads wider than the baseline's own residuals
    # (by sqrt((n + 1) / (n - 1)) for a mean of n): scale up, or noise alone would drift past h.
    weeks = max(2, baseline_days // SEASON)
    spread = 1.4826 * statistics.median(abs(x - expected[i]) for i, x in enumerate(base))
    sigma = max(spread * math.sqrt((weeks + 1) / (weeks - 1)), MIN_SIGMA)
    cap = h - k  # no single day can push a sum past h on its own
    found: list[Shift] = []
    sums = {"up": 0.0, "down": 0.0}
    starts: dict[str, int | None] = {"up": None, "down": None}
    for i in range(baseline_days, len(values)):
        z = max(-cap, min(cap, (values[i] - expected[i]) / sigma))
        for direction, step in (("up", z - k), ("down", -z - k)):
            was_alarmed = sums[direction] > h
            sums[direction] = max(0.0, sums[direction] + step)
            if sums[direction] == 0:
                starts[direction] = None
            elif starts[direction] is None:
                starts[direction] = i
            if sums[direction] > h and not was_alarmed:  # one finding per shift, however long it lasts
                begun = starts[direction]
                found.append(Shift(direction, begun, i, round(statistics.fmean(expected[begun:]), 4),
                                   round(statistics.fmean(values[begun:]), 4)))
    for direction in ("up", "down"):
        last = next((n for n in range(len(found) - 1, -1, -1) if found[n].direction == direction), None)
        if last is not None and sums[direction] > h:
            found[last] = dataclasses.replace(found[last], ongoing=True)
    return found


# --- the answers -------------------------------------------------------------------------------------------------

def point_report(items: list[History], threshold: float) -> list[dict]:
    return [{"resource": h.resource, "mean": round(statistics.fmean(h.values), 4),
             "anomalies": [{"date": h.days[i].isoformat(), "utilization": h.values[i], "z": z}
                           for i, z in zscore_anomalies(h.values, threshold)]} for h in items]


def seasonal_report(items: list[History], threshold: float, min_delta: float) -> list[dict]:
    return [{"resource": h.resource,
             "anomalies": [{"date": h.days[i].isoformat(), "utilization": h.values[i], "expected": expected,
                            "residual": residual}
                           for i, expected, residual in seasonal_anomalies(h.values, threshold, min_delta)]}
            for h in items]


def persistence_report(items: list[History], baseline_days: int, k: float, h: float) -> list[dict]:
    return [{"resource": item.resource,
             "shifts": [{"direction": s.direction, "started": item.days[s.start].isoformat(),
                         "detected": item.days[s.detected].isoformat(), "baseline": s.baseline, "level": s.level,
                         "ongoing": s.ongoing}
                        for s in cusum_shifts(item.values, baseline_days, k, h)]} for item in items]


def _busiest_weekday(history: History) -> tuple[str, float]:
    by_day: dict[int, list[float]] = {}
    for day, value in zip(history.days, history.values, strict=True):
        by_day.setdefault(day.weekday(), []).append(value)
    weekday, values = max(by_day.items(), key=lambda item: statistics.fmean(item[1]))
    return WEEKDAYS[weekday], statistics.fmean(values)


def _weekday_mean(history: History) -> float:
    weekdays = [v for day, v in zip(history.days, history.values, strict=True) if day.weekday() < 5]
    return statistics.fmean(weekdays) if weekdays else 0.0


def severity(history: History, *, threshold: float = 3.0, baseline_days: int = 14, k: float = 0.5,
             h: float = 5.0, recent_days: int = 7) -> dict:
    """A tier (high, medium, low, none), the findings behind it and one recommended action, in words."""
    recent_from = len(history.values) - recent_days
    points = zscore_anomalies(history.values, threshold)
    shifts = cusum_shifts(history.values, baseline_days, k, h) if len(history.values) > baseline_days else []
    recent_points = [(i, z) for i, z in points if i >= recent_from]
    ongoing = [s for s in shifts if s.ongoing]
    if ongoing or len(recent_points) >= 2:
        tier = "high"
    elif recent_points:
        tier = "medium"
    elif points or shifts:
        tier = "low"
    else:
        tier = "none"
    # Where a shift goes on, what matters is the time since it started.
    recent = history if not ongoing else History(history.resource, history.name, history.days[ongoing[-1].start:],
                                                 history.values[ongoing[-1].start:])
    weekday, busiest = _busiest_weekday(recent)
    name = history.name
    if ongoing and ongoing[-1].direction == "up" or busiest >= 0.85:
        action = f"Add {weekday} hours to {name}: {round(busiest * 100)}% booked on {weekday}s."
    elif ongoing and ongoing[-1].direction == "down" or _weekday_mean(recent) < 0.1:
        action = (f"{name} idle on weekdays ({round(_weekday_mean(recent) * 100)}% booked): fewer weekday hours, "
                  "or a weekday offer.")
    elif recent_points:
        i, _z = recent_points[-1]
        action = (f"Check {history.days[i].isoformat()}: {name} was {round(history.values[i] * 100)}% booked "
                  f"against a usual {round(statistics.median(history.values) * 100)}%.")
    else:
        action = NO_ACTION
    findings = [f"{name} was {round(history.values[i] * 100)}% booked on {history.days[i].isoformat()}, against a "
                f"usual {round(statistics.median(history.values) * 100)}% (z = {z})." for i, z in points]
    findings += [f"{name} moved {s.direction} from {round(s.baseline * 100)}% to about {round(s.level * 100)}% "
                 f"from {history.days[s.start].isoformat()}." for s in shifts]
    return {"resource": history.resource, "tier": tier, "action": action, "findings": findings,
            "point_anomalies": len(points), "shifts": len(shifts)}
