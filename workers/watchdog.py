"""A middleware that keeps a worker process honest: heartbeat, or exit.

Every ``HEARTBEAT_S`` it records the process in faxd's worker heartbeats
(``faxd.queue.beat``: what ``/readyz`` and ``faxd_workers_seen`` count), and it
ends a worker process whose dramatiq consumer thread died.

dramatiq 2.2's consumer thread can die for good when Redis goes away at the wrong
moment (a raw ``redis.ConnectionError`` escapes its clean-up), leaving a process
that looks alive but never moves delayed messages again: polls stop and jobs hang.
A process that cannot consume is worse than none, so this ends it; ``faxd worker``
(or systemd, or ``faxd run``) starts a fresh one, and dramatiq's heartbeats hand
its unacknowledged messages to the living.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import dramatiq
import redis
import structlog
from dramatiq.middleware import Middleware

from faxd.queue import beat

log = structlog.get_logger("workers.watchdog")

#: Exit status of a process ended by the watchdog (EX_TEMPFAIL: try again).
EXIT_CONSUMER_DIED = 75
CHECK_EVERY_S = 1.0
HEARTBEAT_S = 5.0


class ConsumerWatchdog(Middleware):
    def __init__(self) -> None:
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        threading.Thread(
            target=self._watch,
            args=(broker, worker),
            name="faxd-watchdog",
            daemon=True,
        ).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _watch(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker_id = f"{socket.gethostname()}:{os.getpid()}"
        last_beat = 0.0
        while True:
            dead = [q for q, t in list(worker.consumers.items()) if not t.is_alive()]
            if dead and not self._stop.is_set():
                log.critical("consumer_thread_died", queues=dead, action="exit")
                os._exit(EXIT_CONSUMER_DIED)
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                try:
                    beat(broker.client, worker_id)  # type: ignore[attr-defined]
                    last_beat = time.monotonic()
                except redis.RedisError:
                    pass  # Redis is down: the consumers will say so, and we retry
            if self._stop.wait(CHECK_EVERY_S):
                return
