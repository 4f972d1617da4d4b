"""The RQ worker: `python -m worker` (or `make worker`)."""
