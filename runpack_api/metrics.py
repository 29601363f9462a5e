"""Prometheus metrics: this API process's submissions, cache hits and the compute they
saved, and the job table's
state (completions, failures, queue depth, durations, heartbeat lag) read at scrape time.

Counts read from the table are the same whichever API process is scraped and survive
restarts; they are cached for a few seconds so frequent scrapes cost one set of queries,
read again in the background so no scrape waits for them but the first. What beat's
retention deleted is read from the counts beat shares (``shared_counts``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from runpack_api.counts import TableCounts
from runpack_tasks.jobstore import counting, queries
from runpack_tasks.jobstore.models import JobStatus
from runpack_tasks.retention import deleted_totals
from runpack_tasks.shared_counts import SharedCounts

log = logging.getLogger(__name__)

#: Seconds a scrape's reading of the table is reused.
SCRAPE_CACHE_S = 5.0
#: Job types get their own label up to this many; the rest count as "other".
MAX_TYPE_LABELS = 500
#: The label of the job types past MAX_TYPE_LABELS.
OTHER = "other"


class TypeLabels:
    """Bounds label cardinality: any client may invent job types."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, job_type: str) -> str:
        if job_type in self._seen or len(self._seen) < MAX_TYPE_LABELS:
            self._seen.add(job_type)
            return job_type
        return OTHER


class StoreCollector(Collector):
    """Metrics read from the jobs table."""

    def __init__(self, engine: Engine, counts: TableCounts) -> None:
        self._engine = engine
        self._counts = counts
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] = (0.0, [])
        self._refreshing = False

    def collect(self) -> Iterator[Metric]:
        """The last reading; one older than SCRAPE_CACHE_S is read again by a thread while
        scrapes get it (a scrape waits only for the very first reading)."""
        with self._lock:
            read_at, metrics = self._cached
            if not read_at:
                metrics = self._read()
                self._cached = (time.monotonic(), metrics)
            elif time.monotonic() - read_at > SCRAPE_CACHE_S and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="runpack-metrics", daemon=True).start()
        yield from metrics

    def _refresh(self) -> None:
        try:
            self._cached = (time.monotonic(), self._read())
        except Exception as exc:  # the last reading stays until one succeeds
            log.warning("could not read the job table for /metrics: %s", exc)
        finally:
            self._refreshing = False

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
        by_status: dict[str, dict[str, float]] = {}
        for (job_type, status), count in self._counts.get().items():
            by_status.setdefault(status, {})[job_type] = count
        for status, family in (
            (JobStatus.COMPLETED, completed),
            (JobStatus.FAILED, failed),
            (JobStatus.PENDING, pending),
        ):
            for job_type, n in capped(by_status.get(status.value, {}), _add).items():
                family.add_metric([job_type], n)
        durations = HistogramMetricFamily(
            "runpack_job_duration_seconds",
            "Time from claim to completion of completed jobs",
            labels=["job_type"],
        )
        histograms = {
            job_type: (list(cumulative), total_s, count)
            for job_type, cumulative, total_s, count in counting.run_time_histograms(self._engine)
        }
        for job_type, (cumulative, total_s, count) in capped(histograms, _add_histograms).items():
            buckets = [
                (repr(float(bound)), n)
                for bound, n in zip(counting.RUN_TIME_BOUNDS_S, cumulative, strict=True)
            ]
            durations.add_metric([job_type], [*buckets, ("+Inf", count)], total_s)
        lag = GaugeMetricFamily(
            "runpack_heartbeat_lag_seconds",
            "Seconds since the stalest heartbeat of a running job, by type",
            labels=["job_type"],
        )
        for job_type, seconds in capped(queries.heartbeat_lag(self._engine), max).items():
            lag.add_metric([job_type], seconds)
        return [completed, failed, pending, durations, lag]


Value = TypeVar("Value")
Histogram = tuple[list[Any], float, int]


def _add(a: float, b: float) -> float:
    return a + b


def _add_histograms(a: Histogram, b: Histogram) -> Histogram:
    return [x + y for x, y in zip(a[0], b[0], strict=True)], a[1] + b[1], a[2] + b[2]


def capped(by_type: dict[str, Value], merge: Callable[[Value, Value], Value]) -> dict[str, Value]:
    """At most MAX_TYPE_LABELS job types of ``by_type`` (the first in sorted order), the
    rest merged into one ``other``: a family read from the table has at most
    MAX_TYPE_LABELS + 1 labels, however many types clients invented."""
    if len(by_type) <= MAX_TYPE_LABELS:
        return by_type
    names = sorted(by_type)
    kept = {name: by_type[name] for name in names[:MAX_TYPE_LABELS]}
    rest = [by_type[name] for name in names[MAX_TYPE_LABELS:]]
    kept[OTHER] = functools.reduce(merge, rest)
    return kept


class RetentionCollector(Collector):
    """``runpack_retention_deleted_total{kind}``: rows beat's retention deleted."""

    def __init__(self, counts: SharedCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        deleted = CounterMetricFamily(
            "runpack_retention_deleted",
            "Rows retention deleted: jobs by the state they finished in, and runners",
            labels=["kind"],
        )
        try:
            totals = deleted_totals(self._counts)
        except Exception:  # the shared store away: leave the family out of this scrape
            return
        for kind, count in totals.items():
            deleted.add_metric([kind], count)
        yield deleted


class Metrics:
    """One API process's registry."""

    def __init__(
        self, engine: Engine, counts: TableCounts, shared: SharedCounts | None = None
    ) -> None:
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
        self.compute_saved = Counter(
            "runpack_compute_saved_seconds",
            "Run time of the jobs whose results this API process served from cache "
            "(a submit or check answered with a completed result)",
            ["job_type"],
            registry=self.registry,
        )
        self.registry.register(StoreCollector(engine, counts))
        if shared is not None:
            self.registry.register(RetentionCollector(shared))
        self.long_polls = Gauge(
            "runpack_long_polls_waiting",
            "Runner long polls waiting for a job in this API process",
            registry=self.registry,
        )
        #: Each counter's child per label (at most MAX_TYPE_LABELS + 1 per counter).
        self._children: dict[tuple[Counter, str], Any] = {}

    def _child(self, counter: Counter, label: str) -> Any:
        """``counter.labels(label)``, kept: a cache hit's counting is on the hot path, and
        ``labels`` takes a lock and builds a key each time."""
        child = self._children.get((counter, label))
        if child is None:
            child = self._children[(counter, label)] = counter.labels(label)
        return child

    def submitted(self, job_type: str, cache_hit: bool, count: int = 1) -> None:
        """Count ``count`` submissions of one type."""
        label = self.type_label(job_type)
        self._child(self.submissions, label).inc(count)
        if cache_hit:
            self._child(self.cache_hits, label).inc(count)

    def saved(self, job_type: str, run_time_s: float) -> None:
        """Count the run time of a job answered from cache."""
        self._child(self.compute_saved, self.type_label(job_type)).inc(run_time_s)

    def totals(self) -> tuple[int, int]:
        """(submissions, cache hits) counted by this process."""
        return int(_total(self.submissions)), int(_total(self.cache_hits))

    def compute_saved_s(self) -> float:
        """Seconds of run time this process's cache hits saved."""
        return _total(self.compute_saved)

    def exposition(self) -> bytes:
        """The text Prometheus scrapes."""
        return generate_latest(self.registry)


def _total(counter: Counter) -> float:
    """A counter's sum over its labels."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
