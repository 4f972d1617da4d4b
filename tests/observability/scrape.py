"""Reading `/metrics` as Prometheus does, to assert on how each series moves."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def served_names(text: str) -> set[str]:
    """Every series name the text declares, with or without samples yet (a family with no children yet still has
    its HELP and TYPE lines)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


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
        return served_names(self.text)


def scrape(client) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200
    return Scrape(response.get_data(as_text=True))
