from portal.clock import utcnow
from portal.jobs import job
from portal.payments import get_provider
from portal.services import drift


@job
def reconcile_with_stripe() -> int:
    """The hourly comparison with Stripe (last two hours); returns the number of new findings."""
    return drift.scan(get_provider(), now=utcnow()).found
