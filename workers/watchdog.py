"""A middleware that ends a worker process whose dramatiq consumer thread died.

dramatiq 2.2's consumer thread can die for good when Redis goes away at the wrong
moment (a raw ``redis.ConnectionError`` escapes its clean-up), leaving a process
that looks alive but never moves delayed messages again: polls stop and jobs hang.
A process that cannot consume is worse than none, so this ends it; ``faxd worker``
(or systemd, or ``faxd run``) starts a fresh one, and dramatiq's heartbeats hand
its unacknowledged messages to the living.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

log = structlog.get_logger("workers.watchdog")

#: Exit status of a process ended by the watchdog (EX_TEMPFAIL: try again).
EXIT_CONSUMER_DIED = 75
CHECK_EVERY_S = 1.0


class ConsumerWatchdog(Middleware):
    def __init__(self) -> None:
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        threading.Thread(
            target=self._watch, args=(worker,), name="faxd-watchdog", daemon=True
        ).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _watch(self, worker: Any) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            dead = [q for q, t in list(worker.consumers.items()) if not t.is_alive()]
            if dead and not self._stop.is_set():
                log.critical("consumer_thread_died", queues=dead, action="exit")
                os._exit(EXIT_CONSUMER_DIED)
