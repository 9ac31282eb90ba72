"""What happened to the work, for an operator's Prometheus: jobs finished, the line, latencies, engine errors, spend.

The queue and the worker report events to a `JobObserver` they are given (`NO_OBSERVER` by default);
`Metrics` is the one that counts them, on a registry of its own (never prometheus-client's global one, so
several studios in one process, and tests, keep separate numbers). `bots/ops.py` serves `Metrics.exposition`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.engines.models import model_info
from core.ports import Job

# A picture takes seconds (the offline engine) to a minute or two (a big model with retries).
JOB_BUCKETS_S = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# From the request accepted to the picture delivered: the job's own time plus its wait in line.
DELIVERY_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
FINAL_STATUSES = ("delivered", "failed", "cancelled")


class QueueSize(Protocol):
    """The line as the queue sees it now (read at scrape time)."""

    @property
    def queue_length(self) -> int: ...

    @property
    def running_count(self) -> int: ...


class JobObserver(Protocol):
    """Told what happened to jobs, as it happens; must not raise or wait."""

    def job_ended(self, job: Job, *, ran_s: float | None, since_accepted_s: float) -> None:
        """`job` (as recorded) reached a final status; `ran_s` is how long it ran (None: it never started)."""

    def engine_failed(self, kind: str) -> None:
        """An engine call ended in an `EngineError`; `kind` is its class name (Busy, Blocked, NoImage, …)."""

    def picture_made(self, model: str, image_size: str | None) -> None:
        """An engine returned a picture: a paid call, if the model has a price."""

    def watch_queue(self, queue: QueueSize) -> None:
        """The queue whose length is reported from now on."""


class NoObserver:
    """Counts nothing: the default, for tools and tests that do not care."""

    def job_ended(self, job: Job, *, ran_s: float | None, since_accepted_s: float) -> None:
        return None

    def engine_failed(self, kind: str) -> None:
        return None

    def picture_made(self, model: str, image_size: str | None) -> None:
        return None

    def watch_queue(self, queue: QueueSize) -> None:
        return None


NO_OBSERVER = NoObserver()


class _QueueCollector(Collector):
    """The queue's length and running count, read when Prometheus scrapes (never stale, nothing to update)."""

    def __init__(self) -> None:
        self.queue: QueueSize | None = None

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("pixme_queue_length", "Jobs waiting in line for a worker.")
        running = GaugeMetricFamily("pixme_jobs_running", "Jobs being worked on now.")
        if self.queue is not None:
            waiting.add_metric([], self.queue.queue_length)
            running.add_metric([], self.queue.running_count)
        yield waiting
        yield running


class Metrics:
    """The metric families on a registry of their own, filled from the queue's and the worker's reports."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.jobs_finished = Counter(
            "pixme_jobs_finished", "Jobs that reached a final status, by status and kind.",
            ["status", "kind"], registry=registry)
        self.job_seconds = Histogram(
            "pixme_job_duration_seconds", "How long a job ran: engine call, saving and delivery.",
            ["kind"], buckets=JOB_BUCKETS_S, registry=registry)
        self.delivery_seconds = Histogram(
            "pixme_delivery_latency_seconds", "From the request accepted to the picture delivered, waits included.",
            ["kind"], buckets=DELIVERY_BUCKETS_S, registry=registry)
        self.engine_errors = Counter(
            "pixme_engine_errors", "Engine calls that ended in an error, by kind (Busy counts every outage met).",
            ["kind"], registry=registry)
        self.spend = Counter(
            "pixme_spend_usd", "Estimated US dollars of pictures the engines made, by model (at the model table's "
            "price for the size asked).", ["model"], registry=registry)
        self._queue = _QueueCollector()
        registry.register(self._queue)

    def job_ended(self, job: Job, *, ran_s: float | None, since_accepted_s: float) -> None:
        self.jobs_finished.labels(status=job.status, kind=job.kind).inc()
        if ran_s is not None:
            self.job_seconds.labels(kind=job.kind).observe(max(0.0, ran_s))
        if job.status == "delivered":
            self.delivery_seconds.labels(kind=job.kind).observe(max(0.0, since_accepted_s))

    def engine_failed(self, kind: str) -> None:
        self.engine_errors.labels(kind=kind).inc()

    def picture_made(self, model: str, image_size: str | None) -> None:
        self.spend.labels(model=model).inc(model_info(model).price(image_size))

    def watch_queue(self, queue: QueueSize) -> None:
        self._queue.queue = queue

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (`accept`: its Accept header), and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
