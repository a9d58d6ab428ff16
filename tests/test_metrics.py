"""Prometheus metrics against real Redis, real dramatiq messages and the sandbox.

``faxd/metrics.py``: the age of the oldest waiting message, the gauges
``StoreCollector`` reads at scrape time (parsed back from the text exposition),
and the counters and histograms ``DeliveryMetrics`` gets from a real ``Delivery``
driven step by step against the sandbox (frozen clocks, as in test_delivery.py).
``workers/metrics.py``: the middleware's port binding, called directly, and one
real ``faxd worker`` whose ``/metrics`` shows what its actors observed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import requests
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from faxd.config import Settings
from faxd.delivery import Delivery, Step
from faxd.demo import text_pdf
from faxd.errors import SipgateError
from faxd.intake import cancel, submit
from faxd.jobs import FaxJob, JobState, JobStore
from faxd.metrics import (
    POLL_OUTCOMES,
    SUBMISSION_OUTCOMES,
    DeliveryMetrics,
    StoreCollector,
    oldest_message_age_s,
)
from faxd.queue import (
    POLL_ACTOR,
    QUEUE,
    READY_AT_OPTION,
    SUBMIT_ACTOR,
    beat,
    enqueue,
    make_broker,
)
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox
from faxd.sipgate import SipgateClient
from tests.conftest import free_port
from workers.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[1]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of ``registry``'s text exposition, keyed by name and labels."""
    return parse(generate_latest(registry).decode())


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env({"REDIS_URL": redis_url})


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    s = JobStore.from_settings(settings)
    yield s
    s.close()


@pytest.fixture
def broker(settings: Settings) -> Iterator[RedisBroker]:
    b = make_broker(settings)
    yield b
    b.close()


# -- oldest_message_age_s ---------------------------------------------------------


def test_oldest_age_is_zero_without_ready_messages(store: JobStore) -> None:
    """An empty queue has no waiting message: the age is 0, not an error."""
    assert oldest_message_age_s(store.r) == 0.0


def test_oldest_age_counts_from_a_ready_message_timestamp(
    store: JobStore, broker: RedisBroker
) -> None:
    """A ready message has waited since it was enqueued (its message_timestamp)."""
    before = time.time()
    enqueue(broker, SUBMIT_ACTOR, "job-1")
    after = time.time()
    now = after + 10.0
    age = oldest_message_age_s(store.r, now=now)
    # dramatiq stamps whole milliseconds, hence the 1 ms slack below ``before``.
    assert now - after <= age <= now - before + 0.001


def test_oldest_age_finds_an_old_message_behind_the_head(
    store: JobStore, broker: RedisBroker
) -> None:
    """The oldest ready stamp counts even when it is not first in the list."""
    enqueue(broker, SUBMIT_ACTOR, "first")
    enqueue(broker, SUBMIT_ACTOR, "second")
    ids = store.r.lrange(f"{broker.namespace}:{QUEUE}", 0, -1)
    assert len(ids) == 2
    # The second came from a host whose clock runs 300 s behind ours.
    key = f"{broker.namespace}:{QUEUE}.msgs"
    body = json.loads(store.r.hget(key, ids[1]))
    body["options"][READY_AT_OPTION] -= 300_000
    store.r.hset(key, ids[1], json.dumps(body))
    assert 299.0 <= oldest_message_age_s(store.r) <= 301.0


def test_retried_message_waits_from_its_retry(
    store: JobStore, broker: RedisBroker
) -> None:
    """A message first sent 300 s ago and re-enqueued now has waited ~0 s."""
    old: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=QUEUE, actor_name=SUBMIT_ACTOR, args=("retried",), kwargs={},
        options={}, message_timestamp=int((time.time() - 300) * 1000),
    )  # fmt: skip
    broker.enqueue(old)  # what Retries does with a failed message (no delay)
    assert oldest_message_age_s(store.r) < 5.0


def test_delayed_message_is_not_waiting_until_due(
    store: JobStore, broker: RedisBroker
) -> None:
    """A poll delayed for later sits in the delay queue and does not age the queue."""
    enqueue(broker, POLL_ACTOR, "job-1", 1, delay_s=60)
    assert oldest_message_age_s(store.r, now=time.time() + 3600) == 0.0
    enqueue(broker, SUBMIT_ACTOR, "job-2")
    age = oldest_message_age_s(store.r, now=time.time() + 5)
    assert 5.0 <= age <= 6.0  # the ready one only


def test_due_delayed_message_is_late_only_from_its_eta(
    settings: Settings, store: JobStore
) -> None:
    """A delayed poll that came due behind busy workers waits from its move."""
    busy_broker = make_broker(settings)
    running = threading.Event()
    release = threading.Event()

    def busy(job_id: str) -> None:
        running.set()
        release.wait(30)

    dramatiq.actor(actor_name=SUBMIT_ACTOR, queue_name=QUEUE, broker=busy_broker)(busy)
    # One worker thread prefetches two messages: with both blockers fetched (one
    # running, one waiting for the thread) nothing more leaves the ready list.
    enqueue(busy_broker, SUBMIT_ACTOR, "blocker-1")
    enqueue(busy_broker, SUBMIT_ACTOR, "blocker-2")
    worker = dramatiq.Worker(busy_broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert running.wait(10)
        queue_key = f"{busy_broker.namespace}:{QUEUE}"
        assert store.r.llen(queue_key) == 0
        before = time.time()
        enqueue(busy_broker, SUBMIT_ACTOR, "delayed", delay_s=1.0)
        # dramatiq's own delay-queue consumer moves it to the ready list when due.
        # broker.join() cannot wait for that (its size of the delay queue counts
        # the ready queue too) and no event says so: look every 20 ms.
        deadline = time.monotonic() + 10
        while store.r.llen(queue_key) == 0:
            assert time.monotonic() < deadline, "the delayed message never came due"
            release.wait(0.02)
        seen = time.time()  # it was ready by now, and not before its eta
        assert store.r.hlen(f"{queue_key}.DQ.msgs") == 0
        now = seen + 0.5
        age = oldest_message_age_s(store.r, now=now)
        assert now - seen <= age <= now - (before + 1.0) + 0.001
    finally:
        release.set()
        worker.stop()
        busy_broker.close()


# -- StoreCollector -----------------------------------------------------------------


def collector_registry(store: JobStore | Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StoreCollector(store))
    return registry


def test_store_collector_reports_jobs_queues_and_redis_up(
    settings: Settings, store: JobStore, broker: RedisBroker
) -> None:
    """Jobs by state, both queue depths, the oldest age and redis_up in one scrape."""
    kept, dropped = (
        submit(text_pdf(f"doc {i}"), f"+4930123456{i}", settings=settings,
               store=store, broker=broker)
        for i in range(2)
    )  # fmt: skip
    rejected = submit(
        b"not a pdf", "+493012345670", settings=settings, store=store, broker=broker
    )
    assert (kept.state, rejected.state) == (JobState.ACCEPTED, JobState.REJECTED)
    cancel(dropped.id, store=store)
    enqueue(broker, POLL_ACTOR, kept.id, 1, delay_s=600)

    samples = scrape(collector_registry(store))

    assert value(samples, "faxd_jobs", state="accepted") == 1
    assert value(samples, "faxd_jobs", state="cancelled") == 1
    assert value(samples, "faxd_jobs", state="rejected") == 1
    assert value(samples, "faxd_jobs", state="sent") == 0
    assert {str(s) for s in JobState} == {
        dict(labels)["state"] for name, labels in samples if name == "faxd_jobs"
    }
    # Two submit messages (the cancelled job's stays queued), one delayed poll.
    assert value(samples, "faxd_queue_depth", queue=QUEUE) == 2
    assert value(samples, "faxd_queue_depth", queue=f"{QUEUE}.DQ") == 1
    age = value(samples, "faxd_queue_oldest_message_age_seconds")
    assert age is not None and 0.0 <= age < 60.0
    assert value(samples, "faxd_redis_up") == 1


def test_store_collector_counts_a_beating_worker(store: JobStore) -> None:
    """A worker process that beat in the last minute is one worker seen."""
    registry = collector_registry(store)
    assert value(scrape(registry), "faxd_workers_seen") == 0
    beat(store.r, "host-a:123")
    assert value(scrape(registry), "faxd_workers_seen") == 1


def test_store_collector_does_not_count_an_intake_process_as_a_worker(
    settings: Settings, store: JobStore, broker: RedisBroker
) -> None:
    """A process that only enqueues (API, watcher, `faxd send`) is no worker seen."""
    submit(text_pdf("doc"), "+493012345678", settings=settings, store=store,
           broker=broker)  # fmt: skip
    assert value(scrape(collector_registry(store)), "faxd_workers_seen") == 0


def test_store_collector_serves_only_redis_down_when_redis_is_unreachable() -> None:
    """With nothing listening at REDIS_URL a scrape is faxd_redis_up 0 and no more."""
    dead = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    store = JobStore.from_settings(dead)
    try:
        samples = scrape(collector_registry(store))
    finally:
        store.close()
    assert samples == {("faxd_redis_up", frozenset()): 0.0}


def test_store_collector_opens_its_store_lazily(store: JobStore) -> None:
    """A store factory (a worker's lazily opened store) is called at scrape time."""
    calls: list[int] = []

    def factory() -> JobStore:
        calls.append(1)
        return store

    registry = CollectorRegistry()  # no auto_describe: registering collects nothing
    registry.register(StoreCollector(factory))
    assert calls == []
    assert value(scrape(registry), "faxd_redis_up") == 1
    assert calls == [1]


# -- DeliveryMetrics: pure parts ------------------------------------------------------


def test_every_outcome_is_exported_at_zero_before_the_first() -> None:
    """rate() and absent-series alerts need every outcome series from the start."""
    registry = CollectorRegistry()
    DeliveryMetrics(registry)
    samples = scrape(registry)
    for outcome in SUBMISSION_OUTCOMES:
        assert value(samples, "faxd_submissions_total", outcome=outcome) == 0
    for outcome in POLL_OUTCOMES:
        assert value(samples, "faxd_polls_total", outcome=outcome) == 0


def test_sipgate_call_times_calls_and_counts_errors_by_status() -> None:
    """Latency is observed for every call; SipgateError also counts, by status."""
    registry = CollectorRegistry()
    metrics = DeliveryMetrics(registry)
    ticks = iter([10.0, 10.25, 20.0, 22.0, 30.0, 30.5, 40.0, 40.125])
    with metrics.sipgate_call("send_fax", clock=ticks.__next__):
        pass
    with (
        pytest.raises(SipgateError),
        metrics.sipgate_call("send_fax", clock=ticks.__next__),
    ):
        raise SipgateError("busy", status=503)
    with (
        pytest.raises(SipgateError),
        metrics.sipgate_call("get_history_entry", clock=ticks.__next__),
    ):
        raise SipgateError("no answer")
    with (
        pytest.raises(KeyError),
        metrics.sipgate_call("get_history_entry", clock=ticks.__next__),
    ):
        raise KeyError("a bug of ours, not sipgate's")
    samples = scrape(registry)
    latency = "faxd_sipgate_request_seconds"
    assert value(samples, f"{latency}_count", operation="send_fax") == 2
    assert value(samples, f"{latency}_sum", operation="send_fax") == 2.25
    assert value(samples, f"{latency}_count", operation="get_history_entry") == 2
    assert value(samples, f"{latency}_sum", operation="get_history_entry") == 0.625
    errors = "faxd_sipgate_errors_total"
    assert value(samples, errors, operation="send_fax", status="503") == 1
    assert value(samples, errors, operation="get_history_entry", status="network") == 1
    assert {k for k in samples if k[0] == errors} == {
        (errors, frozenset({("operation", "send_fax"), ("status", "503")})),
        (
            errors,
            frozenset({("operation", "get_history_entry"), ("status", "network")}),
        ),
    }


# -- DeliveryMetrics from a real Delivery ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class DeliveryRig:
    """A sandbox with a frozen clock and a Delivery observing into its own registry."""

    def __init__(self, redis_url: str) -> None:
        self.sandbox = Sandbox(pending_s=1.0, per_page_s=2.0, time_scale=0, hang_s=1.0)
        self.sandbox.start()
        self.settings = Settings.from_env(
            {
                "REDIS_URL": redis_url,
                "SIPGATE_BASE_URL": self.sandbox.base_url,
                "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
                "SIPGATE_TOKEN": DEMO_TOKEN,
                "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
                "FAXD_POLL_INITIAL": "1",
                "FAXD_POLL_MAX": "8",
                "FAXD_PER_PAGE_ESTIMATE": "2",
                "FAXD_RETRY_MAX": "10",
                "FAXD_RESEND_DELAY": "5",
                "FAXD_POLL_DEADLINE": "120",
                "FAXD_HTTP_TIMEOUT": "0.5",
            }
        )
        self.store = JobStore.from_settings(self.settings)
        self.broker = make_broker(self.settings)
        self.client = SipgateClient(self.settings)
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.delivery = Delivery(
            self.settings,
            self.store,
            self.client,
            rng=random.Random(7),
            clock=self.clock,
            metrics=DeliveryMetrics(self.registry),
        )

    def close(self) -> None:
        self.client.close()
        self.broker.close()
        self.store.close()
        self.sandbox.stop()

    def run_job(self, to: str, pages: int = 1) -> tuple[FaxJob, list[Step]]:
        """Submit a fax and run its steps, moving both clocks by each step's delay."""
        job = submit(
            text_pdf(f"fax to {to}", pages=pages), to, settings=self.settings,
            store=self.store, broker=self.broker,
        )  # fmt: skip
        assert job.state == JobState.ACCEPTED, job.error_message
        self.clock.now = job.created_at
        taken: list[Step] = []
        step: Step | None = Step(SUBMIT_ACTOR, 0, (job.id,))
        while step is not None:
            taken.append(step)
            assert len(taken) <= 60, f"no end: {taken[-3:]}"
            self.clock.now += step.delay_s
            self.sandbox.advance(step.delay_s)
            if step.actor == SUBMIT_ACTOR:
                step = self.delivery.submit(*step.args)
            else:
                step = self.delivery.poll(*step.args)
        return self.store.get(job.id), taken

    def samples(self) -> Samples:
        return scrape(self.registry)


@pytest.fixture
def rig(redis_url: str) -> Iterator[DeliveryRig]:
    r = DeliveryRig(redis_url)
    yield r
    r.close()


def outcomes(samples: Samples, name: str) -> dict[str, float]:
    """The non-zero outcome counts of counter ``name``."""
    return {
        dict(labels)["outcome"]: v
        for (n, labels), v in samples.items()
        if n == name and v
    }


def test_sent_fax_counts_one_post_its_polls_and_its_duration(rig: DeliveryRig) -> None:
    """A 2-page fax: one accepted POST, pending polls then sent, intake-to-sent time."""
    job, steps = rig.run_job("+493012345678", pages=2)
    assert job.state == JobState.SENT
    polls = [s for s in steps if s.actor == POLL_ACTOR]
    samples = rig.samples()
    assert outcomes(samples, "faxd_submissions_total") == {"accepted": 1}
    assert len(polls) >= 2  # the first poll (~4.5 s) comes before the 5 s are over
    assert outcomes(samples, "faxd_polls_total") == {
        "sent": 1,
        "pending": len(polls) - 1,
    }
    assert len(polls) - 1 == job.polls
    latency = "faxd_sipgate_request_seconds_count"
    assert value(samples, latency, operation="send_fax") == 1
    assert value(samples, latency, operation="get_history_entry") == len(polls)
    assert not any(name == "faxd_sipgate_errors_total" for name, _ in samples)
    assert value(samples, "faxd_job_duration_seconds_count", state="sent") == 1
    total = sum(s.delay_s for s in steps)  # the fake clock moved by exactly this
    took = value(samples, "faxd_job_duration_seconds_sum", state="sent")
    assert took == pytest.approx(total)
    assert total >= 5.0  # the sandbox needs 1 s + 2 x 2 s before it says SENT
    assert value(samples, "faxd_job_duration_seconds_count", state="failed") is None


def test_transient_errors_count_as_retry_and_poll_error(rig: DeliveryRig) -> None:
    """A 429 on the POST is a retry, a 500 on a GET a poll error; both by status."""
    rig.sandbox.inject(path="/sessions/fax", status=429, times=1)
    rig.sandbox.inject(method="GET", path="/history/*", status=500, times=1)
    job, _ = rig.run_job("+493012345678")
    assert job.state == JobState.SENT
    samples = rig.samples()
    assert outcomes(samples, "faxd_submissions_total") == {"retry": 1, "accepted": 1}
    assert outcomes(samples, "faxd_polls_total").get("error") == 1
    assert outcomes(samples, "faxd_polls_total").get("sent") == 1
    errors = "faxd_sipgate_errors_total"
    assert value(samples, errors, operation="send_fax", status="429") == 1
    assert value(samples, errors, operation="get_history_entry", status="500") == 1
    latency = "faxd_sipgate_request_seconds_count"
    assert value(samples, latency, operation="send_fax") == 2


def test_lost_answer_counts_unknown_then_adopted(rig: DeliveryRig) -> None:
    """A POST whose answer is lost counts unknown; finding it in history, adopted."""
    rig.sandbox.inject(path="/sessions/fax", accept_then="reset", times=1)
    job, _ = rig.run_job("+493012345678")
    assert job.state == JobState.SENT
    assert len(rig.sandbox.faxes()) == 1
    samples = rig.samples()
    assert outcomes(samples, "faxd_submissions_total") == {"unknown": 1, "adopted": 1}
    latency = "faxd_sipgate_request_seconds_count"
    assert value(samples, latency, operation="find_faxes") == 1
    errors = "faxd_sipgate_errors_total"
    assert value(samples, errors, operation="send_fax", status="network") == 1


def test_failed_fax_counts_resends_and_a_failed_duration(rig: DeliveryRig) -> None:
    """sipgate says FAILED each time: resends up to the limit, then failed once."""
    job, _ = rig.run_job("+493012345666")  # the sandbox fails numbers ending 666
    assert (job.state, job.error_code) == (JobState.FAILED, "fax_failed")
    n = rig.settings.max_transmissions
    samples = rig.samples()
    assert outcomes(samples, "faxd_submissions_total") == {"accepted": n}
    polls = outcomes(samples, "faxd_polls_total")
    assert (polls.get("resend"), polls.get("failed"), polls.get("sent")) == (
        n - 1,
        1,
        None,
    )
    assert value(samples, "faxd_job_duration_seconds_count", state="failed") == 1
    assert value(samples, "faxd_job_duration_seconds_count", state="sent") is None


def test_rejected_post_counts_rejected_and_fails_the_job(rig: DeliveryRig) -> None:
    """A 402 (no credit) is a rejected submission, a send_fax error and a failure."""
    rig.sandbox.inject(path="/sessions/fax", status=402)
    job, _ = rig.run_job("+493012345678")
    assert (job.state, job.error_code) == (JobState.FAILED, "sipgate_payment")
    samples = rig.samples()
    assert outcomes(samples, "faxd_submissions_total") == {"rejected": 1}
    assert outcomes(samples, "faxd_polls_total") == {}
    errors = "faxd_sipgate_errors_total"
    assert value(samples, errors, operation="send_fax", status="402") == 1
    assert value(samples, "faxd_job_duration_seconds_count", state="failed") == 1


# -- workers/metrics.py --------------------------------------------------------------


def get_metrics(port: int) -> Samples:
    with requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        response.raise_for_status()
        return parse(response.text)


def test_worker_metrics_without_a_port_serve_nothing(
    store: JobStore, broker: RedisBroker
) -> None:
    """No FAXD_METRICS_PORT: booting binds nothing."""
    middleware = WorkerMetrics(None, store=lambda: store)
    middleware.after_worker_boot(broker, None)
    assert middleware.bound_port is None


def test_worker_metrics_first_port_serves_store_gauges_the_next_does_not(
    store: JobStore, broker: RedisBroker
) -> None:
    """Two processes on one base port: the first takes it with the store gauges."""
    port = free_port()
    first = WorkerMetrics(port, store=lambda: store)
    second = WorkerMetrics(port, store=lambda: store)
    first.after_worker_boot(broker, None)
    second.after_worker_boot(broker, None)
    try:
        assert first.bound_port == port
        assert second.bound_port is not None and second.bound_port > port
        first.delivery.submission("accepted")
        one, two = get_metrics(port), get_metrics(second.bound_port)
        assert value(one, "faxd_submissions_total", outcome="accepted") == 1
        assert value(two, "faxd_submissions_total", outcome="accepted") == 0
        assert value(one, "faxd_redis_up") == 1
        assert value(two, "faxd_redis_up") is None
        assert not any(name.startswith("faxd_jobs") for name, _ in two)
    finally:
        first.before_worker_shutdown(broker, None)
        second.before_worker_shutdown(broker, None)
    with pytest.raises(requests.ConnectionError):
        get_metrics(port)


@pytest.mark.slow
def test_real_worker_serves_what_its_actors_observed(
    redis_url: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """`faxd worker` with FAXD_METRICS_PORT serves faxd_ metrics fed by its actors."""
    port = free_port()
    env = {
        "REDIS_URL": redis_url,
        "SIPGATE_BASE_URL": sandbox.base_url,
        "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
        "SIPGATE_TOKEN": DEMO_TOKEN,
        "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        "FAXD_POLL_INITIAL": "0.2",
        "FAXD_PER_PAGE_ESTIMATE": "0.2",
        "FAXD_METRICS_PORT": str(port),
        "FAXD_LOG_LEVEL": "WARNING",
    }
    settings = Settings.from_env(env)
    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "faxd.cli", "worker", "--threads", "2",
             "--shutdown-timeout", "5"],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        job = submit(
            text_pdf("metrics"), "+493012345678", settings=settings, store=store,
            broker=broker,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not store.get(job.id).is_final:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            store.follow("$", block_ms=200)
        assert store.get(job.id).state == JobState.SENT
        # Counted before the job was written final, so already visible here.
        samples = get_metrics(port)
        assert value(samples, "faxd_submissions_total", outcome="accepted") == 1
        assert value(samples, "faxd_polls_total", outcome="sent") == 1
        assert value(samples, "faxd_jobs", state="sent") == 1
        assert value(samples, "faxd_redis_up") == 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        broker.close()
        store.close()
