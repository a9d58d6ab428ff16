"""End-to-end figures of the whole daemon: ``faxd run`` as an operator starts it.

Run::

    .venv/bin/python bench/daemon.py [--jobs 1000] [--processes 1]

Starts ``faxd run`` in its own session with a fresh ``FAXD_DATA_DIR``, no
``REDIS_URL`` and no sipgate credentials, so it brings up its private Redis (unix
socket) and the sandbox (1 s PENDING + 2 s per page) itself, with its default
worker of 8 threads per process. Once the Redis socket answers and a worker has a
heartbeat, it queues ``--jobs`` faxes of one to three pages through
``faxd.intake.submit`` and waits until all are final. Prints throughput, intake to
``sent`` (p50/p95, against the sandbox's transmission time), status polls per fax,
and the peak RSS of every process in the daemon's process group; then stops the
daemon with SIGINT to its group (Ctrl-C in a terminal) and times the shutdown.

Should something answer on localhost:6379, ``faxd run`` would use it rather than
start its own; the bench then starts a redis-server on a free port, passes it as
``REDIS_URL`` and says so. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import requests  # noqa: E402

from faxd import log as faxlog  # noqa: E402
from faxd.config import Settings  # noqa: E402
from faxd.demo import text_pdf  # noqa: E402
from faxd.intake import submit  # noqa: E402
from faxd.jobs import FaxJob, JobState, JobStore  # noqa: E402
from faxd.queue import make_broker, workers_seen  # noqa: E402
from faxd.sandbox import BUILTIN_PATTERNS  # noqa: E402

#: The sandbox's clock as ``faxd run`` starts it (its defaults).
PENDING_S = 1.0
PER_PAGE_S = 2.0
#: How often the process group's memory is sampled.
SAMPLE_S = 0.5
#: ``faxd.cli`` subcommands the daemon runs, by the name this bench prints.
ROLES = {"run": "supervisor", "sandbox": "sandbox", "worker": "faxd worker wrapper"}
#: Environment that would point ``faxd run`` elsewhere than its own Redis + sandbox.
SCRUB_PREFIXES = ("SIPGATE_", "FAXD_", "REDIS_")
SCRUB_NAMES = ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_redis_answers() -> bool:
    """Whether anything accepts connections where faxd looks for Redis by default."""
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as s:
            s.settimeout(1)
            try:
                if s.connect_ex((addr, 6379)) == 0:
                    return True
            except OSError:  # no IPv6 on this box
                continue
    return False


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def wait_for(check: object, what: str, timeout: float, daemon: Daemon) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not (callable(check) and check()):
        if daemon.proc.poll() is not None:
            raise SystemExit(
                f"faxd run exited ({daemon.proc.returncode}):\n" + daemon.log()
            )
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not up after {timeout:g} s:\n" + daemon.log())
        pause.wait(0.1)


def start_own_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server missing: run ./dev setup")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
         "--appendonly", "yes", "--save", "", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, f"redis://127.0.0.1:{port}/0"


class Daemon:
    """``faxd run`` in its own session; its stderr goes to a file."""

    def __init__(self, env: dict[str, str], tmp: Path, processes: int) -> None:
        self.log_path = tmp / "faxd-run.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "faxd.cli", "run",
                 "--processes", str(processes)],
                env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def sandbox_control_url(self) -> str | None:
        found = re.search(r"sandbox at (http://\S+)/v2", self.log())
        return f"{found.group(1)}/_sandbox" if found else None

    def interrupt(self, timeout: float) -> float:
        """SIGINT to the whole group, as Ctrl-C does; seconds until it exited."""
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            print(f"# faxd run did not stop within {timeout:g} s: SIGKILLed")
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# -- memory of the process group --------------------------------------------------


@dataclass
class Peak:
    pids: set[int]
    hwm_kib: int = 0
    rss_kib: int = 0


def _status_kib(pid: int) -> tuple[int, int, int] | None:
    """(ppid, VmHWM, VmRSS) of ``pid``; None when it is gone or has no memory."""
    fields: dict[str, str] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if "VmHWM" not in fields:  # a zombie
        return None
    return (
        int(fields["PPid"]),
        int(fields["VmHWM"].split()[0]),
        int(fields["VmRSS"].split()[0]),
    )


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _group(pgid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    yield int(entry.name)
            except ProcessLookupError:
                continue


def role(argv: list[str], parent_argv: list[str]) -> str:
    """Name a process of the daemon by its command line (and its parent's)."""
    joined = " ".join(argv)
    if "dramatiq" in argv and "workers" in argv:
        # dramatiq forks its worker processes: same command line as the main one.
        forked = "dramatiq" in parent_argv and "workers" in parent_argv
        return "dramatiq worker" if forked else "dramatiq main"
    if argv and os.path.basename(argv[0].split()[0]) == "redis-server":
        return "redis"
    if "faxd.cli" in argv:
        rest = argv[argv.index("faxd.cli") + 1 :]
        sub = next((a for a in rest if not a.startswith("--log")), "")
        return ROLES.get(sub, f"faxd {sub}")
    return "other: " + (joined[:60] or "?")


class MemorySampler(threading.Thread):
    """Samples VmHWM and VmRSS of every process in one group, by role."""

    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid = pgid
        self.peaks: dict[str, Peak] = {}
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_S)

    def sample(self) -> None:
        for pid in _group(self.pgid):
            status = _status_kib(pid)
            if status is None:
                continue
            ppid, hwm, rss = status
            name = role(_cmdline(pid), _cmdline(ppid))
            peak = self.peaks.setdefault(name, Peak(set()))
            peak.pids.add(pid)
            peak.hwm_kib = max(peak.hwm_kib, hwm)
            peak.rss_kib = max(peak.rss_kib, rss)
        self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join()


# -- the run ------------------------------------------------------------------------


def recipients(n: int) -> list[str]:
    """``n`` distinct numbers avoiding the sandbox's built-in failure patterns.

    A number ending in 666 or 777 is failed on purpose and resent after
    FAXD_RESEND_DELAY (300 s), which would dwarf everything else measured here.
    """
    out: list[str] = []
    i = 0
    while len(out) < n:
        if f"{i % 1000:03d}" not in BUILTIN_PATTERNS:
            out.append(f"+49301{i:06d}")
        i += 1
    return out


def wait_final(store: JobStore, ids: list[str], timeout: float) -> list[FaxJob]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        pending = {i for i in pending if not store.get(i).is_final}
        if pending:
            store.follow("$", block_ms=200)
    return [store.get(i) for i in ids]


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (1..99) of ``values``."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(done: list[FaxJob], t0: float, t_submitted: float) -> None:
    n = len(done)
    states = {str(s): sum(1 for j in done if j.state == s) for s in JobState}
    print(f"jobs: {n} (1-3 pages), states { {k: v for k, v in states.items() if v} }")
    finished = [j.finished_at for j in done if j.finished_at is not None]
    if not finished:
        print("no job finished")
        return
    wall = max(finished) - t0
    print(
        f"throughput: {n / wall:.1f} jobs/s first submit to last final "
        f"({wall:.1f} s); intake alone {n / (t_submitted - t0):.1f} jobs/s"
    )
    sent = [j for j in done if j.state == JobState.SENT and j.finished_at]
    rows: list[tuple[str, list[FaxJob]]] = [("all", sent)]
    for pages in (1, 2, 3):
        rows.append(
            (
                f"{pages} page{'s' if pages > 1 else ''}",
                [j for j in sent if j.pages == pages],
            )
        )
    print("intake -> sent (s)   n     p50     p95   sandbox transmission")
    for label, jobs in rows:
        if not jobs:
            continue
        times = [j.finished_at - j.created_at for j in jobs if j.finished_at]
        trans = statistics.mean(PENDING_S + PER_PAGE_S * j.pages for j in jobs)
        print(
            f"  {label:<15} {len(jobs):>5} {pct(times, 50):>7.2f} "
            f"{pct(times, 95):>7.2f}   {trans:.1f}"
        )
    waits = [
        j.transmissions[0].submitted_at - j.created_at for j in sent if j.transmissions
    ]
    if waits:
        print(
            f"intake -> accepted by sipgate: p50 {pct(waits, 50):.2f} s, "
            f"p95 {pct(waits, 95):.2f} s (queueing before the POST)"
        )
    polls = [j.polls + 1 for j in sent]
    if polls:
        print(
            f"polls per fax: mean {statistics.mean(polls):.2f}, max {max(polls)} "
            "(job.polls + 1)"
        )


def print_memory(sampler: MemorySampler) -> None:
    order = [
        "supervisor",
        "redis",
        "sandbox",
        "faxd worker wrapper",
        "dramatiq main",
        "dramatiq worker",
    ]
    names = order + sorted(set(sampler.peaks) - set(order))
    print(f"peak memory per process ({sampler.samples} samples, {SAMPLE_S:g} s apart):")
    print("  process               pids  VmHWM MiB  max sampled VmRSS MiB")
    for name in names:
        peak = sampler.peaks.get(name)
        if peak is None:
            continue
        print(
            f"  {name:<21} {len(peak.pids):>4} {peak.hwm_kib / 1024:>10.1f} "
            f"{peak.rss_kib / 1024:>22.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument(
        "--processes", type=int, default=1, help="faxd run --processes (8 threads)"
    )
    args = ap.parse_args()
    faxlog.configure("console", "WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="faxd-bench-daemon-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SCRUB_PREFIXES) and k not in SCRUB_NAMES
    }
    env.update(
        FAXD_DATA_DIR=str(tmp / "data"),
        FAXD_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    own_redis: subprocess.Popen[bytes] | None = None
    if default_redis_answers():
        own_redis, url = start_own_redis(tmp)
        env["REDIS_URL"] = url
        print(
            "# something answers on localhost:6379: faxd run would use it, so this "
            f"bench passes REDIS_URL={url} (a redis-server it started) instead"
        )
    else:
        url = f"unix://{tmp / 'data' / 'redis' / 'redis.sock'}"
    docs = [text_pdf(f"bench {i}", pages=1 + i % 3) for i in range(args.jobs)]
    numbers = recipients(args.jobs)
    daemon = Daemon(env, tmp, args.processes)
    sampler = MemorySampler(daemon.proc.pid)
    sampler.start()
    store: JobStore | None = None
    broker = None
    try:
        started = time.monotonic()
        wait_for(lambda: redis_answers(url), "the daemon's Redis", 30, daemon)
        client = redis.Redis.from_url(url)
        wait_for(
            lambda: workers_seen(client, 60) >= args.processes,
            "a worker heartbeat",
            60,
            daemon,
        )
        client.close()
        print(
            f"# faxd run up in {time.monotonic() - started:.1f} s: "
            f"{'private Redis ' + url if own_redis is None else 'Redis ' + url}, "
            f"sandbox {PENDING_S:g} s pending + {PER_PAGE_S:g} s/page, "
            f"{args.processes} worker process(es) x 8 threads"
        )
        settings = Settings.from_env({"REDIS_URL": url})
        store = JobStore.from_settings(settings)
        broker = make_broker(settings)
        t0 = time.time()
        ids = [
            submit(
                doc, to, settings=settings, store=store, broker=broker, source="bench"
            ).id
            for doc, to in zip(docs, numbers, strict=True)
        ]
        t_submitted = time.time()
        done = wait_final(store, ids, timeout=240)
        report(done, t0, t_submitted)
        control = daemon.sandbox_control_url()
        if control:
            stats = requests.get(f"{control}/stats", timeout=10).json()
            print(
                "sandbox requests per fax: "
                f"POST {stats.get('POST /sessions/fax', 0) / len(ids):.2f}, "
                f"GET history {stats.get('GET /history/{id}', 0) / len(ids):.2f}"
            )
        sampler.sample()  # a last sample just before the stop
        broker.close()
        broker = None
        store.close()
        store = None
        sampler.stop()
        print_memory(sampler)
        took = daemon.interrupt(timeout=120)
        print(f"SIGINT to the group: faxd run exited {daemon.proc.returncode} "
              f"after {took:.1f} s")  # fmt: skip
    finally:
        if broker is not None:
            broker.close()
        if store is not None:
            store.close()
        daemon.kill()
        if own_redis is not None:
            own_redis.terminate()
            own_redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
