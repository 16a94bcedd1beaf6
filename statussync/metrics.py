"""Prometheus metrics: what bxsync counts at its edges, and what it reads from the database at scrape time.

Two kinds, on purpose (docs/decisions.md "Metrics: counters per process, gauges from the database"):

- Counters and histograms of things that happen in a process — events received (the intake view), REST
  requests and limiter waits (the Bitrix client), writes and decisions (the record step), payment latency.
  The web server's and django-q2's workers are separate processes, so `manage.py serve` gives them one
  PROMETHEUS_MULTIPROC_DIR, emptied at start, and prometheus-client's multiprocess mode adds them up at
  scrape time (https://prometheus.github.io/client_python/multiprocess/). Without that directory (tests,
  `runserver`) they live in the process's own registry.
- Gauges of state — queue depth and age, reconcile lag — computed from the database at each scrape, so they
  are right whichever process or host did the work, and survive restarts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

EVENTS_RECEIVED = Counter(
    "bxsync_events_received",
    "Webhook events answered 200, by portal, event and what became of them (stored, duplicate, ignored).",
    ["portal", "event", "status"],
)
EVENTS_UNSTORED = Counter(
    "bxsync_events_unstored",
    "Webhook events answered 503 because they could not be stored (Bitrix never sends them again).",
    ["portal"],
)
DECISIONS = Counter(
    "bxsync_decisions",
    "Sync decisions recorded, by outcome (applied, echo, no_change, conflict_resolved, failed, ...).",
    ["outcome"],
)
WRITES = Counter(
    "bxsync_writes",
    "Status writes bxsync made to a portal, by portal and whether the portal took them.",
    ["portal", "result"],
)
REST_REQUESTS = Counter(
    "bxsync_rest_requests",
    "HTTP requests to a portal's REST API, by portal, method (batch for a batch) and result.",
    ["portal", "method", "result"],
)
LIMITER_WAIT = Histogram(
    "bxsync_limiter_wait_seconds",
    "Time a REST request waited for bxsync's rate limiter before it was sent, by portal.",
    ["portal"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
LIMITER_REFUSED = Counter(
    "bxsync_limiter_refused",
    "REST requests the rate limiter refused (the wait would exceed BXSYNC_RATE_MAX_WAIT), by portal.",
    ["portal"],
)
PAYMENT_LATENCY = Histogram(
    "bxsync_payment_latency_seconds",
    "From a payment event's arrival to the deal's move to the paid stage (crm.deal.update) being recorded.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


_PROCESS_METRICS = (
    EVENTS_RECEIVED,
    EVENTS_UNSTORED,
    DECISIONS,
    WRITES,
    REST_REQUESTS,
    LIMITER_WAIT,
    LIMITER_REFUSED,
    PAYMENT_LATENCY,
)


def count(counter: Counter, **labels: str) -> None:
    """Add one to `counter`; never raises. A count is not worth a request: the webhook counted here is
    stored already and must get its 200 (a missing PROMETHEUS_MULTIPROC_DIR makes every new label's file
    fail to open)."""
    try:
        (counter.labels(**labels) if labels else counter).inc()
    except Exception as exc:
        logger.warning("could not count %s: %s", getattr(counter, "_name", "a metric"), type(exc).__name__)


class DatabaseCollector(Collector):
    """Queue depth and age and reconcile lag, read from the database at each scrape (indexed queries)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from statussync.models import Job, JobState, Queue, Watermark  # the Bitrix client imports us early

        now = timezone.now()
        depth = GaugeMetricFamily(
            "bxsync_queue_jobs",
            "Jobs in the queue by state (pending: waiting; running: claimed by a worker).",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            "bxsync_queue_oldest_age_seconds",
            "Age of the oldest pending job that is due, by queue (0 when none is due).",
            labels=["queue"],
        )
        live = Job.objects.filter(state__in=[JobState.PENDING, JobState.RUNNING])
        counts = {(q, s): n for q, s, n in live.values_list("queue", "state").annotate(n=Count("id"))}
        oldest = dict(
            Job.objects.filter(state=JobState.PENDING, not_before__lte=now)
            .values_list("queue")
            .annotate(t=Min("created_at"))
        )
        for queue in Queue.values:
            for state in (JobState.PENDING, JobState.RUNNING):
                depth.add_metric([queue, state], counts.get((queue, state), 0))
            age.add_metric([queue], _seconds_since(oldest.get(queue), now))
        yield depth
        yield age
        dead = GaugeMetricFamily("bxsync_dead_letter_jobs", "Jobs in the dead-letter list.")
        dead.add_metric([], Job.objects.filter(state=JobState.DEAD).count())
        yield dead
        lag = GaugeMetricFamily(
            "bxsync_reconcile_lag_seconds",
            "How far behind now each portal's reconciliation has read its change feed.",
            labels=["portal"],
        )
        for portal, value in Watermark.objects.values_list("portal", "value"):
            lag.add_metric([portal], _seconds_since(value, now))
        yield lag


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment is not None else 0.0


def metrics_exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every bxsync metric, and its content type."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every process's files, this one's included
    else:
        for metric in _PROCESS_METRICS:
            registry.register(metric)
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
