"""What the worker-process tests share: a fast environment against the sandbox,
waiting on the job event stream until jobs are final, and counting posts."""

from __future__ import annotations

import time
from collections import Counter

from faxd.jobs import FaxJob, JobStore
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox


def fast_env(redis_url: str, sandbox: Sandbox, **overrides: str) -> dict[str, str]:
    """The settings of a worker 'host' on the sandbox, with test-speed timings."""
    env = {
        "REDIS_URL": redis_url,
        "SIPGATE_BASE_URL": sandbox.base_url,
        "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
        "SIPGATE_TOKEN": DEMO_TOKEN,
        "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        "FAXD_POLL_INITIAL": "0.3",
        "FAXD_POLL_MAX": "1",
        "FAXD_PER_PAGE_ESTIMATE": "0.3",
        "FAXD_RETRY_MAX": "2",
        "FAXD_RESEND_DELAY": "0.3",
        "FAXD_REDELIVER_AFTER": "2",
    }
    env.update(overrides)
    return env


def wait_final(
    store: JobStore, jobs: list[FaxJob], timeout: float, at_least: int | None = None
) -> list[FaxJob]:
    """Block on the job event stream until ``at_least`` (default all) are final."""
    want = len(jobs) if at_least is None else at_least
    deadline = time.monotonic() + timeout
    last = "0"
    while True:
        done = [store.get(j.id) for j in jobs]
        if sum(j.is_final for j in done) >= want:
            return done
        states = Counter(str(j.state) for j in done)
        assert time.monotonic() < deadline, f"not final: {states}"
        entries = store.follow(last, block_ms=500, count=1000)
        if entries:
            last = entries[-1][0]


def posts(sandbox: Sandbox) -> Counter[str]:
    """How often the sandbox accepted each filename (faxd-<job id>.pdf)."""
    return Counter(str(f["filename"]) for f in sandbox.faxes())
