import time
from collections import Counter

from portal import dispatch
from portal.clock import utcnow
from portal.jobs import job
from portal.models import WebhookEvent
from portal.payments import get_provider
from portal.services import fulfilment, fulfilment_batches

#: When a claim found fewer events than a batch yet some still wait, their rows were locked for a moment (a
#: redelivery counting itself): the drain looks again after this pause, this many times at most (then the next
#: delivery's wake, or the stuck-event sweep, takes them).
LOCKED_PAUSE_SEC, LOCKED_LOOKS = 0.02, 10
#: A drain stops taking new batches after this long and wakes another job to go on: no job runs for ever under
#: steady traffic (a deploy's warm stop waits for it), and the queue's other jobs get their turn.
DRAIN_BUDGET_SEC = 20.0


@job(concerns=(WebhookEvent, 0))
def process_webhook_event(event_id: int) -> str:
    """One event: a retry, a replay from the ops console, or one the stuck-event sweep queued."""
    return fulfilment.process_event(event_id, provider=get_provider(), now=utcnow(),
                                    max_attempts=dispatch.max_attempts(), lease=fulfilment.configured_lease())


@job
def drain_webhook_events() -> str:
    """The events stored since the last drain, in batches (`fulfilment_batches.process_waiting`) until none are waiting.
    Receiving a webhook wakes one (`dispatch.wake`); a full batch wakes another, so idle workers join in."""
    dispatch.woken("drain_webhook_events")
    provider, started, outcomes = get_provider(), time.monotonic(), Counter()

    def wake_another() -> None:
        try:
            dispatch.wake("drain_webhook_events")
        except dispatch.DispatchError:
            pass  # this drain goes on; the next delivery, or the sweep, wakes another

    locked_looks = 0
    while True:
        done = fulfilment_batches.process_waiting(provider=provider, now=utcnow(), max_attempts=dispatch.max_attempts(),
                                          on_full=wake_another)
        outcomes.update(done)
        if done.total() < fulfilment_batches.BATCH_SIZE:
            if locked_looks >= LOCKED_LOOKS or not fulfilment_batches.any_waiting(dispatch.max_attempts()):
                break
            locked_looks += 1
            time.sleep(LOCKED_PAUSE_SEC)
        elif time.monotonic() - started > DRAIN_BUDGET_SEC:
            wake_another()
            break
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "none waiting"
