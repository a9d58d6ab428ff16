"""A middleware serving each worker process's Prometheus metrics on its own port.

Opt-in: with no port configured nothing listens. ``faxd worker --processes N``
runs N processes that share nothing, so each binds the first free port of
``port .. port + PORT_SPAN - 1`` and serves its own registry (a process restarted
by dramatiq or the watchdog takes the port it left free). Prometheus scrapes
``port .. port + N - 1`` on each host. We chose this over prometheus_client's
multiprocess mode, which needs an environment variable set before the library is
imported in every process and a shared directory cleaned when processes die: a
port per process is nothing to set up and nothing to go stale.

Each process serves its :class:`faxd.metrics.DeliveryMetrics` (submissions, polls,
sipgate latency and errors, intake-to-final times: sum them over processes and
hosts). The process that holds the first port also serves the deployment-wide
gauges read from Redis (:class:`faxd.metrics.StoreCollector`: jobs by state, queue
depth, age of the oldest waiting message), so N processes do not scrape Redis N
times; with several hosts, take ``max`` of those over hosts.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware
from prometheus_client import CollectorRegistry, start_http_server

from faxd.jobs import JobStore
from faxd.metrics import DeliveryMetrics, StoreCollector

__all__ = ["PORT_SPAN", "WorkerMetrics"]

log = structlog.get_logger("workers.metrics")

#: How many consecutive ports the processes of one host may take.
PORT_SPAN = 64


def _worker_store() -> JobStore:
    from workers.actors import _ctx  # the actors' store, opened on first use

    return _ctx().store


class WorkerMetrics(Middleware):
    """Owns this process's registry; serves it over HTTP when ``port`` is set."""

    def __init__(
        self,
        port: int | None,
        host: str = "127.0.0.1",
        store: Callable[[], JobStore] | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self._store = store or _worker_store
        self.registry = CollectorRegistry(auto_describe=True)
        self.delivery = DeliveryMetrics(self.registry)
        self.bound_port: int | None = None
        self._server: Any = None

    @classmethod
    def of(cls, broker: dramatiq.Broker) -> WorkerMetrics | None:
        """The instance on ``broker``, if it has one."""
        for middleware in broker.middleware:
            if isinstance(middleware, cls):
                return middleware
        return None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not self.port:
            return
        for port in range(self.port, self.port + PORT_SPAN):
            try:
                server, _thread = start_http_server(
                    port, addr=self.host, registry=self.registry
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue  # a sibling process has it
                log.warning("metrics_not_served", port=port, reason=exc.strerror)
                return
            self._server = server
            self.bound_port = port
            if port == self.port:
                self.registry.register(StoreCollector(self._store))
            log.info("metrics_serving", port=port, store_gauges=port == self.port)
            return
        log.warning(
            "metrics_not_served",
            reason=f"ports {self.port}-{self.port + PORT_SPAN - 1} are all taken",
        )

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
