"""Run RQ workers for the portal's queue inside an app context, plus the periodic sweeps.

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgresql://... python -m worker [--burst] [--sweep-interval 30]

`SimpleWorker` runs jobs in this process (no fork per job), so the app context, its engine pool and the
metrics files stay with one process; scale out by starting more worker processes.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading

from portal import create_app, dispatch, metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--sweep-interval", type=float, default=30.0,
                        help="seconds between sweep rounds (0 disables sweeps in this worker)")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve this process's metrics on this port (for workers on hosts without a web "
                             "process; see dashboards/prometheus/scrape.example.yml)")
    args = parser.parse_args(argv)
    app = create_app()
    if app.config["PORTAL_SETTINGS"].log_format == "text":  # json: create_app installed the JSON handler
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dispatcher = app.extensions["dispatcher"]
    if not isinstance(dispatcher, dispatch.RQDispatcher):
        parser.error("REDIS_URL is not set: without Redis, jobs run inside the web process")
    from rq import SimpleWorker

    if args.metrics_port:
        metrics.serve_worker_metrics(args.metrics_port)
    stop = threading.Event()
    with app.app_context():
        if args.sweep_interval > 0 and not args.burst:
            dispatch.start_sweeper(app, args.sweep_interval, stop)
        worker = SimpleWorker([dispatcher.queue], connection=dispatcher.queue.connection, name=args.name)
        try:
            worker.work(burst=args.burst, with_scheduler=True, logging_level="INFO")
        finally:
            stop.set()
            if metrics.multiprocess_mode():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
