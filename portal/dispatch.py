"""Hand work to the job queue by name.

With `REDIS_URL`, jobs go to RQ (`worker/` runs them); without it (the embedded default) the same job functions
run in-process on a small thread pool. Either way a job that raises is retried after the delays in
`JOB_RETRY_DELAYS` (settings), and jobs see `max_attempts()` so they can give up cleanly on their last try.
Services call `enqueue()` with a job name; they never import `portal.jobs`.
"""
from __future__ import annotations

import importlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta

from flask import Flask, current_app

from portal import logs, tracing

log = logging.getLogger(__name__)

QUEUE_NAME = "portal"
#: Booking mail waits here, behind `QUEUE_NAME`: workers take a job from it only when the main queue is empty, so a
#: burst of payments is confirmed first and its confirmation mails follow (each send costs as much as a payment).
MAIL_QUEUE_NAME = "portal-mail"
MAIL_JOBS = frozenset({"send_notification", "send_notifications"})
#: Jobs whose return value nobody reads, run so often that keeping it costs: RQ deletes them once they succeed
#: instead of storing a result and a finished-registry entry for an hour (a failed one is kept all the same) —
#: at hundreds of events a second, an hour of kept webhook jobs would be a large share of Redis's memory. A webhook
#: job's outcome is on its log line and in its event row.
RESULTLESS_JOBS = frozenset({"process_webhook_event", "drain_webhook_events"})
JOBS = {
    "process_webhook_event": "portal.jobs.webhooks.process_webhook_event",
    "drain_webhook_events": "portal.jobs.webhooks.drain_webhook_events",
    "release_expired_holds": "portal.jobs.sweeps.release_expired_holds",
    "requeue_stuck_events": "portal.jobs.sweeps.requeue_stuck_events",
    "prune_webhook_signatures": "portal.jobs.sweeps.prune_webhook_signatures",
    "process_refund": "portal.jobs.refunds.process_refund",
    "send_notification": "portal.jobs.notifications.send_notification",
    "send_notifications": "portal.jobs.notifications.send_notifications",
    "send_account_email": "portal.jobs.notifications.send_account_email",
    "send_due_reminders": "portal.jobs.notifications.send_due_reminders",
    "requeue_stale_refunds": "portal.jobs.refunds.requeue_stale_refunds",
    "reconcile_with_stripe": "portal.jobs.reconciliation.reconcile_with_stripe",
    "expire_credits": "portal.jobs.sweeps.expire_credits",
    "waitlist_offers": "portal.jobs.sweeps.waitlist_offers",
}
SWEEPS = ("release_expired_holds", "requeue_stuck_events", "prune_webhook_signatures", "send_due_reminders",
          "requeue_stale_refunds", "waitlist_offers")
#: Jobs the sweeper queues once an hour (one worker per hour across the fleet).
HOURLY = ("reconcile_with_stripe", "expire_credits")
HOUR_SEC = 3600
#: How long a `wake()` flag lives without its job starting (a job lost with Redis, a worker killed before it took
#: it): after that, the next `wake()` queues another job. It only bounds that rare delay; the stuck-event sweep is
#: the backstop.
WAKE_TTL_SEC = 30


class DispatchError(RuntimeError):
    """The queue could not take the job (Redis down). The caller's data is already stored; a sweep retries."""


def _resolve(name: str):
    module, _, attr = JOBS[name].rpartition(".")
    return getattr(importlib.import_module(module), attr)


class RQDispatcher:
    def __init__(self, redis_url: str, retry_delays: tuple[int, ...]):
        self.redis_url = redis_url
        self.retry_delays = retry_delays
        self._queues = None

    @property
    def queues(self) -> list:
        """The queues in the order workers take jobs from them: the main one, then mail."""
        if self._queues is None:
            from redis import Redis
            from rq import Queue

            connection = Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
            self._queues = [Queue(QUEUE_NAME, connection=connection),
                            Queue(MAIL_QUEUE_NAME, connection=connection)]
        return self._queues

    @property
    def queue(self):
        return self.queues[0]

    def depth(self) -> int:
        return sum(self.depths().values())

    def depths(self) -> dict[str, int]:
        return {queue.name: queue.count for queue in self.queues}

    def enqueue(self, name: str, *args) -> None:
        self._enqueue(name, args, self.retry_delays)

    def wake(self, name: str) -> bool:
        """Queue job `name` (no arguments) unless one is already waiting to start: a burst of callers queues one
        job, which finds all their work (`woken()` at its start lets the next caller queue another). True if this
        call queued it. The flag is one `SET NX` (one round trip for every caller that finds it set)."""
        from redis.exceptions import RedisError

        key = _waiting_key(name)
        try:
            if not self.queue.connection.set(key, "1", nx=True, ex=WAKE_TTL_SEC):
                return False
        except RedisError as error:
            raise DispatchError(f"could not wake {name}: {error}") from error
        try:
            self._enqueue(name, (), ())  # no retries: the next wake, or the sweep, takes over
        except DispatchError:
            self.woken(name)
            raise
        return True

    def woken(self, name: str) -> None:
        """Job `name` started: the next `wake()` queues another. Never raises (the flag expires anyway)."""
        from redis.exceptions import RedisError

        try:
            self.queue.connection.delete(_waiting_key(name))
        except RedisError as error:
            log.warning("could not clear the wake flag of %s: %s", name, error)

    def retry_later(self, name: str, *args, attempt: int) -> None:
        """Run job `name` again after the delay that follows attempt `attempt` (made elsewhere, e.g. in a batch), with
        the retries that are left after it: the same schedule as if the job itself had failed that attempt."""
        self._enqueue(name, args, self.retry_delays[attempt:], after=self.retry_delays[attempt - 1])

    def _enqueue(self, name: str, args: tuple, delays, after: float | None = None) -> None:
        from redis.exceptions import RedisError
        from rq import Retry

        retry = Retry(max=len(delays), interval=list(delays)) if delays else None
        queue = self.queues[name in MAIL_JOBS]
        options = dict(retry=retry, job_timeout=300, result_ttl=0 if name in RESULTLESS_JOBS else 3600,
                       failure_ttl=7 * 86400,
                       meta={"request_id": logs.current_request_id(), "trace": tracing.carrier()})
        try:
            # One pipeline for the whole hand-off: given none, RQ sends two (the queue's registration, then the job).
            with queue.connection.pipeline() as pipe:
                if after is None:
                    queue.enqueue(JOBS[name], *args, pipeline=pipe, **options)
                else:
                    queue.enqueue_in(timedelta(seconds=after), JOBS[name], *args, pipeline=pipe, **options)
                pipe.execute()
        except RedisError as error:
            raise DispatchError(f"could not enqueue {name}: {error}") from error


def _waiting_key(name: str) -> str:
    return f"portal:waiting:{name}"


class InProcessDispatcher:
    """Runs jobs on a thread pool inside this process, each in an app context, with the same retry delays."""

    def __init__(self, app: Flask, retry_delays: tuple[int, ...], workers: int = 2):
        self.app = app
        self.retry_delays = retry_delays
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="portal-job")
        self._pending: set[Future | threading.Timer] = set()
        self._waiting: set[str] = set()  # jobs queued by wake() that have not started
        self._lock = threading.Lock()

    def depth(self) -> int:
        """Jobs waiting: queued on the pool or for a retry (running ones included; the pool is small)."""
        with self._lock:
            return len(self._pending)

    def depths(self) -> dict[str, int]:
        return {QUEUE_NAME: self.depth()}

    def enqueue(self, name: str, *args) -> None:
        self._submit(name, args, attempt=1, request_id=logs.current_request_id(), trace=tracing.carrier())

    def wake(self, name: str) -> bool:
        """As `RQDispatcher.wake`: the flag is cleared when the job starts, and the job is not retried."""
        with self._lock:
            if name in self._waiting:
                return False
            self._waiting.add(name)
        self._submit(name, (), attempt=len(self.retry_delays) + 1, request_id=logs.current_request_id(),
                     trace=tracing.carrier(), woken=name)
        return True

    def woken(self, name: str) -> None:
        """Cleared by the pool as the job starts (nothing to do)."""

    def retry_later(self, name: str, *args, attempt: int) -> None:
        self._schedule_retry(name, args, attempt, logs.current_request_id(), tracing.carrier())

    def _submit(self, name, args, attempt, request_id=None, trace=None, woken=None):
        future = self._pool.submit(self._run, name, args, attempt, request_id, trace, woken)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, item):
        with self._lock:
            self._pending.discard(item)

    def _run(self, name, args, attempt, request_id=None, trace=None, woken=None):
        if woken is not None:
            with self._lock:
                self._waiting.discard(woken)
        with self.app.app_context(), logs.request_id_scope(request_id), tracing.continued(trace):
            try:
                _resolve(name)(*args)
            except Exception as error:
                if attempt > len(self.retry_delays):
                    log.exception("job %s%r failed on its last attempt", name, args)
                    return
                log.warning("job %s%r failed (attempt %d: %s: %s); retrying in %ss", name, args, attempt,
                            type(error).__name__, error, self.retry_delays[attempt - 1])
                self._schedule_retry(name, args, attempt, request_id, trace)

    def _schedule_retry(self, name, args, attempt, request_id, trace):
        """Run the job again after the delay that follows attempt `attempt`, as attempt `attempt + 1`."""
        timer = threading.Timer(self.retry_delays[attempt - 1], self._retry,
                                (name, args, attempt + 1, request_id, trace))
        timer.daemon = True
        with self._lock:
            self._pending.add(timer)
        timer.start()

    def _retry(self, name, args, attempt, request_id=None, trace=None):
        self._submit(name, args, attempt, request_id, trace)  # before forgetting the timer, so drain() never sees a gap
        self._forget(threading.current_thread())

    def drain(self, timeout: float = 30) -> bool:
        """Wait until no job is running or waiting for a retry (tests and shutdown)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                futures = [p for p in self._pending if isinstance(p, Future)]
                timers = [p for p in self._pending if not isinstance(p, Future)]
            if not futures and not timers:
                return True
            if futures:
                wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.02)
        return False

    def shutdown(self) -> None:
        with self._lock:
            for item in list(self._pending):
                if isinstance(item, threading.Timer):
                    item.cancel()
        self._pool.shutdown(wait=True)


def init_app(app: Flask) -> None:
    settings = app.config["PORTAL_SETTINGS"]
    delays = settings.job_retry_delays
    if settings.redis_url:
        app.extensions["dispatcher"] = RQDispatcher(settings.redis_url, delays)
    else:
        app.extensions["dispatcher"] = InProcessDispatcher(app, delays)


def get_dispatcher():
    return current_app.extensions["dispatcher"]


def enqueue(name: str, *args) -> None:
    get_dispatcher().enqueue(name, *args)


def wake(name: str) -> bool:
    """Queue job `name` unless one is waiting to start already (see `RQDispatcher.wake`)."""
    return get_dispatcher().wake(name)


def woken(name: str) -> None:
    """Called by a job queued with `wake()` as it starts."""
    get_dispatcher().woken(name)


def retry_later(name: str, *args, attempt: int) -> None:
    """Schedule job `name(*args)` as the retry of attempt `attempt` (raises `DispatchError` if the queue is down)."""
    get_dispatcher().retry_later(name, *args, attempt=attempt)


def max_attempts() -> int:
    return len(current_app.extensions["dispatcher"].retry_delays) + 1


def start_sweeper(app: Flask, interval: float, stop: threading.Event) -> threading.Thread:
    """Every `interval` seconds, queue the sweeps, and once an hour the hourly jobs. With several RQ workers, Redis
    locks let one of them do each round."""
    last_hourly = [0.0]

    def claim(dispatcher, key: str, seconds: float) -> bool:
        if not isinstance(dispatcher, RQDispatcher):
            return True
        try:
            return bool(dispatcher.queue.connection.set(key, "1", nx=True, ex=max(1, int(seconds))))
        except Exception as error:  # Redis down: try again next round
            log.warning("sweeper could not reach Redis: %s", error)
            return False

    def queue(dispatcher, names) -> None:
        for name in names:
            try:
                dispatcher.enqueue(name)
            except DispatchError as error:
                log.warning("job %s not queued: %s", name, error)

    def loop():
        import time

        while not stop.wait(interval):
            with app.app_context():
                dispatcher = get_dispatcher()
                if claim(dispatcher, "portal:sweeper-lock", interval * 0.9):
                    queue(dispatcher, SWEEPS)
                if time.monotonic() - last_hourly[0] >= HOUR_SEC and claim(dispatcher, "portal:hourly-lock",
                                                                          HOUR_SEC * 0.95):
                    last_hourly[0] = time.monotonic()
                    queue(dispatcher, HOURLY)

    thread = threading.Thread(target=loop, name="portal-sweeper", daemon=True)
    thread.start()
    return thread
