"""``deliver_callback``: POST a finished job's signed event, retrying with backoff.

It never sleeps: a failed attempt re-enqueues the actor with a delay
(:func:`faxd.callbacks.next_delay_s`) until :data:`faxd.callbacks.MAX_ATTEMPTS`,
then logs ``callback_gave_up``. Callbacks run after a job ended, on their own
messages, so a slow or dead receiver never holds up a fax.
"""

from __future__ import annotations

import random
import threading

import dramatiq
import requests
import structlog

from faxd import callbacks
from faxd.queue import CALLBACK_ACTOR, QUEUE, enqueue
from workers.actors import _ctx

__all__ = ["deliver_callback"]

log = structlog.get_logger("workers.callbacks")

_local = threading.local()


def _session() -> requests.Session:
    # requests Sessions are not shared between threads: one per worker thread.
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


@dramatiq.actor(actor_name=CALLBACK_ACTOR, queue_name=QUEUE)
def deliver_callback(job_id: str, attempt: int = 0) -> None:
    """One signed POST of the job's final event; re-enqueued with backoff on failure."""
    ctx = _ctx()
    structlog.contextvars.bind_contextvars(job_id=job_id)
    try:
        secret = ctx.settings.callback_secret.reveal()
        if not secret:
            # Unsigned events could be forged by anyone who learns the URL.
            log.error("callback_secret_missing", hint="set FAXD_CALLBACK_SECRET")
            return
        if callbacks.deliver(job_id, ctx.store, secret, _session()):
            return
        if attempt + 1 >= callbacks.MAX_ATTEMPTS:
            log.error("callback_gave_up", attempts=attempt + 1)
            return
        delay_s = callbacks.next_delay_s(attempt, random.Random())
        enqueue(
            dramatiq.get_broker(), CALLBACK_ACTOR, job_id, attempt + 1, delay_s=delay_s
        )
        log.info("callback_retry_scheduled", attempt=attempt + 1, delay_s=delay_s)
    finally:
        structlog.contextvars.unbind_contextvars("job_id")
