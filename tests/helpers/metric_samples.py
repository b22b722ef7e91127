"""Samples of one metric family on a registry, keyed by their sorted label pairs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

__all__ = ["Labels", "collect_samples"]

Labels = tuple[tuple[str, str], ...]


def collect_samples(registry: CollectorRegistry, name: str) -> dict[Labels, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    }
