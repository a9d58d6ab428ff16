"""`faxd run` as a newcomer starts it: sandbox banner, demo fax sent, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib

ROOT = Path(__file__).resolve().parents[1]


def run_demo(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """Start `faxd run --demo`, wait until the demo fax is final, then SIGINT it."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIPGATE_", "FAXD_", "REDIS_"))
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "faxd.cli", "--log-format", "json", "run", "--demo"],
        env={**clean, "PYTHONPATH": str(ROOT), "FAXD_DATA_DIR": str(tmp_path), **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:  # blocks on the daemon's own output, no sleeps
            lines.append(line)
            if re.search(r"demo: job \w+ is (sent|failed)", line):
                break
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rest, _ = proc.communicate()
    return proc.returncode, "".join(lines) + (rest or "")


def test_run_with_explicit_redis_sends_demo_fax_on_the_sandbox(
    redis_url: str, tmp_path: Path
) -> None:
    """No credentials: the sandbox, a loud banner, the demo fax sent, exit 0."""
    code, out = run_demo({"REDIS_URL": redis_url}, tmp_path)
    assert "NOTHING LEAVES THIS MACHINE" in out
    assert re.search(r"demo: job \w+ is sent", out), out[-3000:]
    assert code == 0, out[-3000:]
    assert not (tmp_path / "redis").exists()  # its Redis answered: none of its own


def test_run_starts_a_private_redis_when_none_answers(tmp_path: Path) -> None:
    """REDIS_URL unset and nothing on localhost:6379: a private AOF Redis in the dir."""
    probe = redis_lib.Redis(socket_connect_timeout=0.5)
    try:
        probe.ping()
        pytest.skip("a Redis answers on localhost:6379, so faxd run would use it")
    except redis_lib.ConnectionError:
        pass
    finally:
        probe.close()
    code, out = run_demo({}, tmp_path)
    assert re.search(r"demo: job \w+ is sent", out), out[-3000:]
    assert code == 0, out[-3000:]
    assert (tmp_path / "redis" / "appendonlydir").is_dir()
