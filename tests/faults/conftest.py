"""Fault-injection tests: attach the logs of the real processes a test started to its failure report."""
from __future__ import annotations

from pathlib import Path

import pytest

LOGS = pytest.StashKey[dict]()


def attach_log(item: pytest.Item, title: str, path: Path) -> None:
    """Show `path` (a process's captured stdout/stderr) in the report if this test fails."""
    item.stash.setdefault(LOGS, {})[title] = path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for title, path in item.stash.get(LOGS, {}).items():
            try:
                text = Path(path).read_text(errors="replace")
            except OSError as error:
                text = f"(log unreadable: {error})"
            report.sections.append((f"{title} ({path})", text[-20000:] or "(empty)"))
    return report
