from portal import dispatch
from portal.clock import utcnow
from portal.jobs import job, studio_scope_of
from portal.models import Refund
from portal.payments import get_provider
from portal.services import refunds


@job
def requeue_stale_refunds() -> int:
    return refunds.requeue_stale(now=utcnow())


@job(concerns=(Refund, 0))
def process_refund(refund_id: int) -> str:
    with studio_scope_of(Refund, refund_id):
        return refunds.send(refund_id, provider=get_provider(), now=utcnow(), max_attempts=dispatch.max_attempts())
