"""``python -m watch_inbox``: run the watcher without the ``faxd`` command.

For development and the tests, which need a watcher process they can SIGKILL and
shorter timings than production (``--settle``, ``--lease``...). ``faxd watch`` is the
operator's command and takes only ``--folder`` and ``--poll``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faxd import log as faxlog
from faxd.config import Settings
from faxd.errors import ConfigError, StoreError
from watch_inbox import WatchOptions, main_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m watch_inbox")
    p.add_argument("--folder", type=Path)
    p.add_argument("--poll", action="store_true")
    defaults = WatchOptions()
    for name in ("settle_s", "poll_interval_s", "rescan_s", "check_s", "lease_s"):
        flag = "--" + name.removesuffix("_s").replace("_", "-")
        p.add_argument(flag, dest=name, type=float, default=getattr(defaults, name))
    p.add_argument("--intake-threads", type=int, default=defaults.intake_threads)
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env()
        faxlog.configure(
            settings.log_format, settings.log_level, secrets=faxlog.secrets_of(settings)
        )
        options = WatchOptions(
            poll=args.poll,
            settle_s=args.settle_s,
            poll_interval_s=args.poll_interval_s,
            rescan_s=args.rescan_s,
            check_s=args.check_s,
            lease_s=args.lease_s,
            intake_threads=args.intake_threads,
        )
        return main_run(settings, args.folder, args.poll, options=options)
    except ConfigError as exc:
        print(f"watch_inbox: configuration error: {exc.message}", file=sys.stderr)
        return 78
    except StoreError as exc:
        print(f"watch_inbox: {exc.message}", file=sys.stderr)
        return 69


if __name__ == "__main__":
    raise SystemExit(main())
