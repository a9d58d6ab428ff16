"""Delivery figures on the sandbox: throughput, GETs/fax, detection lag, worker RSS.

Run::

    .venv/bin/python bench/delivery.py [--jobs 200] [--workers 1] [--inflight 10000]

Everything runs in sipgate time sped up by ``--scale`` (default 20): the sandbox
takes 10 s PENDING + 40 s per page like a real fax, divided by the scale, and faxd's
settings are scaled the same way, so polls-per-fax and lag compare as they would
against sipgate. The naive approach of sipgate's Python example (one blocking loop per
fax, GET every 5 s until final) runs in the same process against the same sandbox.

Prints figures; asserts nothing. Starts its own redis-server on a free port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from faxd import log as faxlog  # noqa: E402
from faxd.config import Settings  # noqa: E402
from faxd.demo import text_pdf  # noqa: E402
from faxd.intake import submit  # noqa: E402
from faxd.jobs import FaxJob, JobState, JobStore, new_job_id  # noqa: E402
from faxd.queue import SUBMIT_ACTOR, enqueue, make_broker  # noqa: E402
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox  # noqa: E402
from faxd.sipgate import SipgateClient  # noqa: E402

PENDING_S = 10.0  # sipgate time
PER_PAGE_S = 40.0
NAIVE_POLL_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    exe = shutil.which("redis-server")
    assert exe, "redis-server missing: run ./dev setup"
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
         "--save", "", "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return proc, url


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                pass
    return pids


def start_workers(env: dict[str, str], processes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "faxd.cli", "worker", "--processes", str(processes),
         "--threads", "8"],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_final(store: JobStore, ids: list[str], timeout: float) -> list[FaxJob]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        pending = {i for i in pending if not store.get(i).is_final}
        if pending:
            store.follow("$", block_ms=200)
    return [store.get(i) for i in ids]


def sent_at(fax: dict[str, object], scale: float, created_real: float) -> float:
    pages = int(fax["pages"])  # type: ignore[call-overload]
    return created_real + (PENDING_S + PER_PAGE_S * pages) / scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--inflight", type=int, default=10_000)
    args = ap.parse_args()
    faxlog.configure("console", "WARNING")
    scale = args.scale
    tmp = Path(tempfile.mkdtemp(prefix="faxd-bench-"))
    redis_proc, redis_url = start_redis(tmp)
    sandbox = Sandbox(pending_s=PENDING_S, per_page_s=PER_PAGE_S, time_scale=scale)
    sandbox.start()
    env = {
        "REDIS_URL": redis_url,
        "SIPGATE_BASE_URL": sandbox.base_url,
        "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
        "SIPGATE_TOKEN": DEMO_TOKEN,
        "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        # faxd's defaults, in sipgate seconds, scaled like the sandbox:
        "FAXD_POLL_INITIAL": str(5.0 / scale),
        "FAXD_POLL_MAX": str(60.0 / scale),
        "FAXD_PER_PAGE_ESTIMATE": str(PER_PAGE_S / scale),
        "FAXD_POLL_DEADLINE": "3600",
        "FAXD_LOG_LEVEL": "WARNING",
        "FAXD_MAX_CONCURRENT_SENDS": "8",
    }
    settings = Settings.from_env(env)
    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    print(
        f"# sandbox: {PENDING_S:g} s pending + {PER_PAGE_S:g} s/page (sipgate time), "
        f"run {scale:g}x faster; {args.workers} worker process(es) x 8 threads"
    )
    try:
        # -- 1. end to end ----------------------------------------------------
        workers = start_workers(env, args.workers)
        docs = [text_pdf(f"bench {i}", pages=1 + i % 3) for i in range(args.jobs)]
        t0 = time.monotonic()
        ids = [
            submit(
                d, f"+49301{i:06d}", settings=settings, store=store, broker=broker
            ).id
            for i, d in enumerate(docs)
        ]
        t_sub = time.monotonic() - t0
        done = wait_final(store, ids, timeout=600)
        t_all = time.monotonic() - t0
        states = {str(s): sum(1 for j in done if j.state == s) for s in JobState}
        faxes = {str(f["filename"]): f for f in sandbox.faxes()}
        gets = sandbox.stats().get("GET /history/{id}", 0)
        lags, trans = [], []
        for job in done:
            fax = faxes[f"faxd-{job.id}.pdf"]
            created = job.transmissions[0].submitted_at
            ready = sent_at(fax, scale, created)
            assert job.finished_at is not None
            lags.append(max(0.0, job.finished_at - ready))
            trans.append(ready - created)
        p95 = statistics.quantiles(lags, n=20)[-1]
        floor = settings.poll_initial_s
        print(f"jobs: {args.jobs} (1-3 pages), states {states}")
        print(
            f"intake: {args.jobs / t_sub:.1f} jobs/s; "
            f"end to end: {args.jobs / t_all:.1f} jobs/s ({t_all:.1f} s wall)"
        )
        by_pages: dict[int, list[int]] = {}
        for job in done:
            by_pages.setdefault(job.pages, []).append(job.polls + 1)
        print(
            "GETs per fax by pages: "
            + ", ".join(
                f"{p}p {statistics.mean(v):.2f}" for p, v in sorted(by_pages.items())
            )
        )
        print(f"GET /history/{{id}} per fax: {gets / args.jobs:.2f} (target <= 4)")
        print(
            f"detection lag: p50 {statistics.median(lags):.3f} s, p95 {p95:.3f} s; "
            f"transmission p50 {statistics.median(trans):.2f} s; target <= 10% of "
            "transmission + poll floor = "
            f"{0.1 * statistics.median(trans) + floor:.3f} s"
        )
        stop(workers)

        # -- 2. the naive loop of sipgate's example ----------------------------
        sandbox.reset()
        client_lock = threading.Lock()
        naive_lags: list[float] = []
        n = min(args.jobs, 50)

        def naive(i: int) -> None:
            with SipgateClient(settings) as client:
                # sipgate's example: POST, then GET every 5 s in a blocking loop.
                sid = client.send_fax(f"+49302{i:06d}", docs[i], f"naive-{i}.pdf")
                created = time.time()
                while True:
                    time.sleep(NAIVE_POLL_S / scale)
                    entry = client.get_history_entry(sid)
                    if entry.is_final:
                        pages = 1 + i % 3
                        ready = created + (PENDING_S + PER_PAGE_S * pages) / scale
                        with client_lock:
                            naive_lags.append(max(0.0, time.time() - ready))
                        return

        threads = [threading.Thread(target=naive, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        naive_gets = sandbox.stats().get("GET /history/{id}", 0) / n
        print(
            f"naive (thread per fax, GET every {NAIVE_POLL_S:g} s): "
            f"{naive_gets:.2f} GETs per fax, "
            f"lag p50 {statistics.median(naive_lags):.3f} s, {n} threads held"
        )
        print(f"ratio naive/faxd GETs per fax: {naive_gets / (gets / args.jobs):.1f}x")

        # -- 3. worker RSS with many jobs in flight ---------------------------
        sandbox.reset()
        sandbox.inject(path="/sessions/fax", scheduled_s=10**7)  # never final
        workers = start_workers(env, 1)
        time.sleep(3)
        idle = rss_kib(group_pids(workers.pid))
        pdf = text_pdf("rss")
        marks = {1_000, args.inflight}
        made = 0
        for target in sorted(marks):
            while made < target:
                now = time.time()
                job = FaxJob(
                    id=new_job_id(),
                    state=JobState.ACCEPTED,
                    recipient=f"+49303{made:06d}",
                    source="bench",
                    created_at=now,
                    updated_at=now,
                    pages=1,
                    size=len(pdf),
                )
                store.create(job, pdf)
                enqueue(broker, SUBMIT_ACTOR, job.id)
                made += 1
            deadline = time.monotonic() + 600
            while (
                store.count_by_state()["submitted"] < target
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
            time.sleep(2)
            print(f"worker RSS with {target:>6} jobs in flight: "
                  f"{rss_kib(group_pids(workers.pid)) / 1024:.1f} MiB "
                  f"(idle {idle / 1024:.1f} MiB)")  # fmt: skip
        stop(workers)
    finally:
        broker.close()
        store.close()
        sandbox.stop()
        redis_proc.terminate()
        redis_proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
