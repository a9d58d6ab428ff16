"""Several worker "hosts" sharing one Redis: two `faxd worker` groups, each with its
own working directory and FAXD_DATA_DIR and an environment holding only REDIS_URL,
the sipgate credentials and timing. Work spreads over both, every job is sent once,
and killing one host mid-run still ends every job once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxd.config import Settings
from faxd.demo import text_pdf
from faxd.intake import submit
from faxd.jobs import FaxJob, JobState, JobStore
from faxd.queue import make_broker, workers_seen
from faxd.sandbox import Sandbox
from tests.workers.rigs import fast_env, posts, wait_final

pytestmark = pytest.mark.slow

FAXD = Path(sys.executable).with_name("faxd")


class Host:
    """One `faxd worker` with its own cwd and data dir, as on a separate machine."""

    def __init__(self, name: str, root: Path, env: dict[str, str]) -> None:
        self.name = name
        self.cwd = root / name
        self.cwd.mkdir()
        self.log = self.cwd / "worker.log"
        # Nothing inherited: what a host needs must be in this environment.
        self.env = {
            "PATH": os.environ["PATH"],
            **env,
            "FAXD_DATA_DIR": str(self.cwd / "var"),
            "FAXD_LOG_FORMAT": "json",
            "FAXD_LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(FAXD), "worker", "--threads", "4", "--shutdown-timeout", "5"],
                env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def posted(self) -> Counter[str]:
        """Jobs this host handed to sipgate, from its JSON log lines."""
        done: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "fax_submitted":
                    done[str(event["job_id"])] += 1
        return done


class Cluster:
    def __init__(self, redis_url: str, tmp: Path) -> None:
        self.sandbox = Sandbox(pending_s=0.3, per_page_s=0.3, hang_s=1.0)
        self.sandbox.start()
        env = fast_env(redis_url, self.sandbox, FAXD_HTTP_TIMEOUT="2")
        self.settings = Settings.from_env(env)
        self.store = JobStore.from_settings(self.settings)
        self.broker = make_broker(self.settings)
        self.hosts = [Host(name, tmp, env) for name in ("host-a", "host-b")]

    def close(self) -> None:
        for host in self.hosts:
            host.stop()
        self.broker.close()
        self.store.close()
        self.sandbox.stop()

    def start_all(self) -> None:
        for host in self.hosts:
            host.start()
        deadline = time.monotonic() + 30
        while workers_seen(self.store.r, 5) < len(self.hosts):  # both fetching
            assert time.monotonic() < deadline, "worker hosts did not come up"
            self.store.follow("$", block_ms=100)

    def submit(self, n: int, prefix: str) -> list[FaxJob]:
        jobs = []
        for i in range(n):
            job = submit(
                text_pdf(f"multihost {i}"), f"{prefix}{i:03d}",
                settings=self.settings, store=self.store, broker=self.broker,
            )  # fmt: skip
            assert job.state == JobState.ACCEPTED, job.error_message
            jobs.append(job)
        return jobs

    def wait_final(
        self, jobs: list[FaxJob], timeout: float = 60, at_least: int | None = None
    ) -> list[FaxJob]:
        return wait_final(self.store, jobs, timeout, at_least)

    def posts(self) -> Counter[str]:
        return posts(self.sandbox)


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(redis_url, tmp_path)
    yield c
    c.close()


def test_two_hosts_share_the_work_and_send_each_fax_once(cluster: Cluster) -> None:
    """60 jobs over two hosts: all sent, each posted once, both hosts posted some."""
    # Each POST takes 50 ms, so neither host can drain the queue before the other
    # fetches: the split does not hang on which one booted first.
    cluster.sandbox.inject(path="/sessions/fax", delay_s=0.05)
    cluster.start_all()
    jobs = cluster.submit(60, "+4930571")
    done = cluster.wait_final(jobs)
    assert Counter(str(j.state) for j in done) == {"sent": 60}
    assert cluster.posts() == Counter({f"faxd-{j.id}.pdf": 1 for j in jobs})
    a, b = (host.posted() for host in cluster.hosts)
    assert sum(a.values()) > 0 and sum(b.values()) > 0, (len(a), len(b))
    assert sum(a.values()) + sum(b.values()) == 60
    assert not set(a) & set(b)


def test_killing_one_host_mid_run_still_ends_every_job_once(cluster: Cluster) -> None:
    """One host SIGKILLed mid-run: the other finishes every job, none posted twice."""
    cluster.start_all()
    jobs = cluster.submit(60, "+4930572")
    cluster.wait_final(jobs, at_least=15)
    cluster.hosts[0].kill()
    done = cluster.wait_final(jobs, timeout=120)
    assert Counter(str(j.state) for j in done) == {"sent": 60}
    posts = cluster.posts()
    assert max(posts.values()) == 1, [k for k, v in posts.items() if v > 1]
    assert set(posts) == {f"faxd-{j.id}.pdf" for j in jobs}
    assert sum(cluster.hosts[1].posted().values()) > 0
