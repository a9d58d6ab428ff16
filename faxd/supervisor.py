"""``faxd run``: everything on one box, in one supervised process group.

It starts what is missing and supervises the rest:

- Redis: the one at ``REDIS_URL`` if it answers; when ``REDIS_URL`` is unset and
  nothing answers on the default, a private ``redis-server`` (AOF persistence) on a
  unix socket in ``FAXD_DATA_DIR/redis``. An explicit ``REDIS_URL`` that does not
  answer is an error: silently using another Redis would split a multi-host setup.
- sipgate: with no credentials, the built-in sandbox, announced loudly.
- the dramatiq workers (``faxd worker``), restarted if they die;
- the hot-folder watcher when ``FAXD_HOTFOLDER`` is set, and the HTTP API when
  ``FAXD_API_TOKENS`` is set (on ``FAXD_API_HOST``:``FAXD_API_PORT``).

SIGTERM or SIGINT stops the children in reverse order and waits for them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from faxd import systemd
from faxd.config import Settings
from faxd.errors import ConfigError, FaxError

__all__ = ["run"]

log = structlog.get_logger("faxd.run")

#: A child that dies is restarted after this many seconds, doubling up to a minute.
RESTART_BACKOFF_S = 1.0

BANNER = """
================================================================================
  SANDBOX MODE: no sipgate credentials are set (SIPGATE_TOKEN_ID/SIPGATE_TOKEN).
  Faxes go to faxd's built-in sipgate sandbox at {url}
  NOTHING LEAVES THIS MACHINE and nothing is billed. Set SIPGATE_TOKEN_ID,
  SIPGATE_TOKEN and SIPGATE_FAXLINE_ID to send real faxes.
================================================================================
"""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    essential: bool = True
    started_at: float = field(default=0.0)

    def start(self) -> None:
        # Same process group as the supervisor, so killing the group (a test, an
        # init system) reaches everything; a child also gets SIGTERM should the
        # supervisor die without stopping it.
        self.proc = subprocess.Popen(
            self.argv, env=self.env, preexec_fn=_terminate_with_parent
        )
        self.started_at = time.monotonic()
        log.info("child_started", child=self.name, pid=self.proc.pid)

    def stop(self, timeout: float, *, already_signalled: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if already_signalled:
            # A terminal's Ctrl-C reached the whole group: give the child time to
            # stop by itself, as a second signal means "hurry" to dramatiq.
            try:
                self.proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("child_killed", child=self.name)
            self.proc.kill()
            self.proc.wait()


def _terminate_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _faxd(*args: str) -> list[str]:
    return [sys.executable, "-m", "faxd.cli", *args]


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait_until(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    stop = threading.Event()
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:g} s")
        stop.wait(0.05)


def _private_redis(settings: Settings, children: list[Child]) -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise ConfigError(
            "No Redis answers at REDIS_URL and redis-server is not installed; "
            "install it (apt-get install redis-server) or set REDIS_URL."
        )
    data = (settings.data_dir / "redis").resolve()
    data.mkdir(parents=True, exist_ok=True)
    sock = data / "redis.sock"
    url = f"unix://{sock}"
    if _redis_answers(url):  # left running by an earlier faxd run
        return url
    child = Child(
        "redis",
        [
            exe,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(data),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--loglevel", "warning",
        ],
        dict(os.environ),
    )  # fmt: skip
    child.start()
    children.append(child)
    _wait_until(lambda: _redis_answers(url), "redis-server")
    log.info("private_redis_started", dir=str(data))
    return url


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SANDBOX_POLLING = {"FAXD_PER_PAGE_ESTIMATE": "2", "FAXD_POLL_INITIAL": "1"}


def _sandbox(children: list[Child], env: dict[str, str]) -> dict[str, str]:
    from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID

    port = _free_port()
    child = Child("sandbox", _faxd("sandbox", "--port", str(port)), dict(env))
    child.start()
    children.append(child)
    url = f"http://127.0.0.1:{port}/v2"

    def up() -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    _wait_until(up, "the sandbox")
    print(BANNER.format(url=url), file=sys.stderr, flush=True)
    # The sandbox transmits a page in about 2 s, not sipgate's 30-60 s: poll to
    # match, unless the operator chose otherwise.
    for name, value in SANDBOX_POLLING.items():
        env.setdefault(name, value)
    return {
        "SIPGATE_BASE_URL": url,
        "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
        "SIPGATE_TOKEN": DEMO_TOKEN,
        "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
    }


def _demo(env: dict[str, str], stop: threading.Event) -> None:
    """Send one demo fax and print its story until it is final."""
    from faxd.jobs import JobStore
    from faxd.queue import make_broker

    settings = Settings.from_env(env)
    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    try:
        _demo_story(settings, store, broker, stop)
    except FaxError as exc:  # Redis went away as we stopped: nothing to tell
        if not stop.is_set():
            print(f"demo: {exc.message}", file=sys.stderr)
    finally:
        broker.close()
        store.close()


def _demo_story(
    settings: Settings, store: Any, broker: Any, stop: threading.Event
) -> None:
    from faxd.demo import DEMO_RECIPIENT, text_pdf
    from faxd.intake import submit

    pdf = text_pdf("faxd demo fax", f"sent {time.strftime('%Y-%m-%d %H:%M:%S')}")
    job = submit(
        pdf, DEMO_RECIPIENT, settings=settings, store=store, broker=broker,
        source="demo", filename="demo.pdf",
    )  # fmt: skip
    print(f"demo: queued job {job.id} for {DEMO_RECIPIENT}", file=sys.stderr)
    seen = 0
    while not stop.is_set():
        events = store.events(job.id)
        for e in events[seen:]:
            status = f" ({e['provider_status']})" if "provider_status" in e else ""
            print(f"demo: {e['at']} {e['event']} -> {e['state']}{status}",
                  file=sys.stderr, flush=True)  # fmt: skip
        seen = len(events)
        current = store.get(job.id)
        if current.is_final:
            print(
                f"demo: job {job.id} is {current.state}. "
                f"Try: REDIS_URL={settings.redis_url} faxd status {job.id}",
                file=sys.stderr,
                flush=True,
            )
            return
        store.follow("$", block_ms=1000)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Start and supervise everything faxd needs on this box until signalled."""
    children: list[Child] = []
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)  # the children are not the unit's main process
    try:
        if not _redis_answers(settings.redis_url):
            if os.environ.get("REDIS_URL"):
                raise ConfigError(
                    "No Redis answers at REDIS_URL; start it or fix the URL "
                    "(leave REDIS_URL unset and faxd run starts its own)."
                )
            env["REDIS_URL"] = _private_redis(settings, children)
        if settings.sandbox_wanted:
            env.update(_sandbox(children, env))
        else:
            log.info("sipgate_live", base_url=settings.sipgate_base_url)
        Settings.from_env(env)  # fail early, in this process, on a bad combination
        worker = Child(
            "worker",
            _faxd(
                "worker", "--processes", str(args.processes),
                "--threads", str(args.threads),
            ),
            env,
        )  # fmt: skip
        worker.start()
        children.append(worker)
        if settings.hotfolder is not None:
            children.append(Child("watch", _faxd("watch"), env))
            children[-1].start()
        if settings.api_tokens:
            children.append(Child("api", _faxd("api"), env))
            children[-1].start()
        else:
            log.info("api_not_started", reason="FAXD_API_TOKENS is not set")
        if args.demo:
            threading.Thread(target=_demo, args=(env, stop), daemon=True).start()
        print("faxd: running; press Ctrl-C to stop.", file=sys.stderr, flush=True)
        _supervise(children, stop)
        return 0
    finally:
        interrupted = signal.SIGINT in received
        for child in reversed(children):
            child.stop(timeout=35.0, already_signalled=interrupted)


def run_workers(args: argparse.Namespace) -> int:
    """``faxd worker``: dramatiq's own CLI as a child, restarted when it dies."""
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()
        systemd.notify_stopping()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    child = Child(
        "dramatiq",
        [
            sys.executable, "-m", "dramatiq", "workers",
            "--processes", str(args.processes),
            "--threads", str(args.threads),
            "--worker-shutdown-timeout", str(int(args.shutdown_timeout * 1000)),
        ],
        {
            # dramatiq moves due delayed messages (our polls) only between fetches,
            # which wait up to this long (ms) on an idle queue: 1 s by default,
            # which would be most of the detection lag.
            "dramatiq_worker_timeout": "200",
            **os.environ,
        },
    )  # fmt: skip
    child.start()
    try:
        _supervise([child], stop)
    finally:
        child.stop(
            timeout=args.shutdown_timeout + 5,
            already_signalled=signal.SIGINT in received,
        )
    return 0


def _supervise(children: list[Child], stop: threading.Event) -> None:
    while not stop.is_set():
        for child in children:
            _revive(child)
        stop.wait(0.5)


def _revive(child: Child) -> None:
    if child.proc is None or child.proc.poll() is None:
        return
    now = time.monotonic()
    if child.next_start == 0.0:
        code = child.proc.returncode
        backoff = min(60.0, RESTART_BACKOFF_S * 2 ** min(child.restarts, 6))
        if now - child.started_at > 300:
            child.restarts = 0  # it ran a good while: start the backoff afresh
        child.next_start = now + backoff
        log.error("child_exited", child=child.name, code=code, restart_in_s=backoff)
    if now >= child.next_start:
        child.restarts += 1
        child.next_start = 0.0
        child.start()
