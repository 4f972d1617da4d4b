"""Studio policy as it applies to one booking: may it move, may it be cancelled, and what does that cost.

A booking is judged by the snapshot of the policy taken when it was paid, not by today's settings. Hours are
real elapsed hours (UTC arithmetic), so "24 hours before" means the same span on a DST-change day.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from portal.models import Booking, BookingStatus, Studio


@dataclass(frozen=True)
class Policy:
    reschedule_lead_hours: int = 24
    max_reschedules: int = 2
    cancel_window_hours: int = 24
    late_cancel_fee_percent: int = 50
    late_cancel_makeup: bool = False

    @classmethod
    def of(cls, booking: Booking, studio: Studio | None = None) -> "Policy":
        snapshot = booking.policy or (studio or booking.studio).policy_snapshot()
        return cls(**{k: snapshot[k] for k in cls.__dataclass_fields__ if k in snapshot})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class CancelTerms:
    allowed: bool
    reason: str
    late: bool
    fee_minor: int
    refund_minor: int
    makeup: bool


def _hours(hours: int) -> str:
    return f"{hours} hour{'s' if hours != 1 else ''}"


def reschedule_decision(booking: Booking, now: datetime) -> Decision:
    policy = Policy.of(booking)
    if booking.status != BookingStatus.CONFIRMED:
        return Decision(False, "Only confirmed lessons can be moved.")
    if booking.start_at <= now:
        return Decision(False, "This lesson has already started.")
    if booking.reschedule_count >= policy.max_reschedules:
        return Decision(False, f"This lesson has been moved the most times the studio allows "
                               f"({policy.max_reschedules}).")
    if booking.start_at - now < timedelta(hours=policy.reschedule_lead_hours):
        return Decision(False, f"Rescheduling closes {_hours(policy.reschedule_lead_hours)} before the lesson.")
    return Decision(True)


def cancel_terms(booking: Booking, now: datetime, paid_minor: int | None = None) -> CancelTerms:
    """What cancelling now would mean. `paid_minor` defaults to the booking's price."""
    policy = Policy.of(booking)
    paid = booking.price_minor if paid_minor is None else paid_minor
    if booking.status != BookingStatus.CONFIRMED:
        return CancelTerms(False, "Only confirmed lessons can be cancelled.", False, 0, 0, False)
    if booking.start_at <= now:
        return CancelTerms(False, "This lesson has already started.", False, 0, 0, False)
    late = booking.start_at - now < timedelta(hours=policy.cancel_window_hours)
    if not late:
        return CancelTerms(True, "", False, 0, paid, False)
    fee = min(paid, (paid * policy.late_cancel_fee_percent + 50) // 100)  # integer cents, half up
    return CancelTerms(True, f"Cancelling within {_hours(policy.cancel_window_hours)} of the lesson is a late "
                             f"cancellation: a {policy.late_cancel_fee_percent}% fee applies.",
                       True, fee, paid - fee, policy.late_cancel_makeup)
