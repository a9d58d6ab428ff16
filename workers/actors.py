"""``submit_fax`` and ``poll_fax``: one core step per message, never a sleep.

Concurrency limits use dramatiq's Redis-backed limiters: at most
``FAXD_MAX_CONCURRENT_SENDS`` POSTs at once across all hosts (``GLOBAL_SENDS``), and
one submit step at a time per recipient number, so an unresolved send to a number
is never raced by another. A step that cannot take its limiter is re-enqueued with
a short delay instead of waiting.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass

import dramatiq
import structlog
from dramatiq.rate_limits import ConcurrentRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from faxd import log as faxlog
from faxd.config import Settings
from faxd.delivery import Delivery, Step
from faxd.jobs import JobStore
from faxd.metrics import DeliveryMetrics
from faxd.queue import CALLBACK_ACTOR, POLL_ACTOR, QUEUE, SUBMIT_ACTOR, enqueue
from faxd.sipgate import SipgateClient
from workers.metrics import WorkerMetrics

__all__ = ["poll_fax", "submit_fax"]

log = structlog.get_logger("workers")

#: POSTs to sipgate in flight at once, over all worker hosts.
GLOBAL_SENDS = int(os.environ.get("FAXD_MAX_CONCURRENT_SENDS", "4"))
#: How soon a step that found its limiter taken tries again.
LIMITER_RETRY_S = 0.5


@dataclass
class _Context:
    settings: Settings
    store: JobStore
    backend: RedisBackend
    local: threading.local
    metrics: DeliveryMetrics

    def delivery(self) -> Delivery:
        # requests Sessions are not shared between threads: one client per thread.
        d: Delivery | None = getattr(self.local, "delivery", None)
        if d is None:
            d = Delivery(
                self.settings,
                self.store,
                SipgateClient(self.settings),
                rng=random.Random(),
                metrics=self.metrics,
            )
            self.local.delivery = d
        return d

    def recipient_limiter(self, recipient: str) -> ConcurrentRateLimiter:
        ttl_ms = int((self.settings.http_timeout_s * 3 + 30) * 1000)
        return ConcurrentRateLimiter(  # type: ignore[no-untyped-call]
            self.backend, f"faxd-recipient:{recipient}", limit=1, ttl=ttl_ms
        )

    def sends_limiter(self) -> ConcurrentRateLimiter:
        ttl_ms = int((self.settings.http_timeout_s * 3 + 30) * 1000)
        return ConcurrentRateLimiter(  # type: ignore[no-untyped-call]
            self.backend, "faxd-sends", limit=max(1, GLOBAL_SENDS), ttl=ttl_ms
        )


_context: _Context | None = None
_context_lock = threading.Lock()


def _ctx() -> _Context:
    global _context
    with _context_lock:
        if _context is None:
            from workers import settings

            faxlog.configure(
                settings.log_format,
                settings.log_level,
                secrets=faxlog.secrets_of(settings),
            )
            store = JobStore.from_settings(settings)
            served = WorkerMetrics.of(dramatiq.get_broker())
            _context = _Context(
                settings=settings,
                store=store,
                backend=RedisBackend(client=store.r),
                local=threading.local(),
                metrics=served.delivery if served else DeliveryMetrics(),
            )
        return _context


def _follow(step: Step | None, job_id: str) -> None:
    """Enqueue the next step; when there is none and the job ended, its callback."""
    broker = dramatiq.get_broker()
    if step is not None:
        enqueue(broker, step.actor, *step.args, delay_s=step.delay_s)
        return
    job = _ctx().store.find(job_id)
    if job is not None and job.is_final and job.callback_url:
        enqueue(broker, CALLBACK_ACTOR, job_id)


@dramatiq.actor(actor_name=SUBMIT_ACTOR, queue_name=QUEUE)
def submit_fax(job_id: str) -> None:
    """POST the job's fax (or resolve an unknown earlier POST), then schedule a poll."""
    ctx = _ctx()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    try:
        job = ctx.store.find(job_id)
        if job is None:
            log.warning("submit_job_missing")
            return
        with ctx.recipient_limiter(job.recipient).acquire(
            raise_on_failure=False
        ) as mine:
            if not mine:
                _follow(Step(SUBMIT_ACTOR, LIMITER_RETRY_S, (job_id,)), job_id)
                return
            with ctx.sends_limiter().acquire(raise_on_failure=False) as slot:
                if not slot:
                    _follow(Step(SUBMIT_ACTOR, LIMITER_RETRY_S, (job_id,)), job_id)
                    return
                step = ctx.delivery().submit(job_id)
        _follow(step, job_id)
    finally:
        structlog.contextvars.unbind_contextvars("job_id")


@dramatiq.actor(actor_name=POLL_ACTOR, queue_name=QUEUE)
def poll_fax(job_id: str, seq: int) -> None:
    """One GET of the fax's status; re-enqueues itself with a delay until final."""
    ctx = _ctx()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    try:
        _follow(ctx.delivery().poll(job_id, seq), job_id)
    finally:
        structlog.contextvars.unbind_contextvars("job_id")
