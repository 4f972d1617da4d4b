"""Unit tests for portal.services.slots (pure: no DB, no Flask, clock passed in)."""
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from portal.services.slots import Interval, WeeklyRule, free_slots, free_slots_range

NY = ZoneInfo("America/New_York")
UTC = timezone.utc
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
PAST = datetime(2000, 1, 1, tzinfo=UTC)  # a "now" long before every test day

MON = date(2026, 6, 1)  # a Monday, EDT (-04:00)
assert MON.weekday() == 0


def local(d, hh, mm=0, tz=NY):
    return datetime.combine(d, time(hh, mm), tzinfo=tz)


MONDAY_MORNINGS = (WeeklyRule(0, time(9), time(12)),)


def slots(day=MON, rules=MONDAY_MORNINGS, blackouts=(), busy=(),
          duration=HOUR, buffer=timedelta(0), notice=timedelta(0), step=30 * MIN, now=PAST):
    return free_slots(tz=NY, day=day, rules=rules, blackouts=blackouts, busy=busy,
                      duration=duration, buffer=buffer, notice=notice, step=step, now=now)


def hm(result):
    return [(s.hour, s.minute) for s in result]


# --- weekly rules ---------------------------------------------------------------

def test_rule_window_and_step():
    assert hm(slots()) == [(9, 0), (9, 30), (10, 0), (10, 30), (11, 0)]


def test_window_end_is_respected():
    # 11:30 would end 12:30 > 12:00; 11:00 ends exactly at 12:00 and is allowed.
    result = slots()
    assert local(MON, 11) in result
    assert local(MON, 11, 30) not in result


def test_step_controls_spacing():
    assert hm(slots(step=45 * MIN)) == [(9, 0), (9, 45), (10, 30)]


def test_weekday_matching():
    rules = (WeeklyRule(1, time(9), time(12)),)  # Tuesday only
    assert slots(day=MON, rules=rules) == []
    assert hm(slots(day=MON + timedelta(days=1), rules=rules))[0] == (9, 0)


def test_results_are_local_aware_with_correct_offset():
    s = slots()[0]
    assert s.tzinfo is NY
    assert s.utcoffset() == timedelta(hours=-4)
    assert s.astimezone(UTC) == datetime(2026, 6, 1, 13, tzinfo=UTC)


def test_overlapping_rules_produce_no_duplicates():
    rules = (WeeklyRule(0, time(9), time(12)), WeeklyRule(0, time(10), time(13)),
             WeeklyRule(0, time(9), time(12)))
    result = slots(rules=rules)
    assert len(result) == len(set(result))
    assert result == sorted(result)
    assert hm(result) == [(9, 0), (9, 30), (10, 0), (10, 30), (11, 0), (11, 30), (12, 0)]


def test_rules_on_other_step_grids_are_merged_sorted():
    rules = (WeeklyRule(0, time(10, 15), time(12)), WeeklyRule(0, time(9), time(11)))
    assert hm(slots(rules=rules, step=HOUR)) == [(9, 0), (10, 0), (10, 15)]


# --- blackouts ------------------------------------------------------------------

def test_blackout_partial_overlap():
    blackout = Interval(local(MON, 10, 15).astimezone(UTC), local(MON, 10, 45).astimezone(UTC))
    # 9:30 ends 10:30 -> overlaps; 9:00 ends 10:00 -> fine; 10:45 start is after the blackout.
    assert hm(slots(blackouts=(blackout,), step=15 * MIN)) == [(9, 0), (9, 15), (10, 45), (11, 0)]


def test_blackout_touching_edges_do_not_block():
    blackout = Interval(local(MON, 10), local(MON, 11))
    assert hm(slots(blackouts=(blackout,))) == [(9, 0), (11, 0)]


def test_blackout_whole_day():
    blackout = Interval(datetime(2026, 6, 1, 4, tzinfo=UTC), datetime(2026, 6, 2, 4, tzinfo=UTC))
    assert slots(blackouts=(blackout,)) == []
    assert slots(day=MON + timedelta(days=7), blackouts=(blackout,)) != []


def test_blackout_does_not_include_buffer():
    # Buffer only matters against busy spans: a lesson may end right at a blackout.
    blackout = Interval(local(MON, 11), local(MON, 12))
    assert local(MON, 10) in slots(blackouts=(blackout,), buffer=15 * MIN)


# --- busy + buffer ----------------------------------------------------------------

def test_busy_and_buffer_edges():
    rules = (WeeklyRule(0, time(8), time(13)),)
    existing = Interval(local(MON, 10), local(MON, 11, 15))  # 60 min lesson + 15 min buffer
    result = slots(rules=rules, busy=(existing,), buffer=15 * MIN, step=15 * MIN)
    assert local(MON, 11) not in result
    assert local(MON, 11, 15) in result
    assert local(MON, 9) not in result  # occupies [9:00, 10:15)
    assert local(MON, 8, 45) in result  # occupies [8:45, 10:00)
    assert hm(result)[:4] == [(8, 0), (8, 15), (8, 30), (8, 45)]
    assert hm(result)[4] == (11, 15)


def test_busy_in_other_timezone_is_compared_as_instant():
    existing = Interval(datetime(2026, 6, 1, 14, tzinfo=UTC), datetime(2026, 6, 1, 15, tzinfo=UTC))
    assert hm(slots(busy=(existing,))) == [(9, 0), (11, 0)]  # 10:00-11:00 EDT busy


def test_long_busy_interval_hidden_behind_later_short_ones():
    # A long span starting early must still block even though later spans end sooner.
    busy = (Interval(local(MON, 8), local(MON, 12)), Interval(local(MON, 9), local(MON, 9, 5)))
    assert slots(busy=busy) == []


# --- notice / now -------------------------------------------------------------------

def test_notice_boundary_exact_is_allowed():
    notice = 2 * HOUR
    now = local(MON, 8)  # now + notice == 10:00
    result = slots(now=now, notice=notice)
    assert result[0] == local(MON, 10)
    later = slots(now=now + MIN, notice=notice)  # now + notice == 10:01
    assert local(MON, 10) not in later
    assert later[0] == local(MON, 10, 30)


def test_notice_with_now_in_other_timezone():
    now = datetime(2026, 6, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT
    assert hm(slots(now=now, notice=HOUR)) == [(10, 0), (10, 30), (11, 0)]


def test_no_past_slots():
    now = local(MON, 10, 10)
    assert hm(slots(now=now)) == [(10, 30), (11, 0)]
    assert slots(now=local(MON + timedelta(days=1), 0)) == []


# --- validation -------------------------------------------------------------------

def test_naive_inputs_rejected():
    with pytest.raises(ValueError):
        slots(now=datetime(2026, 6, 1, 8))
    with pytest.raises(ValueError):
        Interval(datetime(2026, 6, 1, 8), datetime(2026, 6, 1, 9, tzinfo=UTC))
    with pytest.raises(ValueError):
        Interval(datetime(2026, 6, 1, 8, tzinfo=UTC), datetime(2026, 6, 1, 9))


@pytest.mark.parametrize("kwargs", [
    {"duration": timedelta(0)}, {"duration": -HOUR}, {"step": timedelta(0)}, {"step": -MIN},
])
def test_non_positive_duration_or_step_rejected(kwargs):
    with pytest.raises(ValueError):
        slots(**kwargs)


def test_invalid_rules_and_intervals_rejected():
    with pytest.raises(ValueError):
        WeeklyRule(0, time(12), time(9))
    with pytest.raises(ValueError):
        WeeklyRule(7, time(9), time(12))
    with pytest.raises(ValueError):
        Interval(local(MON, 10), local(MON, 10))


def test_interval_overlaps_is_half_open():
    a = Interval(local(MON, 9), local(MON, 10))
    assert not a.overlaps(Interval(local(MON, 10), local(MON, 11)))
    assert not Interval(local(MON, 10), local(MON, 11)).overlaps(a)
    assert a.overlaps(Interval(local(MON, 9, 59), local(MON, 11)))
    assert a.overlaps(Interval(local(MON, 9, 10), local(MON, 9, 20)))


# --- range ------------------------------------------------------------------------

def range_slots(first, last, **kw):
    args = dict(tz=NY, rules=(WeeklyRule(0, time(9), time(12)), WeeklyRule(2, time(14), time(16))),
                blackouts=(), busy=(), duration=HOUR, buffer=timedelta(0), notice=timedelta(0),
                step=HOUR, now=PAST)
    args.update(kw)
    return free_slots_range(first_day=first, last_day=last, **args)


def test_range_matches_per_day_results():
    first, last = MON, MON + timedelta(days=13)
    result = range_slots(first, last)
    assert list(result) == [first + timedelta(days=i) for i in range(14)]
    for day, day_slots in result.items():
        expected = free_slots(tz=NY, day=day, rules=(WeeklyRule(0, time(9), time(12)),
                                                      WeeklyRule(2, time(14), time(16))),
                              blackouts=(), busy=(), duration=HOUR, buffer=timedelta(0),
                              notice=timedelta(0), step=HOUR, now=PAST)
        assert day_slots == expected
    assert hm(result[MON]) == [(9, 0), (10, 0), (11, 0)]
    assert hm(result[MON + timedelta(days=2)]) == [(14, 0), (15, 0)]
    assert result[MON + timedelta(days=1)] == []


def test_range_single_day_and_validation():
    assert list(range_slots(MON, MON)) == [MON]
    with pytest.raises(ValueError):
        range_slots(MON, MON - timedelta(days=1))
    assert len(range_slots(MON, MON + timedelta(days=61))) == 62
    with pytest.raises(ValueError):
        range_slots(MON, MON + timedelta(days=62))
    with pytest.raises(ValueError):
        range_slots(MON, MON, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        range_slots(MON, MON, step=timedelta(0))


def test_range_with_many_busy_intervals():
    # 31 days x 1-minute busy spans every minute of 09:xx and 11:xx: 3720 intervals.
    busy = []
    for d in range(31):
        day = MON + timedelta(days=d)
        for h in (9, 11):
            for m in range(60):
                start = local(day, h, m)
                busy.append(Interval(start, start + 30 * timedelta(seconds=1)))
    busy.reverse()  # unsorted input must be fine
    rules = tuple(WeeklyRule(d, time(8), time(13)) for d in range(7))
    result = range_slots(MON, MON + timedelta(days=30), busy=tuple(busy), rules=rules)
    assert len(result) == 31
    for day_slots in result.values():
        assert hm(day_slots) == [(8, 0), (10, 0), (12, 0)]


# --- DST (America/New_York) ---------------------------------------------------------

@pytest.mark.parametrize("day, offset_hours", [
    (date(2026, 3, 1), -5), (date(2026, 3, 8), -4), (date(2026, 10, 25), -4), (date(2026, 11, 1), -5),
])
def test_dst_sundays_keep_16h_local_slot(day, offset_hours):
    assert day.weekday() == 6
    result = slots(day=day, rules=(WeeklyRule(6, time(9), time(18)),), step=HOUR)
    at_16 = [s for s in result if s.hour == 16 and s.minute == 0]
    assert len(at_16) == 1
    assert at_16[0].utcoffset() == timedelta(hours=offset_hours)
    assert at_16[0].astimezone(UTC).hour == 16 - offset_hours
    assert hm(result) == [(h, 0) for h in range(9, 18)]


def test_spring_forward_gap_skipped():
    day = date(2026, 3, 8)
    result = slots(day=day, rules=(WeeklyRule(6, time(1), time(4)),), duration=30 * MIN)
    assert (2, 0) not in hm(result) and (2, 30) not in hm(result)
    assert hm(result) == [(1, 0), (1, 30), (3, 0), (3, 30)]
    # Real elapsed time: 01:30 EST -> 03:00 EDT is only 30 minutes.  (Subtracting two
    # datetimes in the same zone gives wall-clock difference, so compare in UTC.)
    assert result[2].astimezone(UTC) - result[1].astimezone(UTC) == 30 * MIN
    assert result[2] - result[1] == 90 * MIN


def test_spring_forward_duration_is_real_time():
    # 01:00-04:00 wall is only 2 real hours on 2026-03-08: a 150-min lesson cannot fit.
    day = date(2026, 3, 8)
    rules = (WeeklyRule(6, time(1), time(4)),)
    assert slots(day=day, rules=rules, duration=150 * MIN) == []
    assert hm(slots(day=day, rules=rules, duration=2 * HOUR)) == [(1, 0)]


def test_window_end_inside_gap_means_transition():
    # A window ending at 02:30 (does not exist) ends when the clock jumps, 03:00 EDT.
    day = date(2026, 3, 8)
    rules = (WeeklyRule(6, time(1), time(2, 30)),)
    assert hm(slots(day=day, rules=rules, duration=HOUR)) == [(1, 0)]
    assert slots(day=day, rules=rules, duration=HOUR + MIN) == []


def test_fall_back_ambiguous_slot_appears_once():
    day = date(2026, 11, 1)
    result = slots(day=day, rules=(WeeklyRule(6, time(1), time(4)),), duration=30 * MIN)
    at_0130 = [s for s in result if (s.hour, s.minute) == (1, 30)]
    assert len(at_0130) == 1
    assert at_0130[0].utcoffset() == timedelta(hours=-4)  # first occurrence (EDT)
    assert hm(result) == [(1, 0), (1, 30), (2, 0), (2, 30), (3, 0), (3, 30)]
    instants = [s.astimezone(UTC) for s in result]
    assert instants == sorted(instants) and len(set(instants)) == len(instants)


def test_fall_back_busy_in_second_occurrence_does_not_block_first():
    day = date(2026, 11, 1)
    second_0130 = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST
    busy = (Interval(second_0130, second_0130 + 30 * MIN),)
    result = slots(day=day, rules=(WeeklyRule(6, time(1), time(4)),), duration=30 * MIN, busy=busy)
    assert (1, 30) in hm(result)


# --- the steady-offset shortcut ------------------------------------------------------

#: Zones with clock changes at 2 a.m., at midnight (São Paulo until 2019, Beirut), by half an hour (Lord Howe),
#: at odd offsets (Chatham, St John's), south of the equator, and zones with none.
SHORTCUT_ZONES = ("America/New_York", "Europe/London", "America/Sao_Paulo", "Asia/Beirut", "Australia/Lord_Howe",
                  "Pacific/Chatham", "America/St_Johns", "Asia/Kolkata", "UTC")


@pytest.mark.parametrize("zone", SHORTCUT_ZONES)
def test_steady_offset_shortcut_matches_the_zone_lookup_on_every_day(zone):
    """On a day the shortcut takes, every half-hour wall time converts exactly as the general path does; it
    takes every day without a clock change and none with one."""
    from portal.services.slots import _end_instant, _existing_instant, _steady_offset

    tz = ZoneInfo(zone)
    changes = 0
    for year in (2018, 2026):
        for offset in range(366):
            day = date(year, 1, 1) + timedelta(days=offset)
            steady = _steady_offset(day, tz)
            walls = [datetime.combine(day, time.min) + k * 30 * MIN for k in range(48)]
            by_zone = [_existing_instant(wall, tz) for wall in walls]
            if steady is None:
                changes += 1
                assert (None in by_zone or len({i.astimezone(tz).utcoffset() for i in by_zone}) > 1
                        or _existing_instant(walls[-1] + 30 * MIN, tz).astimezone(tz).utcoffset()
                        != by_zone[0].astimezone(tz).utcoffset()), f"{zone} {day}: no change that day"
                continue
            for wall, instant in zip(walls, by_zone, strict=True):
                assert instant == (wall - steady).replace(tzinfo=UTC), f"{zone} {wall}"
                assert _end_instant(wall, tz) == instant
    has_dst = zone not in ("Asia/Kolkata", "UTC")
    assert (changes > 0) == has_dst
