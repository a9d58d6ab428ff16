"""``faxd doctor``: check a configuration end to end and say what to fix.

Each check gives one :class:`Check`: ``ok``, ``warn`` (works, but worth fixing),
``fail`` (faxd cannot work like this) or ``skip`` (an earlier failure makes it
meaningless). In order: the settings, Redis (reachable; persistence and eviction
policy as warnings), the sipgate credentials (``userinfo``), the sending fax line
(exists, ``canSend``), the hot folder (writable), the API tokens and the callback
secret (warnings), libmagic.

Exit status: 0 when nothing failed (warnings allowed), 78 (EX_CONFIG) when a failure
is the operator's settings to fix, else 69 (EX_UNAVAILABLE: a service or library is
missing or down). Messages and hints never carry a secret: URLs are shown with their
password masked, tokens only counted.
"""

from __future__ import annotations

import json as jsonlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import redis

from faxd.config import Settings
from faxd.errors import SipgateError, SipgateRejected, SipgateTransient, StoreError

__all__ = ["Check", "main", "run_checks"]

EX_OK = 0
EX_UNAVAILABLE = 69
EX_CONFIG = 78

Status = Literal["ok", "warn", "fail", "skip"]
#: Whose move a failure is: the operator's settings (78) or a service that is down (69).
Kind = Literal["config", "unavailable"]

#: API tokens shorter than this are guessable; doctor warns.
MIN_API_TOKEN_CHARS = 16
SCOPES_HINT = (
    "create a personal access token in the sipgate web app with the scopes "
    "sessions:fax:write, history:read and faxlines:read"
)
#: The smallest input libmagic must call application/pdf for validation to work.
PDF_PROBE = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check; ``kind`` says which exit status a failure means."""

    check: str
    status: Status
    message: str
    hint: str | None = None
    kind: Kind | None = None

    def line(self) -> str:
        fix = f" -> fix: {self.hint}" if self.hint else ""
        return f"{self.status:<4}  {self.check:<18} {self.message}{fix}"


def _ok(check: str, message: str) -> Check:
    return Check(check, "ok", message)


def _warn(check: str, message: str, hint: str) -> Check:
    return Check(check, "warn", message, hint)


def _fail(check: str, message: str, hint: str, kind: Kind) -> Check:
    return Check(check, "fail", message, hint, kind)


def _skip(check: str, message: str) -> Check:
    return Check(check, "skip", message)


def main(settings: Settings, *, json: bool) -> int:
    """Run every check, print one line (or JSON object) each; return the exit status."""
    results: list[Check] = []
    for result in run_checks(settings):
        results.append(result)
        if json:
            body = {k: v for k, v in asdict(result).items() if k != "kind"}
            sys.stdout.write(jsonlib.dumps(body, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(result.line() + "\n")
        sys.stdout.flush()
    return exit_status(results)


def exit_status(results: list[Check]) -> int:
    """0 without failures, 78 when one is a setting to fix, else 69."""
    kinds = {r.kind for r in results if r.status == "fail"}
    if not kinds:
        return EX_OK
    return EX_CONFIG if "config" in kinds else EX_UNAVAILABLE


def run_checks(settings: Settings) -> Iterator[Check]:
    """Yield the checks in order, each as soon as it is done."""
    yield _settings(settings)
    yield from _redis(settings)
    credentials = _credentials(settings)
    yield credentials
    yield _faxline(settings, credentials_ok=credentials.status == "ok")
    yield _hotfolder(settings)
    yield _api_tokens(settings)
    yield _callback_secret(settings)
    yield _libmagic()


# -- settings -----------------------------------------------------------------


def _settings(settings: Settings) -> Check:
    shown = settings.describe()  # secrets masked
    folder = shown["hotfolder"] or "none"
    return _ok(
        "settings",
        f"loaded: sipgate {shown['sipgate_base_url']}, "
        f"line {shown['sipgate_faxline_id'] or '(unset)'}, "
        f"Redis {shown['redis_url']}, hot folder {folder}",
    )


# -- Redis --------------------------------------------------------------------


def _redis(settings: Settings) -> Iterator[Check]:
    from faxd.jobs import JobStore

    url = str(settings.describe()["redis_url"])
    store = JobStore.from_settings(settings)
    try:
        try:
            store.ping()
        except StoreError as exc:
            auth = isinstance(exc.__cause__, redis.AuthenticationError)
            yield _fail(
                "redis",
                f"no answer from Redis at {url} ({type(exc.__cause__).__name__})",
                "fix the password in REDIS_URL (credential redis_url)"
                if auth
                else "start redis-server (systemctl start redis-server) or fix "
                "REDIS_URL",
                "config" if auth else "unavailable",
            )
            yield _skip("redis_persistence", "Redis is not reachable")
            return
        yield _ok("redis", f"Redis answers at {url}")
        yield _redis_persistence(store.r)
    finally:
        store.close()


def _redis_persistence(client: redis.Redis) -> Check:
    name = "redis_persistence"
    try:
        info = client.info("persistence")
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.RedisError as exc:  # CONFIG may be renamed or forbidden by ACLs
        return _warn(
            name,
            f"cannot read Redis' persistence settings ({type(exc).__name__})",
            "check by hand that appendonly is yes and maxmemory-policy is noeviction",
        )
    if not info.get("aof_enabled"):
        return _warn(
            name,
            "AOF persistence is off: queued faxes and job history are lost when "
            "Redis restarts",
            "set 'appendonly yes' in redis.conf (or CONFIG SET appendonly yes; "
            "CONFIG REWRITE)",
        )
    if policy not in (None, "noeviction"):
        return _warn(
            name,
            f"maxmemory-policy is {policy}: Redis may evict jobs and queued messages",
            "set 'maxmemory-policy noeviction' in redis.conf",
        )
    return _ok(name, "AOF persistence is on, nothing is evicted")


# -- sipgate ------------------------------------------------------------------


def _credentials(settings: Settings) -> Check:
    from faxd.sipgate import SipgateClient

    name = "sipgate_auth"
    if not settings.sipgate_token:
        return _fail(
            name,
            "no sipgate credentials are set (faxd run would use its sandbox; the "
            "workers cannot send)",
            "set SIPGATE_TOKEN_ID and SIPGATE_TOKEN (under systemd: the credential "
            f"sipgate_token); {SCOPES_HINT}",
            "config",
        )
    with SipgateClient(settings) as client:
        return _sipgate_call(
            name,
            client.userinfo,
            f"sipgate at {settings.sipgate_base_url} accepts the credentials",
        )


def _sipgate_call(name: str, call: Callable[[], object], ok: str) -> Check:
    try:
        call()
    except SipgateTransient as exc:
        return _fail(
            name,
            exc.message,
            "check the network, a proxy or SIPGATE_BASE_URL; try again later",
            "unavailable",
        )
    except SipgateRejected as exc:
        return _fail(name, exc.message, _hint_for(exc), "config")
    except SipgateError as exc:  # a malformed answer: the base URL is not sipgate
        return _fail(name, exc.message, "check SIPGATE_BASE_URL", "config")
    return _ok(name, ok)


def _hint_for(exc: SipgateError) -> str:
    if exc.code == "sipgate_auth":
        return (
            "check SIPGATE_TOKEN_ID and SIPGATE_TOKEN (credential sipgate_token); "
            + SCOPES_HINT
        )
    if exc.code == "sipgate_payment":
        return "top up the sipgate account"
    if exc.code == "sipgate_forbidden":
        return "give the token the scopes it lacks; " + SCOPES_HINT
    if exc.code == "sipgate_not_found":
        return "check SIPGATE_BASE_URL (https://api.sipgate.com/v2)"
    return "check SIPGATE_BASE_URL and the credentials"


def _faxline(settings: Settings, *, credentials_ok: bool) -> Check:
    from faxd.sipgate import SipgateClient

    name = "faxline"
    if not credentials_ok:
        return _skip(name, "the sipgate credentials did not work")
    lines: list[dict[str, object]] = []

    def fetch() -> None:
        with SipgateClient(settings) as client:
            try:
                lines.extend(client.faxlines())
            except SipgateRejected as exc:
                if exc.code != "sipgate_forbidden":
                    raise
                forbidden.append(exc)

    forbidden: list[SipgateRejected] = []
    listed = _sipgate_call(name, fetch, "")
    if listed.status != "ok":
        return listed
    if forbidden:
        return _warn(
            name,
            "cannot list the account's fax lines (the token lacks faxlines:read); "
            f"line {settings.sipgate_faxline_id or '(unset)'} is not verified",
            "add the scope faxlines:read to the token to let doctor check it",
        )
    known = ", ".join(str(line.get("id")) for line in lines) or "none"
    wanted = settings.sipgate_faxline_id
    if not wanted:
        return _fail(
            name,
            "SIPGATE_FAXLINE_ID is not set",
            f"set SIPGATE_FAXLINE_ID to one of the account's lines: {known}",
            "config",
        )
    line = next((item for item in lines if item.get("id") == wanted), None)
    if line is None:
        return _fail(
            name,
            f"the account has no fax line {wanted!r}",
            f"set SIPGATE_FAXLINE_ID to one of: {known}",
            "config",
        )
    if line.get("canSend") is False:
        senders = ", ".join(
            str(item.get("id")) for item in lines if item.get("canSend") is not False
        )
        return _fail(
            name,
            f"fax line {wanted!r} cannot send (canSend is false)",
            f"use a line that can send ({senders or 'none'}) or enable sending "
            "for it in the sipgate web app",
            "config",
        )
    return _ok(name, f"fax line {wanted!r} exists and can send")


# -- local --------------------------------------------------------------------


def _hotfolder(settings: Settings) -> Check:
    name = "hotfolder"
    root = settings.hotfolder
    if root is None:
        return _ok(name, "FAXD_HOTFOLDER is not set: no hot folder (faxd watch off)")
    # The watcher creates the folder: probe the deepest directory that exists.
    probe_dir = root
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return _fail(
            name,
            f"{probe_dir} is not a directory",
            "point FAXD_HOTFOLDER at a directory",
            "config",
        )
    try:
        # A dot file in the root: the watcher looks only into inbox/ and skips
        # dot files anyway.
        fd, probe = tempfile.mkstemp(prefix=".faxd-doctor-", dir=probe_dir)
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        return _fail(
            name,
            f"cannot write in {probe_dir} ({exc.strerror})",
            "make the folder writable by the user faxd runs as; under systemd, "
            "list it in ReadWritePaths= of faxd-watch.service",
            "config",
        )
    if probe_dir != root:
        return _ok(name, f"{root} does not exist yet; faxd watch can create it")
    return _ok(name, f"{root} is writable")


def _api_tokens(settings: Settings) -> Check:
    name = "api_tokens"
    tokens = settings.api_tokens
    if not tokens:
        return _warn(
            name,
            "FAXD_API_TOKENS is not set: faxd api refuses every request "
            "(auth_unconfigured)",
            "set FAXD_API_TOKENS (under systemd: the credential faxd_api_tokens) "
            "to comma-separated random tokens, e.g. from 'openssl rand -hex 32'",
        )
    short = sum(1 for t in tokens if len(t.reveal()) < MIN_API_TOKEN_CHARS)
    if short:
        return _warn(
            name,
            f"{short} of {len(tokens)} API token(s) are shorter than "
            f"{MIN_API_TOKEN_CHARS} characters",
            "use long random tokens, e.g. from 'openssl rand -hex 32'",
        )
    return _ok(name, f"{len(tokens)} API token(s) set")


def _callback_secret(settings: Settings) -> Check:
    name = "callback_secret"
    if not settings.callback_secret:
        return _warn(
            name,
            "FAXD_CALLBACK_SECRET is not set: jobs that ask for a callback_url get "
            "no callbacks",
            "set FAXD_CALLBACK_SECRET (under systemd: the credential "
            "faxd_callback_secret) if clients use callbacks",
        )
    return _ok(name, "FAXD_CALLBACK_SECRET is set")


def _libmagic() -> Check:
    name = "libmagic"
    hint = "install libmagic (apt-get install libmagic1)"
    try:
        import magic

        mime = magic.from_buffer(PDF_PROBE, mime=True)
    except ImportError as exc:  # python-magic raises it when libmagic is missing
        return _fail(name, f"libmagic cannot be loaded ({exc})", hint, "unavailable")
    except (OSError, magic.MagicException) as exc:
        return _fail(name, f"libmagic failed ({exc})", hint, "unavailable")
    if mime != "application/pdf":
        return _fail(
            name,
            f"libmagic calls a PDF {mime!r}: its magic database is incomplete",
            "reinstall libmagic1 and libmagic-mgc",
            "unavailable",
        )
    return _ok(name, "libmagic recognises PDF documents")
