"""Reading /metrics as Prometheus would."""

from __future__ import annotations

from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families


def scrape(client, **extra) -> dict[tuple[str, frozenset], float]:
    """Every sample of GET /metrics: {(sample name, {label: value}): value}."""
    with override_settings(BXSYNC_METRICS_LOOPBACK=True):  # the test client's requests come from 127.0.0.1
        response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value, 0 if it is not there yet (a counter nobody has touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
