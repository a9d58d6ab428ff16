"""Prometheus metrics of faxd: every collector definition, in one place.

Two kinds, both named ``faxd_*``:

- :class:`DeliveryMetrics`: what a process observes as it works. Counters and
  histograms of submissions and polls by outcome, sipgate call latency and errors
  by status, and the time from intake to a final state. Workers feed them from
  :class:`faxd.delivery.Delivery`; each process has its own (see
  ``workers/metrics.py`` for how they are served).
- :class:`StoreCollector`: gauges read from Redis at scrape time. They describe
  the whole deployment, not the process serving them: jobs by state, queue depth,
  the age of the oldest waiting message, workers seen. Aggregate them across
  scrape targets with ``max``, never ``sum``.

Nothing here is module-level state: each process builds its collectors on its own
:class:`~prometheus_client.CollectorRegistry` and passes them down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from faxd.errors import SipgateError, StoreError
from faxd.jobs import JobStore
from faxd.queue import NAMESPACE, QUEUE, READY_AT_OPTION, queue_depth, workers_seen

__all__ = [
    "DeliveryMetrics",
    "StoreCollector",
    "oldest_message_age_s",
]

#: A worker whose last dramatiq heartbeat is older than this does not count as seen.
WORKER_SEEN_S = 60.0
#: How many of the queue's first messages are read to find the oldest. Redelivered
#: messages go to the back, so the head is not strictly the oldest; a sample of the
#: head finds it in practice while the cost stays bounded for deep queues.
OLDEST_SAMPLE = 100

#: sipgate calls: a healthy one takes tens of milliseconds, a POST of 20 MiB a few s.
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Intake to final state: seconds on the sandbox, minutes to hours against sipgate
#: (transmission, busy lines, resends after FAILED).
JOB_BUCKETS_S = (
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 21600.0, 86400.0,
)  # fmt: skip

#: Outcomes of ``faxd_submissions_total``.
SUBMISSION_OUTCOMES = ("accepted", "adopted", "rejected", "retry", "unknown")
#: Outcomes of ``faxd_polls_total``.
POLL_OUTCOMES = (
    "pending",
    "sent",
    "failed",
    "resend",
    "not_found",
    "error",
    "deadline",
)


class DeliveryMetrics:
    """Counters and histograms one process observes while delivering faxes.

    With ``registry=None`` the collectors are registered nowhere: observations
    cost next to nothing and are never served (tests, the CLI).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.submissions = Counter(
            "faxd_submissions",
            "POSTs of faxes to sipgate (and lookups adopting a lost one) by outcome: "
            "accepted, adopted, rejected (permanent error), retry (nothing reached "
            "sipgate), unknown (may have reached it).",
            labelnames=["outcome"],
            registry=registry,
        )
        self.polls = Counter(
            "faxd_polls",
            "Status polls (GETs) by outcome: pending, sent, failed, resend (FAILED, "
            "another transmission follows), not_found, error, deadline (gave up).",
            labelnames=["outcome"],
            registry=registry,
        )
        self.sipgate_latency = Histogram(
            "faxd_sipgate_request_seconds",
            "Duration of sipgate API calls, successful or not, by operation.",
            labelnames=["operation"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.sipgate_errors = Counter(
            "faxd_sipgate_errors",
            "sipgate API calls that failed, by operation and HTTP status "
            "('network' when no answer came).",
            labelnames=["operation", "status"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "faxd_job_duration_seconds",
            "Time from intake to the job's final state (sent or failed).",
            labelnames=["state"],
            buckets=JOB_BUCKETS_S,
            registry=registry,
        )
        for outcome in SUBMISSION_OUTCOMES:
            self.submissions.labels(outcome)
        for outcome in POLL_OUTCOMES:
            self.polls.labels(outcome)

    def submission(self, outcome: str) -> None:
        self.submissions.labels(outcome).inc()

    def poll(self, outcome: str) -> None:
        self.polls.labels(outcome).inc()

    def finished(self, state: str, created_at: float, now: float) -> None:
        """A job reached ``state`` (sent or failed) ``now``; it came in at created."""
        self.job_duration.labels(state).observe(max(0.0, now - created_at))

    @contextmanager
    def sipgate_call(
        self, operation: str, clock: Callable[[], float] = time.perf_counter
    ) -> Iterator[None]:
        """Time one sipgate call; count it as an error when it raises SipgateError."""
        started = clock()
        try:
            yield
        except SipgateError as exc:
            status = str(exc.status) if exc.status else "network"
            self.sipgate_errors.labels(operation, status).inc()
            raise
        finally:
            self.sipgate_latency.labels(operation).observe(clock() - started)


def oldest_message_age_s(client: Any, now: float | None = None) -> float:
    """Seconds the oldest message ready in the faxd queue has waited; 0 if none.

    dramatiq's Redis broker keeps the ready message ids in the list
    ``<namespace>:<queue>`` (fetched from the head) and their bodies in the hash
    ``<namespace>:<queue>.msgs``. A message waits from the time it became ready
    (``faxd.queue.READY_AT_OPTION``, stamped at every enqueue, including dramatiq's
    move of a due delayed message), else from its ``message_timestamp``: a poll
    scheduled for later is not late until then.
    """
    queue_key = f"{NAMESPACE}:{QUEUE}"
    ids = client.lrange(queue_key, 0, OLDEST_SAMPLE - 1)
    if not ids:
        return 0.0
    bodies = client.hmget(f"{queue_key}.msgs", ids)
    ready_ms: list[float] = []
    for raw in bodies:
        if raw is None:  # acknowledged between the two commands
            continue
        try:
            message = json.loads(raw)
            options = message.get("options") or {}
            stamp = float(
                options.get(READY_AT_OPTION) or message.get("message_timestamp") or 0
            )
        except (ValueError, TypeError, AttributeError):
            continue
        if stamp:
            ready_ms.append(stamp)
    if not ready_ms:
        return 0.0
    current = time.time() if now is None else now
    return max(0.0, current - min(ready_ms) / 1000)


class StoreCollector(Collector):
    """Deployment-wide gauges read from Redis at scrape time.

    ``store`` is the job store or a function returning it (a worker opens its
    store lazily). When Redis does not answer, only ``faxd_redis_up 0`` is served.
    """

    def __init__(self, store: JobStore | Callable[[], JobStore]) -> None:
        self._store = store

    def _get_store(self) -> JobStore:
        return self._store if isinstance(self._store, JobStore) else self._store()

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "faxd_jobs", "Jobs in the store by state.", labels=["state"]
        )
        depth = GaugeMetricFamily(
            "faxd_queue_depth",
            "Messages waiting or in flight per dramatiq queue (.DQ: delayed).",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "faxd_queue_oldest_message_age_seconds",
            "How long the oldest message ready in the faxd queue has waited "
            "(0 when none waits): workers are too few or stuck when it grows.",
        )
        workers = GaugeMetricFamily(
            "faxd_workers_seen",
            f"Workers with a dramatiq heartbeat in the last {WORKER_SEEN_S:g} s.",
        )
        up = GaugeMetricFamily("faxd_redis_up", "1 when Redis answered this scrape.")
        try:
            store = self._get_store()
            for state, count in store.count_by_state().items():
                jobs.add_metric([state], count)
            for queue, count in queue_depth(store.r).items():
                depth.add_metric([queue], count)
            oldest.add_metric([], oldest_message_age_s(store.r))
            workers.add_metric([], workers_seen(store.r, WORKER_SEEN_S))
            up.add_metric([], 1)
        except (StoreError, redis.RedisError):
            up.add_metric([], 0)
            return [up]
        return [jobs, depth, oldest, workers, up]
