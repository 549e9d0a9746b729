"""Reading Prometheus exposition text the way a scrape does (for metrics tests)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition: (name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def sample_sum(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The sum of the samples named ``name`` whose labels include ``labels``; None: none."""
    wanted = dict(labels or {})
    found = [
        value
        for sample_name, sample_labels, value in samples(text)
        if sample_name == name and wanted.items() <= sample_labels.items()
    ]
    return sum(found) if found else None


def scraped(
    registry: CollectorRegistry, name: str, labels: Mapping[str, str] | None = None
) -> float | None:
    return sample_sum(generate_latest(registry).decode(), name, labels)
