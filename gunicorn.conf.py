"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py 'portal:create_app()'`.

With `PROMETHEUS_MULTIPROC_DIR` set (an empty directory shared by the web and RQ worker processes of one host,
emptied at each deploy), `/metrics` adds up every process's values; a worker that exits is marked dead so its
live gauges stop counting.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """The app is loaded: leave its startup objects out of the collector's full passes (`portal.heap`)."""
    from portal.heap import freeze_startup_objects

    freeze_startup_objects()
