"""Which RQ queue a job goes to, and the order workers take them in."""
from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue

from portal.dispatch import MAIL_QUEUE_NAME, QUEUE_NAME, RQDispatcher


@pytest.fixture
def dispatcher(redis_url):
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield RQDispatcher(redis_url, retry_delays=(1, 5))
    client.flushdb()
    client.close()


def test_booking_mail_waits_behind_payments(dispatcher):
    dispatcher.enqueue("send_notification", "confirmation", 1, "confirmation:booking:1")
    dispatcher.enqueue("process_webhook_event", 7)
    dispatcher.enqueue("send_account_email", "reset", 3, None, None, "ref")  # someone is waiting for this one
    assert [queue.name for queue in dispatcher.queues] == [QUEUE_NAME, MAIL_QUEUE_NAME]
    assert dispatcher.depths() == {QUEUE_NAME: 2, MAIL_QUEUE_NAME: 1} and dispatcher.depth() == 3

    taken = []
    while (found := Queue.dequeue_any(dispatcher.queues, None, connection=dispatcher.queue.connection)):
        job, _queue = found
        taken.append((job.func_name.rsplit(".", 1)[1], job.args[0]))
    assert taken == [("process_webhook_event", 7), ("send_account_email", "reset"),
                     ("send_notification", "confirmation")]  # the mail queued first is taken last


def test_a_webhook_job_keeps_no_result_but_keeps_its_failure_and_retries(dispatcher):
    """Nothing reads a webhook job's return value (its outcome is logged and stored on the event): RQ drops the job
    once it succeeds. A failure is kept for ops, and retries still follow."""
    dispatcher.enqueue("process_webhook_event", 7)
    dispatcher.enqueue("send_notification", "confirmation", 1, "confirmation:booking:1")
    connection = dispatcher.queue.connection
    (webhook_job,) = Queue(QUEUE_NAME, connection=connection).get_jobs()
    (mail_job,) = Queue(MAIL_QUEUE_NAME, connection=connection).get_jobs()
    assert (webhook_job.result_ttl, webhook_job.failure_ttl, webhook_job.retries_left) == (0, 7 * 86400, 2)
    assert mail_job.result_ttl == 3600
