"""Real dramatiq workers in subprocesses, real Redis, the sandbox over loopback.

These pin the delivery promise end to end: every accepted job reaches exactly one
final state and no document is posted twice, also when workers are SIGKILLed
mid-flight, the sandbox loses answers after accepting, and Redis restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxd.config import Settings
from faxd.demo import text_pdf
from faxd.intake import submit
from faxd.jobs import TERMINAL, FaxJob, JobState, JobStore
from faxd.queue import make_broker
from faxd.sandbox import Sandbox
from tests.workers.rigs import fast_env, posts, wait_final

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """`faxd worker` process groups that can be started and SIGKILLed."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, threads: int = 8) -> None:
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "faxd.cli", "worker", "--threads", str(threads),
             "--shutdown-timeout", "5"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Rig:
    def __init__(self, redis_url: str, tmp: Path, **sandbox_kw: float) -> None:
        self.sandbox = Sandbox(pending_s=0.3, per_page_s=0.3, hang_s=1.0, **sandbox_kw)
        self.sandbox.start()
        self.env = fast_env(
            redis_url,
            self.sandbox,
            FAXD_HTTP_TIMEOUT="0.8",
            FAXD_LOG_LEVEL="WARNING",
        )
        self.settings = Settings.from_env(self.env)
        self.store = JobStore.from_settings(self.settings)
        self.broker = make_broker(self.settings)
        self.workers = Workers(self.env, tmp)

    def close(self) -> None:
        self.workers.stop_all()
        self.broker.close()
        self.store.close()
        self.sandbox.stop()

    def submit(self, n: int, prefix: str = "+4930555", pages: int = 1) -> list[FaxJob]:
        jobs = []
        for i in range(n):
            job = submit(
                text_pdf(f"document {prefix} {i}", pages=pages),
                f"{prefix}{i:04d}",
                settings=self.settings,
                store=self.store,
                broker=self.broker,
            )
            assert job.state == JobState.ACCEPTED, job.error_message
            jobs.append(job)
        return jobs

    def wait_final(self, jobs: list[FaxJob], timeout: float = 120) -> list[FaxJob]:
        return wait_final(self.store, jobs, timeout)

    def posts_per_job(self) -> Counter[str]:
        return posts(self.sandbox)


@pytest.fixture
def rig(redis_url: str, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(redis_url, tmp_path)
    yield r
    r.close()


def test_hundred_pdfs_are_sent_exactly_once(rig: Rig) -> None:
    """100 PDFs through two worker processes: all sent, each posted exactly once."""
    rig.workers.start()
    rig.workers.start()
    jobs = rig.submit(100)
    done = rig.wait_final(jobs)
    assert Counter(str(j.state) for j in done) == {"sent": 100}
    posts = rig.posts_per_job()
    assert {f"faxd-{j.id}.pdf" for j in jobs} == set(posts)
    assert set(posts.values()) == {1}
    gets = rig.sandbox.stats().get("GET /history/{id}", 0)
    assert gets / 100 <= 4


def test_failures_under_workers(rig: Rig) -> None:
    """Permanent errors fail with their code; FAILED is resent up to the limit."""
    rig.sandbox.inject(path="/sessions/fax", recipient="^\\+4930666", status=402)
    rig.sandbox.inject(path="/sessions/fax", recipient="^\\+4930777", outcome="FAILED")
    rig.sandbox.inject(
        path="/sessions/fax", recipient="^\\+4930888", fail_transmissions=1
    )
    rig.workers.start()
    paid = rig.submit(3, prefix="+4930666")
    failing = rig.submit(3, prefix="+4930777")
    flaky = rig.submit(3, prefix="+4930888")
    rig.wait_final(paid + failing + flaky)
    posts = rig.posts_per_job()
    for job in paid:
        got = rig.store.get(job.id)
        assert (got.state, got.error_code) == (JobState.FAILED, "sipgate_payment")
    for job in failing:
        got = rig.store.get(job.id)
        assert (got.state, got.error_code) == (JobState.FAILED, "fax_failed")
        assert posts[f"faxd-{job.id}.pdf"] == rig.settings.max_transmissions
    for job in flaky:
        got = rig.store.get(job.id)
        assert got.state == JobState.SENT
        assert posts[f"faxd-{job.id}.pdf"] == 2


def test_sigkill_storm_loses_nothing_and_sends_nothing_twice(
    rig: Rig, redis_server: object
) -> None:
    """Workers SIGKILLed repeatedly amid lost answers and 503s: one end state each."""
    rig.sandbox.inject(path="/sessions/fax", accept_then="reset", rate=0.1)
    rig.sandbox.inject(path="/sessions/fax", status=503, rate=0.1)
    rig.sandbox.inject(path="/history/*", status=503, rate=0.05)
    jobs = rig.submit(120)
    rig.workers.start()
    stop = threading.Event()
    for _ in range(6):
        stop.wait(1.2)  # let them get into the middle of things
        rig.workers.kill_all()
        rig.workers.start()
    done = rig.wait_final(jobs, timeout=180)
    assert all(j.state in TERMINAL for j in done)
    assert Counter(str(j.state) for j in done) == {"sent": 120}
    posts = rig.posts_per_job()
    assert max(posts.values()) == 1, [k for k, v in posts.items() if v > 1]
    assert {f"faxd-{j.id}.pdf" for j in jobs} == set(posts)


def test_redis_restart_mid_run(rig: Rig, redis_server: object) -> None:
    """Redis (AOF) restarted while faxes are in flight: all still end sent, once."""
    from tests.conftest import RedisServer

    assert isinstance(redis_server, RedisServer)
    rig.workers.start()
    jobs = rig.submit(40, pages=2)
    threading.Event().wait(1.0)
    redis_server.restart()
    done = rig.wait_final(jobs, timeout=180)
    assert Counter(str(j.state) for j in done) == {"sent": 40}
    assert set(rig.posts_per_job().values()) == {1}
