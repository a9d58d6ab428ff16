"""faxd.systemd: sd_notify datagrams reach a real AF_UNIX socket, or nothing happens."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxd import systemd


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX paths are limited to 108 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fx") as d:
        yield Path(d)


def _receiver(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_ready_to_a_path_socket(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """notify_ready() sends exactly READY=1 to the socket NOTIFY_SOCKET names."""
    path = str(short_dir / "notify")
    with _receiver(path) as rx:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert systemd.notify_ready() is True
        assert rx.recv(4096) == b"READY=1"


def test_stopping_to_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """An @name is the abstract namespace; notify_stopping() sends STOPPING=1."""
    name = f"faxd-test-{uuid.uuid4().hex}"
    with _receiver("\0" + name) as rx:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify_stopping() is True
        assert rx.recv(4096) == b"STOPPING=1"


def test_one_datagram_per_call(short_dir: Path) -> None:
    """Several states go in one datagram, newline-separated; each call is one."""
    path = str(short_dir / "notify")
    with _receiver(path) as rx:
        env = {"NOTIFY_SOCKET": path}
        assert systemd.notify("READY=1", "STATUS=up", env=env)
        assert systemd.notify("STOPPING=1", env=env)
        assert rx.recv(4096) == b"READY=1\nSTATUS=up"
        assert rx.recv(4096) == b"STOPPING=1"


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify_ready() is False
    assert systemd.notify_stopping() is False
    assert systemd.notify("READY=1", env={}) is False


def test_gone_socket_is_reported_not_raised(short_dir: Path) -> None:
    """A socket nobody listens on makes notify return False, never raise."""
    assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(short_dir / "x")}) is (
        False
    )
    assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": "vsock:2:1"}) is False


def test_ready_event_notifies_when_set(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ReadyEvent is a threading.Event that also says READY=1 when set."""
    path = str(short_dir / "notify")
    with _receiver(path) as rx:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        event = systemd.ReadyEvent()
        assert isinstance(event, threading.Event)
        event.set()
        assert event.is_set()
        assert rx.recv(4096) == b"READY=1"


def test_uvicorn_callback_and_dramatiq_middleware_notify(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uvicorn callback and the dramatiq boot hook both send READY=1."""
    import asyncio

    path = str(short_dir / "notify")
    with _receiver(path) as rx:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        asyncio.run(systemd.uvicorn_ready())
        systemd.ReadyMiddleware().after_worker_boot(None, None)  # type: ignore[arg-type]
        assert rx.recv(4096) == b"READY=1"
        assert rx.recv(4096) == b"READY=1"


def test_sender_is_this_process(short_dir: Path) -> None:
    """systemd attributes a datagram by the sender's pid (NotifyAccess=main)."""
    path = str(short_dir / "notify")
    with _receiver(path) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": path})
        data, ancillary, _flags, _addr = rx.recvmsg(4096, socket.CMSG_SPACE(12))
        assert data == b"READY=1"
        [(level, kind, creds)] = ancillary
        assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
        assert int.from_bytes(creds[:4], "little") == os.getpid()
