"""The dramatiq side of faxd: the broker and the actors.

``dramatiq workers`` and ``faxd worker`` both import this package. Importing it reads
the settings once, builds the broker from them (``faxd.queue``), makes it dramatiq's
broker, and declares the actors on it. Actors call one core step each
(``faxd.delivery``) and enqueue what that step says comes next.
"""

from __future__ import annotations

import dramatiq

from faxd.config import Settings
from faxd.queue import make_broker
from faxd.systemd import ReadyMiddleware
from workers.metrics import WorkerMetrics
from workers.sweeper import Sweeper
from workers.watchdog import ConsumerWatchdog

settings = Settings.from_env()
broker = make_broker(settings)
broker.add_middleware(ConsumerWatchdog())
broker.add_middleware(Sweeper(settings))
broker.add_middleware(ReadyMiddleware())
broker.add_middleware(WorkerMetrics(settings.metrics_port, settings.metrics_host))
dramatiq.set_broker(broker)

from workers.actors import poll_fax, submit_fax  # noqa: E402  (needs the broker set)
from workers.callbacks import deliver_callback  # noqa: E402  (needs the broker set)

__all__ = ["broker", "deliver_callback", "poll_fax", "settings", "submit_fax"]
