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


def test_a_burst_of_wakes_queues_one_job_until_it_starts(dispatcher):
    """Every webhook delivery wakes the drain; only the first of a burst queues a job, which finds them all. Once it
    has started, the next delivery queues another (its events may be after the running job's last look)."""
    assert [dispatcher.wake("drain_webhook_events") for _ in range(5)] == [True, False, False, False, False]
    (job,) = Queue(QUEUE_NAME, connection=dispatcher.queue.connection).get_jobs()
    assert job.func_name == "portal.jobs.webhooks.drain_webhook_events" and job.args == ()
    assert job.retries_left is None and job.result_ttl == 0  # the next wake, or the sweep, stands in for retries
    assert 0 < dispatcher.queue.connection.ttl("portal:waiting:drain_webhook_events") <= 30
    dispatcher.woken("drain_webhook_events")
    assert dispatcher.wake("drain_webhook_events") is True
    assert dispatcher.depths() == {QUEUE_NAME: 2, MAIL_QUEUE_NAME: 0}


def test_a_wake_that_could_not_queue_its_job_leaves_no_flag_behind(dispatcher, monkeypatch):
    from portal.dispatch import DispatchError

    def refused(*_args, **_kwargs):
        raise DispatchError("could not enqueue drain_webhook_events: connection reset")

    monkeypatch.setattr(dispatcher, "_enqueue", refused)
    with pytest.raises(DispatchError):
        dispatcher.wake("drain_webhook_events")
    assert not dispatcher.queue.connection.exists("portal:waiting:drain_webhook_events")


def test_a_retry_later_follows_the_schedule_the_job_would_have_had(dispatcher):
    """An event whose first attempt failed inside a batch goes on alone: queued after the delay that follows
    attempt 1, with the retries that are left after it."""
    from rq.registry import ScheduledJobRegistry

    from portal.clock import utcnow

    dispatcher.retry_later("process_webhook_event", 7, attempt=1)
    assert dispatcher.depths() == {QUEUE_NAME: 0, MAIL_QUEUE_NAME: 0}  # not before its delay
    registry = ScheduledJobRegistry(queue=dispatcher.queue)
    (job_id,) = registry.get_job_ids()
    job = dispatcher.queue.fetch_job(job_id)
    assert (job.func_name.rsplit(".", 1)[1], job.args) == ("process_webhook_event", (7,))
    assert job.retries_left == 1 and job.retry_intervals == [5]
    scheduled_in = (registry.get_scheduled_time(job_id) - utcnow()).total_seconds()
    assert 0 < scheduled_in <= 1.5


def test_a_batch_of_confirmations_is_one_mail_job_behind_payments(dispatcher):
    from flask import Flask

    from portal.services import notifications

    app = Flask(__name__)
    app.extensions["dispatcher"] = dispatcher
    with app.app_context():
        assert notifications.enqueue_many("confirmation", [(n, f"confirmation:booking:{n}") for n in (1, 2, 3)])
    (job,) = Queue(MAIL_QUEUE_NAME, connection=dispatcher.queue.connection).get_jobs()
    assert job.func_name == "portal.jobs.notifications.send_notifications"
    assert job.args == ("confirmation", [(n, f"confirmation:booking:{n}") for n in (1, 2, 3)])
    assert job.retries_left == 2 and dispatcher.depths()[QUEUE_NAME] == 0
