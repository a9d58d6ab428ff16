"""How many documents per second does the intake API accept, and what does it hold?

Run: ``.venv/bin/python bench/intake_api.py`` (about 20 s). It starts its own
``redis-server`` on a free port and the API (``faxd.api.serve``, uvicorn) in a
subprocess; no workers are needed, jobs just queue. It prints:

- 1-page PDFs accepted per second over HTTP (multipart, bearer auth, unique
  documents so nothing dedupes), with several client threads;
- the API process's peak RSS (``VmHWM``) while ten clients upload a ~20 MB PDF each
  at once, measured in a fresh API process so the first phase cannot hide it.

Target (from the issue): >= 50 one-page PDFs/s on 2 cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from tests import pdfs  # noqa: E402
from tests.conftest import RedisServer, free_port  # noqa: E402

TOKEN = "bench-token"  # noqa: S105  (a throwaway token for the bench's own API)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECONDS = 5.0
CLIENTS = 4
BIG_UPLOADS = 10
MIB = 1024 * 1024


class Api:
    """The API in a subprocess; ``url`` once uvicorn says it is running."""

    def __init__(self, redis_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = (
            "import sys; from faxd.api import serve; from faxd.config import Settings; "
            f"sys.exit(serve(Settings.from_env(), '127.0.0.1', {self.port}))"
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "FAXD_API_TOKENS": TOKEN,
            "FAXD_LOG_FORMAT": "json",
            "FAXD_LOG_LEVEL": "INFO",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        running = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if "Uvicorn running on" in line:
                    running.set()
            running.set()

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()
        if not running.wait(30) or self.proc.poll() is not None:
            raise RuntimeError("the API did not start")

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field} in /proc/{self.proc.pid}/status")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=5)


def accepted_per_second(api: Api) -> tuple[float, int]:
    # Built up front, so the clients spend their (shared) CPU on HTTP only.
    docs = [pdfs.text_pdf(text=f"bench {n}") for n in range(int(SECONDS * 400))]
    deadline = time.monotonic() + SECONDS
    counter = iter(range(len(docs)))
    lock = threading.Lock()

    def client() -> tuple[int, int]:
        ok = bad = 0
        with httpx.Client(base_url=api.url, headers=AUTH, timeout=60) as c:
            while time.monotonic() < deadline:
                with lock:
                    n = next(counter)
                response = c.post(
                    "/v1/faxes",
                    files={"file": ("p.pdf", docs[n])},
                    data={"to": "+4930123456"},
                )
                if response.status_code == 202:
                    ok += 1
                else:
                    bad += 1
        return ok, bad

    start = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda _: client(), range(CLIENTS)))
    elapsed = time.monotonic() - start
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


def big_uploads(api: Api) -> tuple[int, int, float, list[int]]:
    docs = [
        pdfs.big_pdf(20 * MIB - 64 * 1024, text=f"big {i}") for i in range(BIG_UPLOADS)
    ]
    size = len(docs[0])
    before = api.status_kib("VmRSS")
    barrier = threading.Barrier(BIG_UPLOADS)

    def upload(doc: bytes) -> int:
        with httpx.Client(base_url=api.url, headers=AUTH, timeout=120) as c:
            barrier.wait()
            response = c.post(
                "/v1/faxes",
                files={"file": ("big.pdf", doc, "application/pdf")},
                data={"to": "+4930123456"},
            )
            return response.status_code

    start = time.monotonic()
    with ThreadPoolExecutor(BIG_UPLOADS) as pool:
        statuses = list(pool.map(upload, docs))
    elapsed = time.monotonic() - start
    return size, before, elapsed, statuses


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(Path(tmp))
        redis_server.start()
        try:
            api = Api(redis_server.url)
            try:
                rate, refused = accepted_per_second(api)
            finally:
                api.stop()
            print(
                f"1-page PDFs accepted through the API: {rate:.1f}/s "
                f"({CLIENTS} clients, {SECONDS:g} s, {os.cpu_count()} cores, "
                f"{refused} not accepted)"
            )
            api = Api(redis_server.url)
            try:
                size, before_kib, elapsed, statuses = big_uploads(api)
                peak_kib = api.status_kib("VmHWM")
            finally:
                api.stop()
            print(
                f"{BIG_UPLOADS} concurrent uploads of {size / MIB:.1f} MiB: "
                f"statuses {sorted(set(statuses))}, {elapsed:.1f} s; API RSS "
                f"{before_kib / 1024:.0f} MiB before, peak {peak_kib / 1024:.0f} MiB "
                f"({(peak_kib - before_kib) / 1024 / BIG_UPLOADS:.1f} MiB per upload)"
            )
        finally:
            redis_server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
