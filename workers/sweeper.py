"""A middleware that re-issues the steps of jobs whose messages were lost.

Messages can be lost in ways dramatiq cannot redeliver: a step that failed while
Redis was down (its retry could not be enqueued either), or a process that died
between storing a job and enqueueing it. Every worker process runs this sweep
in a background thread; dramatiq's Redis-backed bucket limiter lets one sweep
run per interval across all hosts. The decision of what is orphaned lives in
:func:`faxd.delivery.orphaned_steps`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware
from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from faxd.config import Settings
from faxd.delivery import lost_after_s, orphaned_steps
from faxd.errors import StoreError
from faxd.queue import enqueue

log = structlog.get_logger("workers.sweeper")


class Sweeper(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval_s = min(60.0, max(1.0, lost_after_s(settings) / 2))
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        threading.Thread(
            target=self._run, args=(broker,), name="faxd-sweeper", daemon=True
        ).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _run(self, broker: dramatiq.Broker) -> None:
        from workers.actors import _ctx

        ctx = _ctx()
        limiter = BucketRateLimiter(  # type: ignore[no-untyped-call]
            RedisBackend(client=ctx.store.r),
            "faxd-sweep",
            limit=1,
            bucket=int(self.interval_s * 1000),
        )
        while not self._stop.wait(self.interval_s):
            try:
                with limiter.acquire(raise_on_failure=False) as mine:
                    if not mine:
                        continue
                    for step in orphaned_steps(ctx.store, self.settings, time.time()):
                        enqueue(broker, step.actor, *step.args, delay_s=step.delay_s)
            except StoreError as exc:
                log.warning("sweep_failed", code=exc.code)
            except Exception:  # a process edge: log it, keep sweeping
                log.exception("sweep_crashed")
