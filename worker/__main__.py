"""Run RQ workers for the portal's queues inside an app context, plus the periodic sweeps.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgresql://... python -m worker [--burst] [--threads N]

`SimpleWorker` runs jobs in this process (no fork per job), so the app context, its engine pool and the
metrics files stay with one process; scale out by starting more worker processes.

Processing a webhook is mostly waiting for Stripe's answer, so one process can run several jobs at once:
`--threads N` (or `WORKER_THREADS`) runs N RQ workers in this process, each on its own thread with its own app
context (hence its own database session) and its own RQ registration. The main thread's worker handles the
signals and the scheduler, and asks the others to stop with it (a warm stop lets running jobs finish). Job
timeouts use a timer on the job's thread instead of SIGALRM, which only the main thread can receive.

Every worker takes jobs from the main queue first and from the mail queue only when the main one is empty
(`portal.dispatch.MAIL_QUEUE_NAME`): a payment is confirmed before the mails of earlier payments are sent.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading

from portal import create_app, dispatch, heap, metrics

log = logging.getLogger("portal.worker")


def _worker_classes():
    from rq import SimpleWorker
    from rq.timeouts import TimerDeathPenalty

    class ThreadWorker(SimpleWorker):
        """One of the workers on the extra threads: no signal handlers of its own, timeouts by timer."""

        death_penalty_class = TimerDeathPenalty

        @property
        def dequeue_timeout(self) -> int:
            return 5  # an idle one notices a stop within seconds

        def _install_signal_handlers(self):
            pass  # the main thread's worker receives the signals and stops this one

    class MainWorker(SimpleWorker):
        """The main thread's worker: a stop it is asked for (SIGTERM, SIGINT) is passed on to the others."""

        siblings: list[SimpleWorker] = []

        def request_stop(self, signum, frame):
            for sibling in self.siblings:
                sibling._stop_requested = True
            super().request_stop(signum, frame)

    return MainWorker, ThreadWorker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--sweep-interval", type=float, default=30.0,
                        help="seconds between sweep rounds (0 disables sweeps in this worker)")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="jobs run at once in this process (default: WORKER_THREADS, else 2)")
    parser.add_argument("--rq-log-level", default="WARNING", help="RQ's own log level (INFO: four lines per job)")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve this process's metrics on this port (for workers on hosts without a web "
                             "process; see dashboards/prometheus/scrape.example.yml)")
    args = parser.parse_args(argv)
    app = create_app()
    if app.config["PORTAL_SETTINGS"].log_format == "text":  # json: create_app installed the JSON handler
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Per job, RQ would add four log lines and the Stripe SDK two per call to the portal's own line per job (which
    # has the job's id, outcome and duration): a cost on every job for nothing a failure does not log anyway.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    dispatcher = app.extensions["dispatcher"]
    if not isinstance(dispatcher, dispatch.RQDispatcher):
        parser.error("REDIS_URL is not set: without Redis, jobs run inside the web process")
    threads = args.threads if args.threads is not None else app.config["PORTAL_SETTINGS"].worker_threads
    if threads < 1:
        parser.error("--threads must be at least 1")
    main_worker_class, thread_worker_class = _worker_classes()

    def named(n: int) -> str | None:
        return f"{args.name}-{n}" if args.name and threads > 1 else args.name

    if args.metrics_port:
        metrics.serve_worker_metrics(args.metrics_port)
    stop = threading.Event()
    siblings = [thread_worker_class(dispatcher.queues, connection=dispatcher.queue.connection, name=named(n))
                for n in range(1, threads)]

    def run(sibling):
        with app.app_context():
            sibling.work(burst=args.burst, logging_level=args.rq_log_level)

    running = [threading.Thread(target=run, args=(s,), name=f"rq-worker-{n}", daemon=True)
               for n, s in enumerate(siblings, start=1)]
    heap.freeze_startup_objects()
    with app.app_context():
        if args.sweep_interval > 0 and not args.burst:
            dispatch.start_sweeper(app, args.sweep_interval, stop)
        worker = main_worker_class(dispatcher.queues, connection=dispatcher.queue.connection, name=named(0))
        worker.siblings = siblings
        for thread in running:
            thread.start()
        log.info("worker %s: %d thread(s) on queues %s", worker.name, threads,
                 ", ".join(queue.name for queue in dispatcher.queues))
        try:
            worker.work(burst=args.burst, with_scheduler=True, logging_level=args.rq_log_level)
        finally:
            stop.set()
            for sibling in siblings:  # the main worker stopped (or the queue ran dry): the others follow
                sibling._stop_requested = sibling._stop_requested or not args.burst
            for thread in running:
                while thread.is_alive():
                    thread.join(timeout=1)
            if metrics.multiprocess_mode():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
