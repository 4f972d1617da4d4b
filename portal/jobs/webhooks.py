from datetime import timedelta

from flask import current_app

from portal import dispatch
from portal.clock import utcnow
from portal.jobs import job
from portal.payments import get_provider
from portal.services import fulfilment


@job
def process_webhook_event(event_id: int) -> str:
    settings = current_app.config["PORTAL_SETTINGS"]
    return fulfilment.process_event(event_id, provider=get_provider(), now=utcnow(),
                                    max_attempts=dispatch.max_attempts(),
                                    lease=timedelta(seconds=settings.webhook_processing_lease_sec))
