"""The hot-folder watcher behind ``faxd watch``: PDFs dropped in a folder become faxes.

This package owns the hot folder: noticing completely written files in ``inbox/``,
claiming them so each is submitted once, handing them to :func:`faxd.intake.submit`
(the only way in), following their jobs in Redis and filing each file with its
receipt in ``sent/``, ``failed/`` or ``rejected/``. Workers never touch the folder.

Modules: :mod:`watch_inbox.layout` (directories, which files count, recipient rules,
no-overwrite moves), :mod:`watch_inbox.ledger` (the ``faxd:watch:*`` keys: claims and
watcher leases), :mod:`watch_inbox.receipts` (receipt and error files),
:mod:`watch_inbox.watcher` (threads, the claim protocol and crash recovery; its
docstring describes the protocol step by step).

In short: a file is claimed by recording the claim in the Redis ledger, then renaming
it atomically into ``.work/<claim id>/``; it is submitted with the idempotency key
``watch:<folder id>:<claim id>``, so a watcher that crashes anywhere and restarts (or
another watcher adopting its claims) finishes the work without losing the file or
sending it twice.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path
from types import FrameType

from faxd import systemd
from faxd.config import Settings
from faxd.errors import ConfigError
from watch_inbox.watcher import Watcher, WatchOptions

__all__ = ["WatchOptions", "Watcher", "main_run"]


def main_run(
    settings: Settings,
    folder: Path | None,
    poll: bool,
    *,
    options: WatchOptions | None = None,
) -> int:
    """Watch ``folder`` (or ``FAXD_HOTFOLDER``) until SIGTERM or SIGINT; return 0.

    Creates the folder and its ``inbox/``, ``sent/``, ``failed/``, ``rejected/`` if
    missing. Raises ConfigError when no folder is configured or it cannot be created,
    and StoreError when Redis is unreachable at start.
    """
    root = folder if folder is not None else settings.hotfolder
    if root is None:
        raise ConfigError(
            "No hot folder is configured: set FAXD_HOTFOLDER to a directory "
            "(or pass --folder)."
        )
    opts = options or WatchOptions()
    if poll != opts.poll:
        opts = dataclasses.replace(opts, poll=poll)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        systemd.notify_stopping()

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        Watcher(settings, Path(root), opts).run(stop, ready=systemd.ReadyEvent())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
