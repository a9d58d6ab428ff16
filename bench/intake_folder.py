"""How fast do PDFs dropped into the hot folder become jobs?

Run: ``.venv/bin/python bench/intake_folder.py`` (about 20 s). It starts its own
redis-server on a free port and a watcher (event mode) in a thread; no sipgate and no
workers are needed, jobs only have to be created. It prints:

- documents accepted per second through the folder: N one-page PDFs written into
  ``inbox/`` as fast as possible, timed from the first write to the last job;
- the time from a file's close to its job existing (the job's ``created`` event in
  ``faxd:events``, whose id is Redis's clock), p50 and p95, for files dropped one at
  a time at a steady pace.

Targets (from the issue): >= 50 documents/s on 2 cores, p95 < 1 s in event mode.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from faxd.config import Settings  # noqa: E402
from faxd.demo import text_pdf  # noqa: E402
from faxd.jobs import JobStore  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402
from watch_inbox import Watcher, WatchOptions  # noqa: E402

BATCH = 300
LATENCY_FILES = 60
LATENCY_GAP_S = 0.05


def created_times(
    store: JobStore, last: str, want: int, timeout: float
) -> dict[str, float]:
    """Follow ``faxd:events`` until ``want`` jobs were created; job id -> epoch s."""
    out: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        for entry_id, fields in store.follow(last, block_ms=500, count=1000):
            last = entry_id
            if fields.get("event") == "created":
                out[fields["job_id"]] = int(entry_id.split("-")[0]) / 1000
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        redis = RedisServer(tmp)
        redis.start()
        try:
            run(tmp, redis.url)
        finally:
            redis.stop()


def run(tmp: Path, redis_url: str) -> None:
    settings = Settings.from_env({"REDIS_URL": redis_url, "FAXD_LOG_LEVEL": "WARNING"})
    store = JobStore.from_settings(settings)
    root = tmp / "hot"
    watcher = Watcher(settings, root, WatchOptions())
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, ready))
    thread.start()
    ready.wait(30)
    inbox = root / "inbox"
    try:
        # throughput
        docs = [text_pdf(f"bench {i}") for i in range(BATCH)]
        last = "$"
        tail = store.r.xrevrange("faxd:events", count=1)
        last = tail[0][0].decode() if tail else "0-0"
        start = time.time()
        for i, data in enumerate(docs):
            (inbox / f"+49301234{i:04d}_bench.pdf").write_bytes(data)
        created = created_times(store, last, BATCH, 120)
        elapsed = max(created.values()) - start
        print(f"throughput: {len(created)} one-page PDFs in {elapsed:.2f} s "
              f"= {len(created) / elapsed:.0f} documents/s (target >= 50)")  # fmt: skip

        # latency from close to job
        tail = store.r.xrevrange("faxd:events", count=1)
        last = tail[0][0].decode()
        closed: dict[str, float] = {}
        pace = threading.Event()
        for i in range(LATENCY_FILES):
            rel = f"+49302345{i:04d}_latency.pdf"
            with (inbox / rel).open("wb") as out:
                out.write(text_pdf(f"latency {i}"))
            closed[rel] = time.time()
            pace.wait(LATENCY_GAP_S)
        created = created_times(store, last, LATENCY_FILES, 60)
        delays = sorted(
            created[job_id] - closed[store.get(job_id).meta["path"]]
            for job_id in created
        )
        p50 = statistics.median(delays)
        p95 = delays[int(0.95 * (len(delays) - 1))]
        print(f"close -> job: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
              f"over {len(delays)} files (target p95 < 1000 ms)")  # fmt: skip
    finally:
        stop.set()
        thread.join(30)
        store.close()


if __name__ == "__main__":
    main()
