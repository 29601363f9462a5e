"""Prometheus metrics: this API process's submissions and cache hits, and the job table's
state (completions, failures, queue depth, durations, heartbeat lag) read at scrape time.

Counts read from the table are the same whichever API process is scraped and survive
restarts; they are cached for a few seconds so frequent scrapes cost one set of queries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from runpack_tasks.jobstore import queries
from runpack_tasks.jobstore.models import JobStatus

#: Seconds a scrape's reading of the table is reused.
SCRAPE_CACHE_S = 5.0
DURATION_BOUNDS_S = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]
#: Job types get their own label up to this many; the rest count as "other".
MAX_TYPE_LABELS = 500


class TypeLabels:
    """Bounds label cardinality: any client may invent job types."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, job_type: str) -> str:
        if job_type in self._seen or len(self._seen) < MAX_TYPE_LABELS:
            self._seen.add(job_type)
            return job_type
        return "other"


class StoreCollector(Collector):
    """Metrics read from the jobs table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] = (0.0, [])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            read_at, metrics = self._cached
            if time.monotonic() - read_at > SCRAPE_CACHE_S:
                metrics = self._read()
                self._cached = (time.monotonic(), metrics)
        yield from metrics

    def _read(self) -> list[Metric]:
        completed = CounterMetricFamily(
            "runpack_jobs_completed", "Jobs completed, by type", labels=["job_type"]
        )
        failed = CounterMetricFamily(
            "runpack_jobs_failed", "Jobs failed, by type", labels=["job_type"]
        )
        pending = GaugeMetricFamily(
            "runpack_queue_depth", "Jobs waiting to be claimed, by type", labels=["job_type"]
        )
        for job_type, status, count in queries.counts_by_type(self._engine):
            if status == JobStatus.COMPLETED.value:
                completed.add_metric([job_type], count)
            elif status == JobStatus.FAILED.value:
                failed.add_metric([job_type], count)
            elif status == JobStatus.PENDING.value:
                pending.add_metric([job_type], count)
        durations = HistogramMetricFamily(
            "runpack_job_duration_seconds",
            "Time from claim to completion of completed jobs",
            labels=["job_type"],
        )
        for job_type, cumulative, total_s, count in queries.duration_buckets(
            self._engine, DURATION_BOUNDS_S
        ):
            buckets = [
                (repr(float(bound)), n)
                for bound, n in zip(DURATION_BOUNDS_S, cumulative, strict=True)
            ]
            durations.add_metric([job_type], [*buckets, ("+Inf", count)], total_s)
        lag = GaugeMetricFamily(
            "runpack_heartbeat_lag_seconds",
            "Seconds since the stalest heartbeat of a running job, by type",
            labels=["job_type"],
        )
        for job_type, seconds in queries.heartbeat_lag(self._engine).items():
            lag.add_metric([job_type], seconds)
        return [completed, failed, pending, durations, lag]


class Metrics:
    """One API process's registry."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.type_label = TypeLabels()
        self.submissions = Counter(
            "runpack_submissions",
            "Submissions this API process answered",
            ["job_type"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "runpack_cache_hits",
            "Submissions answered with a completed result",
            ["job_type"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(engine))

    def submitted(self, job_type: str, cache_hit: bool, count: int = 1) -> None:
        """Count ``count`` submissions of one type."""
        label = self.type_label(job_type)
        self.submissions.labels(label).inc(count)
        if cache_hit:
            self.cache_hits.labels(label).inc(count)

    def totals(self) -> tuple[int, int]:
        """(submissions, cache hits) counted by this process."""

        def total(counter: Counter) -> int:
            return int(
                sum(
                    sample.value
                    for metric in counter.collect()
                    for sample in metric.samples
                    if sample.name.endswith("_total")
                )
            )

        return total(self.submissions), total(self.cache_hits)

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        return generate_latest(self.registry)
