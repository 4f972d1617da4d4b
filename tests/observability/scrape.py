"""Reading `/metrics` as Prometheus does, to assert on how each series moves."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


class Scrape:
    """One scrape of `/metrics`; `delta(later, name, **labels)` is how far a series moved since."""

    def __init__(self, text: str):
        self.text = text
        self.values = samples(text)

    def value(self, name: str, **labels) -> float:
        key = (name, frozenset(labels.items()))
        assert key in self.values, f"{name}{labels} is not served"
        return self.values[key]

    def delta(self, later: Scrape, name: str, **labels) -> float:
        return later.value(name, **labels) - self.value(name, **labels)

    def names(self) -> set[str]:
        return {name for name, _ in self.values}


def scrape(client) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200
    return Scrape(response.get_data(as_text=True))
