"""Talking to systemd: the ``sd_notify`` readiness protocol, without libsystemd.

A ``Type=notify`` unit (see ``deploy/``) waits for ``READY=1`` before it counts a faxd
service as started, and ``STOPPING=1`` tells it a stop is under way. The protocol is
one datagram per message on the AF_UNIX socket named by ``$NOTIFY_SOCKET``: a path, or
``@name`` for a socket in the abstract namespace. Without ``NOTIFY_SOCKET`` (a
terminal, ``faxd run``, the tests) every call here does nothing.

``NOTIFY_SOCKET`` is read from the process environment at call time, not through
:class:`faxd.config.Settings`: it is not configuration but a handle the service manager
gives this one process, and the calls below sit in places that hold no settings.

Where each service says what (one line each in its entry point):

- ``faxd worker``: the dramatiq worker processes say ``READY=1`` once booted
  (:class:`ReadyMiddleware`; the unit has ``NotifyAccess=all``), the wrapper says
  ``STOPPING=1`` on SIGTERM.
- ``faxd api``: uvicorn calls :func:`uvicorn_ready` once it listens (and every
  ``timeout_notify`` seconds after, harmlessly); the lifespan's exit says
  ``STOPPING=1``.
- ``faxd watch``: the watcher sets :class:`ReadyEvent` once it follows events;
  SIGTERM says ``STOPPING=1``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

import dramatiq
import structlog

__all__ = [
    "ReadyEvent",
    "ReadyMiddleware",
    "notify",
    "notify_ready",
    "notify_stopping",
    "uvicorn_ready",
]

log = structlog.get_logger("faxd.systemd")

READY = "READY=1"
STOPPING = "STOPPING=1"


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # the abstract namespace: no file behind it
    if value.startswith("/"):
        return value
    return None  # vsock: and other transports newer systemd may offer: not ours


def notify(*states: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``states`` (``"READY=1"``...) as one datagram to ``$NOTIFY_SOCKET``.

    Return True when sent, False when there is no socket or sending failed. Never
    raises: a service must not die because its manager cannot be told something.
    ``env`` replaces ``os.environ``, for tests.
    """
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not value or not states:
        return False
    address = _address(value)
    if address is None:
        log.warning("sd_notify_unsupported_socket", notify_socket=value)
        return False
    message = "\n".join(states).encode("utf-8")
    try:
        with socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
        ) as s:
            s.connect(address)
            s.sendall(message)
    except OSError as exc:
        log.warning("sd_notify_failed", error=exc.strerror or str(exc), states=states)
        return False
    return True


def notify_ready() -> bool:
    """Tell systemd the service is up (``READY=1``)."""
    return notify(READY)


def notify_stopping() -> bool:
    """Tell systemd the service is stopping (``STOPPING=1``)."""
    return notify(STOPPING)


async def uvicorn_ready() -> None:
    """For ``uvicorn.Config(callback_notify=...)``: runs once the server listens."""
    notify_ready()


class ReadyEvent(threading.Event):
    """A :class:`threading.Event` that says ``READY=1`` to systemd when set."""

    def set(self) -> None:
        super().set()
        notify_ready()


class ReadyMiddleware(dramatiq.Middleware):
    """Says ``READY=1`` when a dramatiq worker process has booted its consumers."""

    def after_worker_boot(
        self, broker: dramatiq.Broker, worker: dramatiq.Worker
    ) -> None:
        notify_ready()
