"""The dramatiq broker built from Settings, the actor names, and ``enqueue()``.

faxd enqueues work by actor *name* and never imports ``workers``; ``workers`` imports
this module to get the same broker, queue and names. Redelivery after a worker dies
rests on dramatiq's Redis heartbeats: a worker silent for ``redeliver_after_s`` is
dead, and queue maintenance (run on a share of broker commands, see
``MAINTENANCE_CHANCE``) moves its unacknowledged messages back to the queue.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from faxd.config import Settings

__all__ = [
    "CALLBACK_ACTOR",
    "POLL_ACTOR",
    "QUEUE",
    "SUBMIT_ACTOR",
    "beat",
    "enqueue",
    "make_broker",
    "queue_depth",
    "workers_seen",
]

QUEUE = "faxd"
SUBMIT_ACTOR = "submit_fax"
POLL_ACTOR = "poll_fax"
CALLBACK_ACTOR = "deliver_callback"
NAMESPACE = "faxd-dramatiq"

#: Out of dramatiq's scale of 1,000,000 broker commands, how many also run queue
#: maintenance (requeueing the messages of dead workers). Idle workers fetch about
#: once a second per queue, so 1 in 20 keeps redelivery within a few seconds of the
#: heartbeat timeout; the check itself is one ZRANGEBYSCORE when nobody died.
MAINTENANCE_CHANCE = 50_000


#: Message option: when (unix ms) the message became ready to run. dramatiq keeps
#: the first ``message_timestamp`` through delays and retries and drops ``eta``
#: when a due message moves to the ready queue, so neither tells how long a ready
#: message has waited.
READY_AT_OPTION = "faxd_ready_ms"


class ReadyStamp(Middleware):
    """Stamps every enqueued message with the time it is ready to run."""

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None
    ) -> None:
        message.options[READY_AT_OPTION] = int(time.time() * 1000) + (delay or 0)


def make_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose dead-worker detection follows FAXD_REDELIVER_AFTER."""
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_url,
        namespace=NAMESPACE,
        heartbeat_timeout=int(settings.redeliver_after_s * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
        middleware=[
            AgeLimit(),
            TimeLimit(time_limit=int(max(settings.http_timeout_s * 4, 120) * 1000)),
            ShutdownNotifications(),
            Callbacks(),
            Pipelines(),
            Retries(
                max_retries=50,
                min_backoff=1000,
                max_backoff=int(settings.retry_max_s * 1000),
            ),
            CurrentMessage(),
            ReadyStamp(),
        ],
    )
    broker.declare_queue(QUEUE)
    return broker


#: faxd's own worker heartbeats: worker id -> unix time of its last beat. dramatiq's
#: ``__heartbeats__`` will not do: every process that enqueues appears there too.
WORKERS_KEY = "faxd:workers"


def beat(client: Any, worker_id: str) -> None:
    """Record that worker process ``worker_id`` is alive and consuming."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(WORKERS_KEY, {worker_id: now})
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", now - 86400)  # long gone
        pipe.execute()


def workers_seen(client: Any, within_s: float) -> int:
    """Worker processes that beat in the last ``within_s`` seconds."""
    return int(client.zcount(WORKERS_KEY, time.time() - within_s, "+inf"))


def queue_depth(client: Any) -> dict[str, int]:
    """Messages waiting in the faxd queue and in its delay queue."""
    names = (QUEUE, f"{QUEUE}.DQ")
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hlen(f"{NAMESPACE}:{name}.msgs")
        counts = pipe.execute()
    return {n: int(c) for n, c in zip(names, counts, strict=True)}


def enqueue(
    broker: dramatiq.Broker,
    actor_name: str,
    *args: Any,
    delay_s: float | None = None,
) -> None:
    """Send a message to ``actor_name`` on the faxd queue, optionally delayed."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=QUEUE,
        actor_name=actor_name,
        args=args,
        kwargs={},
        options={},
    )
    delay_ms = None if delay_s is None or delay_s <= 0 else int(delay_s * 1000)
    broker.enqueue(message, delay=delay_ms)
