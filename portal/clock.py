"""The one place that reads the wall clock. Services take `now` as an argument; routes pass `utcnow()`."""
from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
