"""Shared fixtures: a real redis-server on a free port and structlog reset per test.

A missing ``redis-server`` is an error, not a skip: ``./dev test`` installs it.
The sandbox fixture lives here too once ``faxd.sandbox`` exists.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
import structlog


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process with its own data directory.

    AOF is on, so restarts keep data.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; run ./dev setup")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        for _ in range(500):
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError("redis-server exited at start") from None
                _short_pause()
        client.close()

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _short_pause() -> None:
    # Waiting for a process to open its port has no event to wait on; 10 ms polls.
    import time

    time.sleep(0.01)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of a clean Redis database, flushed before and after the test."""
    client = redis_lib.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    with contextlib.suppress(redis_lib.ConnectionError):
        client.flushall()
    client.close()


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


# The sandbox fixtures (appended; imports kept here with the fixtures they serve).
from faxd.config import Settings  # noqa: E402
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox  # noqa: E402


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sipgate sandbox on 127.0.0.1 (fast clock: 0.2 s pending, 0.2 s per page)."""
    server = Sandbox(pending_s=0.2, per_page_s=0.2, seed=0)
    server.start("127.0.0.1", 0)
    yield server
    server.stop()


@pytest.fixture
def sandbox_settings(sandbox: Sandbox) -> Settings:
    """Settings pointing at the sandbox fixture with its demo credentials and line."""
    return Settings.from_env(
        {
            "SIPGATE_BASE_URL": sandbox.base_url,
            "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
            "SIPGATE_TOKEN": DEMO_TOKEN,
            "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        }
    )
