from datetime import timedelta

from flask import current_app

from portal.clock import utcnow
from portal.jobs import job
from portal.payments import get_provider
from portal.services import credits, fulfilment, sweeps, waitlist


@job
def release_expired_holds() -> int:
    return sweeps.release_expired_holds(provider=get_provider(), now=utcnow())


@job
def requeue_stuck_events() -> int:
    settings = current_app.config["PORTAL_SETTINGS"]
    return sweeps.requeue_stuck_events(now=utcnow(), stuck_after=timedelta(seconds=settings.webhook_stuck_after_sec),
                                       lease=fulfilment.configured_lease())


@job
def prune_webhook_signatures() -> int:
    window = timedelta(seconds=current_app.config["PORTAL_SETTINGS"].stripe_replay_window_sec)
    return sweeps.prune_webhook_signatures(now=utcnow(), replay_window=window)


@job
def expire_credits() -> int:
    """Write off lesson credits past their expiry (an expired credit is never spendable; this records it)."""
    return credits.expire_due(now=utcnow())


@job
def waitlist_offers() -> dict:
    """Lapse expired waitlist offers, then offer freed times to the students waiting longest."""
    return waitlist.sweep(now=utcnow())
