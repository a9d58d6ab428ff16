"""faxd doctor against the real sandbox and a real Redis: what passes, what fails,
the hint, the exit status, and never a secret in the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faxd import doctor
from faxd.config import Settings
from faxd.sandbox import DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox
from tests.conftest import free_port

API_TOKEN = "api-token-0123456789abcdef"
CALLBACK_SECRET = "callback-secret-0123456789"
WRONG_TOKEN = "11111111-2222-4333-8444-555555555555"


def _env(sandbox: Sandbox, redis_url: str, hotfolder: Path, **extra: str) -> Settings:
    env = {
        "SIPGATE_BASE_URL": sandbox.base_url,
        "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
        "SIPGATE_TOKEN": DEMO_TOKEN,
        "SIPGATE_FAXLINE_ID": "f0",
        "REDIS_URL": redis_url,
        "FAXD_HOTFOLDER": str(hotfolder),
        "FAXD_API_TOKENS": API_TOKEN,
        "FAXD_CALLBACK_SECRET": CALLBACK_SECRET,
    }
    env.update(extra)
    return Settings.from_env(env)


def _run(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, dict[str, str | None]], str]:
    code = doctor.main(settings, json=True)
    out = capsys.readouterr().out
    checks = {}
    for line in out.splitlines():
        obj = json.loads(line)
        checks[obj["check"]] = obj
    text_code = doctor.main(settings, json=False)
    text = capsys.readouterr().out
    assert text_code == code
    assert len(text.splitlines()) == len(checks)  # one line per check
    return code, checks, out + text


def _assert_no_secret(output: str, *secrets: str) -> None:
    for secret in (DEMO_TOKEN, API_TOKEN, CALLBACK_SECRET, *secrets):
        assert secret not in output


def test_all_ok(
    sandbox: Sandbox,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A complete configuration passes every check and exits 0."""
    settings = _env(sandbox, redis_url, tmp_path / "hot")
    code, checks, output = _run(settings, capsys)
    assert code == 0
    assert {name: c["status"] for name, c in checks.items()} == {
        "settings": "ok",
        "redis": "ok",
        "redis_persistence": "ok",
        "sipgate_auth": "ok",
        "faxline": "ok",
        "hotfolder": "ok",
        "api_tokens": "ok",
        "callback_secret": "ok",
        "libmagic": "ok",
    }
    assert set(checks["faxline"]) == {"check", "status", "message", "hint"}
    _assert_no_secret(output)


def test_wrong_token_fails_with_a_hint(
    sandbox: Sandbox,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sipgate refusing the token fails the auth check (78) and names the fix."""
    settings = _env(sandbox, redis_url, tmp_path, SIPGATE_TOKEN=WRONG_TOKEN)
    code, checks, output = _run(settings, capsys)
    assert code == doctor.EX_CONFIG
    auth = checks["sipgate_auth"]
    assert auth["status"] == "fail"
    assert "SIPGATE_TOKEN" in (auth["hint"] or "")
    assert checks["faxline"]["status"] == "skip"
    assert checks["redis"]["status"] == "ok"
    _assert_no_secret(output, WRONG_TOKEN)


def test_unknown_faxline_fails(
    sandbox: Sandbox,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line the account lacks fails and the hint lists the account's lines."""
    settings = _env(sandbox, redis_url, tmp_path, SIPGATE_FAXLINE_ID="f9")
    code, checks, _ = _run(settings, capsys)
    assert code == doctor.EX_CONFIG
    assert checks["faxline"]["status"] == "fail"
    assert "f0" in (checks["faxline"]["hint"] or "")
    assert checks["sipgate_auth"]["status"] == "ok"


def test_line_that_cannot_send_fails(
    sandbox: Sandbox,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The sandbox's line f1 exists with canSend false: a failure naming f0."""
    settings = _env(sandbox, redis_url, tmp_path, SIPGATE_FAXLINE_ID="f1")
    code, checks, _ = _run(settings, capsys)
    assert code == doctor.EX_CONFIG
    assert "canSend" in (checks["faxline"]["message"] or "")
    assert "f0" in (checks["faxline"]["hint"] or "")


def test_redis_down_fails_unavailable(
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No Redis answering is a failure (69), and the URL's password stays hidden."""
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    settings = _env(sandbox, url, tmp_path)
    code, checks, output = _run(settings, capsys)
    assert code == doctor.EX_UNAVAILABLE
    assert checks["redis"]["status"] == "fail"
    assert "redis-server" in (checks["redis"]["hint"] or "")
    assert checks["redis_persistence"]["status"] == "skip"
    assert checks["sipgate_auth"]["status"] == "ok"
    _assert_no_secret(output, "hunter2-password")
    assert "***" in (checks["redis"]["message"] or "")


def test_redis_without_aof_warns(
    sandbox: Sandbox,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """AOF off is a warning with the setting to change; the exit stays 0."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.config_set("appendonly", "no")
    try:
        code, checks, _ = _run(_env(sandbox, redis_url, tmp_path), capsys)
    finally:
        client.config_set("appendonly", "yes")
        client.close()
    assert code == 0
    assert checks["redis_persistence"]["status"] == "warn"
    assert "appendonly yes" in (checks["redis_persistence"]["hint"] or "")


def test_missing_tokens_and_credentials(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No sipgate credentials fail (78); no API tokens or hot folder only warn/pass."""
    settings = Settings.from_env({"REDIS_URL": redis_url})
    code, checks, _ = _run(settings, capsys)
    assert code == doctor.EX_CONFIG
    assert checks["sipgate_auth"]["status"] == "fail"
    assert checks["api_tokens"]["status"] == "warn"
    assert checks["hotfolder"]["status"] == "ok"


def test_unwritable_hotfolder_fails(
    sandbox: Sandbox,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A hot folder that is a file, not a directory, fails with a hint."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, checks, _ = _run(_env(sandbox, redis_url, blocker), capsys)
    assert code == doctor.EX_CONFIG
    assert checks["hotfolder"]["status"] == "fail"


def test_exit_status_prefers_config() -> None:
    """A settings failure (78) outranks an unavailable service (69)."""
    ok = doctor.Check("a", "ok", "fine")
    down = doctor.Check("b", "fail", "down", "start it", "unavailable")
    wrong = doctor.Check("c", "fail", "wrong", "fix it", "config")
    assert doctor.exit_status([ok]) == 0
    assert doctor.exit_status([ok, down]) == 69
    assert doctor.exit_status([down, wrong]) == 78
