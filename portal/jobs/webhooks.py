from portal import dispatch
from portal.clock import utcnow
from portal.jobs import job
from portal.models import WebhookEvent
from portal.payments import get_provider
from portal.services import fulfilment


@job(concerns=(WebhookEvent, 0))
def process_webhook_event(event_id: int) -> str:
    return fulfilment.process_event(event_id, provider=get_provider(), now=utcnow(),
                                    max_attempts=dispatch.max_attempts(), lease=fulfilment.configured_lease())
