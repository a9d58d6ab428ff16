"""Logging: format choice, masking and scrubbing through the real renderers, and a
whole run (worker subprocess, CLI calls, failures) whose output leaks no secret, no
phone number and no document, with ``job_id`` on every JSON line about a job.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from faxd import log as faxlog
from faxd.config import Secret, Settings
from faxd.delivery import Delivery
from faxd.demo import text_pdf
from faxd.intake import submit
from faxd.jobs import FaxJob, JobStore
from faxd.queue import make_broker
from faxd.sandbox import DEMO_FAXLINE_ID, Sandbox
from faxd.sipgate import SipgateClient

ROOT = Path(__file__).resolve().parents[1]

TOKEN_ID = "token-Q7Z9XK"
TOKEN = "5ec4e75e-0b5e-4c2e-9d1a-7f00d5ec4e75"
API_TOKEN = "apitok-Zq8Wv3Lx9Pn2Rt6"
CALLBACK_SECRET = "cbsecret-Hk4Jd7Fs1Ga0Mm"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- format ------------------------------------------------------------------


def test_json_under_systemd_or_pipes_console_in_a_terminal() -> None:
    """auto is JSON with JOURNAL_STREAM or without a tty, console in a terminal."""
    assert faxlog.wants_json("auto", _Tty(), {"JOURNAL_STREAM": "8:1234"})
    assert faxlog.wants_json("auto", io.StringIO(), {})
    assert not faxlog.wants_json("auto", _Tty(), {})
    assert faxlog.wants_json("json", _Tty(), {})
    assert not faxlog.wants_json("console", io.StringIO(), {"JOURNAL_STREAM": "1"})


def test_json_lines_carry_bound_job_id() -> None:
    """Rendered JSON lines are one object each and carry the bound job_id."""
    out = io.StringIO()
    faxlog.configure("json", "INFO", stream=out)
    with structlog.contextvars.bound_contextvars(job_id="j1"):
        structlog.get_logger("t").info("fax_posting", pages=2)
    [line] = _json_lines(out.getvalue())
    assert line["event"] == "fax_posting"
    assert line["job_id"] == "j1"
    assert line["pages"] == 2
    assert line["level"] == "info"


# -- masking and scrubbing -----------------------------------------------------


def test_numbers_are_masked_in_number_keys_and_in_any_text() -> None:
    """recipient/to/target/number values and +E.164 substrings keep only edges."""
    event = faxlog.mask_numbers(
        None,
        "info",
        {
            "event": "calling +4930123456 now",
            "recipient": "+4930123456",
            "to": "030 123456",
            "target": "+4930123456",
            "fax_number": "+4930123456",
            "others": ["see +4930999888", {"deep": "+4930999888"}],
            "count": 4930123456,
        },
    )
    assert event == {
        "event": "calling +49******56 now",
        "recipient": "+49******56",
        "to": "**********",
        "target": "+49******56",
        "fax_number": "+49******56",
        "others": ["see +49******88", {"deep": "+49******88"}],
        "count": 4930123456,
    }


def test_scrubber_removes_credentials_base64_and_configured_secrets() -> None:
    """Literal secrets (also base64-encoded), auth headers and base64 runs go."""
    scrub = faxlog.Scrubber([TOKEN, "short"])
    pdf_b64 = base64.b64encode(text_pdf("secret content")).decode()
    basic = base64.b64encode(f"{TOKEN_ID}:{TOKEN}".encode()).decode()
    event = scrub(
        None,
        "info",
        {
            "event": f"token {TOKEN} rejected",
            "header": "Authorization: Bearer abc.def-ghi",
            "raw": f"Basic {basic}",
            "body": f'{{"base64Content": "{pdf_b64}"}}',
            "encoded": base64.b64encode(TOKEN.encode()).decode(),
            "short": "short stays",
            "url": "redis://:hunter22@redis.example:6379/0",
        },
    )
    assert event["event"] == "token [redacted] rejected"
    assert event["header"] == "Authorization: Bearer [redacted]"
    assert event["raw"] == "Basic [redacted]"
    assert pdf_b64[:100] not in event["body"]
    assert "base64 chars redacted" in event["body"]
    assert event["encoded"] == "[redacted]"
    assert event["short"] == "short stays"
    assert event["url"] == "redis://:***@redis.example:6379/0"


def test_secrets_of_settings() -> None:
    """Every secret the settings hold is handed to the scrubber, nothing else."""
    settings = Settings(
        sipgate_token=Secret(TOKEN),
        api_tokens=(Secret(API_TOKEN), Secret("second-api-token")),
        callback_secret=Secret(CALLBACK_SECRET),
        redis_url="redis://user:redispass99@localhost:6379/0",
    )
    assert sorted(faxlog.secrets_of(settings)) == sorted(
        [TOKEN, API_TOKEN, "second-api-token", CALLBACK_SECRET, "redispass99"]
    )
    assert faxlog.secrets_of(Settings()) == []


def _raise_with_secret_local() -> None:
    token_local = "zz-local-value-zz"  # rich would print this local; plain does not
    raise RuntimeError(f"failed for +4930123456 with {TOKEN} {len(token_local)}")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_full_pipeline_scrubs_structlog_and_stdlib_lines(fmt: str) -> None:
    """Through the real renderer: events, stdlib records and tracebacks are clean."""
    out = io.StringIO()
    faxlog.configure(fmt, "DEBUG", secrets=[TOKEN, API_TOKEN], stream=out)
    log = structlog.get_logger("t")
    log.info("fax_posting", recipient="+4930123456", token=TOKEN, pdf=b"%PDF-1.4")
    log.info("api_call", headers={"Authorization": f"Bearer {API_TOKEN}"})
    try:
        _raise_with_secret_local()
    except RuntimeError:
        log.exception("step_crashed")
        logging.getLogger("dramatiq.worker").exception("Failed to process message")
    logging.getLogger("dramatiq").warning("retrying %s", f"Bearer {API_TOKEN}")
    text = out.getvalue()
    for leaked in (TOKEN, API_TOKEN, "+4930123456", "%PDF", "zz-local-value-zz"):
        assert leaked not in text
    assert text.count("RuntimeError: failed for +49******56 with [redacted]") == 2
    if fmt == "json":
        lines = _json_lines(text)
        assert [line["event"] for line in lines] == [
            "fax_posting",
            "api_call",
            "step_crashed",
            "Failed to process message",
            "retrying Bearer [redacted]",
        ]
        assert lines[0]["recipient"] == "+49******56"
        assert lines[3]["logger"] == "dramatiq.worker"
    else:
        assert "Traceback (most recent call last)" in text
        assert "token_local" in text  # the source line, not its value


def test_delivery_and_intake_lines_carry_job_id(
    redis_url: str, sandbox: Sandbox, sandbox_settings: Settings
) -> None:
    """Intake, submit and poll steps log job_id on every line, and masked numbers."""
    settings = Settings.from_env(
        {
            "REDIS_URL": redis_url,
            "SIPGATE_BASE_URL": sandbox.base_url,
            "SIPGATE_TOKEN_ID": sandbox_settings.sipgate_token_id,
            "SIPGATE_TOKEN": sandbox_settings.sipgate_token.reveal(),
            "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        }
    )
    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    out = io.StringIO()
    faxlog.configure("json", "DEBUG", secrets=faxlog.secrets_of(settings), stream=out)
    try:
        with SipgateClient(settings) as client:
            delivery = Delivery(settings, store, client)
            ok = submit(text_pdf("a"), "+4930123456", settings=settings,
                        store=store, broker=broker)  # fmt: skip
            bad = submit(b"not a pdf", "+4930123456", settings=settings,
                         store=store, broker=broker)  # fmt: skip
            step = delivery.submit(ok.id)
            assert step is not None
            sandbox.advance(60)
            assert delivery.poll(ok.id, step.args[1]) is None
    finally:
        broker.close()
        store.close()
    lines = _json_lines(out.getvalue())
    events = {line["event"] for line in lines}
    assert {"intake_accepted", "intake_rejected", "fax_posting", "fax_sent"} <= events
    about_jobs = [line for line in lines if not line.get("logger")]
    assert about_jobs
    assert all(line.get("job_id") in (ok.id, bad.id) for line in about_jobs)
    assert "+4930123456" not in out.getvalue()


# -- a whole run ------------------------------------------------------------------


JOB_EVENT_PREFIXES = ("fax_", "submit_", "poll_", "reconcile_", "callback_", "job_")


def _cli(env: dict[str, str], out_dir: Path, name: str, *args: str) -> str:
    """Run ``faxd ARGS`` to completion; keep stdout and stderr; return stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "faxd.cli", *args],
        env=env, cwd=ROOT, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    (out_dir / f"{name}.out").write_bytes(proc.stdout)
    (out_dir / f"{name}.err").write_bytes(proc.stderr)
    return proc.stdout.decode()


@pytest.fixture
def secret_sandbox() -> Iterator[Sandbox]:
    server = Sandbox(
        token_id=TOKEN_ID, token=TOKEN, pending_s=0.2, per_page_s=0.2, hang_s=0.5
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_whole_run_leaks_nothing(
    redis_url: str, secret_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Worker + CLI with 401s, 503s, lost answers, FAILED faxes: no secret leaks."""
    sandbox = secret_sandbox
    sandbox.inject(path="/sessions/fax", recipient="^\\+4930401", status=401)
    sandbox.inject(path="/sessions/fax", recipient="^\\+4930600", accept_then="reset")
    sandbox.inject(path="/history/*", recipient="^\\+4930700", status=503, times=3)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "SIPGATE_BASE_URL": sandbox.base_url,
        "SIPGATE_TOKEN_ID": TOKEN_ID,
        "SIPGATE_TOKEN": TOKEN,
        "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        "FAXD_API_TOKENS": API_TOKEN,
        "FAXD_CALLBACK_SECRET": CALLBACK_SECRET,
        "FAXD_POLL_INITIAL": "0.2",
        "FAXD_POLL_MAX": "0.5",
        "FAXD_PER_PAGE_ESTIMATE": "0.2",
        "FAXD_RETRY_MAX": "1",
        "FAXD_RESEND_DELAY": "0.2",
        "FAXD_REDELIVER_AFTER": "2",
        "FAXD_HTTP_TIMEOUT": "0.5",
        "FAXD_LOG_LEVEL": "DEBUG",
        "FAXD_LOG_FORMAT": "json",
    }
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    pdf_path = tmp_path / "letter.pdf"
    pdf = text_pdf("confidential letter body", pages=2)
    pdf_path.write_bytes(pdf)
    worker_out = (out_dir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "faxd.cli", "worker", "--threads", "4",
         "--shutdown-timeout", "3"],
        env=env, cwd=ROOT, stdout=worker_out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    worker_out.close()
    recipients = {
        "sent": "+4930555100",
        "auth": "+4930401100",  # 401: permanent, sipgate_auth
        "reset": "+4930600100",  # accepted, answer lost: adopted from history
        "flaky_poll": "+4930700100",  # 503 on the first polls
        "busy": "+4930555503",  # built-in: 503 on the first send
        "failed": "+4930555666",  # built-in: FAILED every time
    }
    settings = Settings.from_env(env)
    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    try:
        ids: list[str] = []
        for name, number in recipients.items():
            sent = _cli(env, out_dir, f"send-{name}", "send", "--json", "--to",
                        number, str(pdf_path))  # fmt: skip
            ids.append(json.loads(sent)["id"])
        # A callback whose receiver is not there: signed with the secret, retried.
        with_callback = submit(
            pdf, "+4930555200", settings=settings, store=store, broker=broker,
            callback_url="http://127.0.0.1:9/hook",
        )  # fmt: skip
        ids.append(with_callback.id)
        jobs = _wait_final(store, ids, timeout=60)
        states = {job.recipient: (str(job.state), job.error_code) for job in jobs}
        assert states[recipients["sent"]] == ("sent", "")
        assert states[recipients["auth"]] == ("failed", "sipgate_auth")
        assert states[recipients["reset"]][0] == "sent"
        assert states[recipients["flaky_poll"]][0] == "sent"
        assert states[recipients["busy"]][0] == "sent"
        assert states[recipients["failed"]] == ("failed", "fax_failed")
        _cli(env, out_dir, "status-json", "status", "--json", *ids)
        _cli(env, out_dir, "status-text", "status", *ids)
        _cli(env, out_dir, "list", "list")
    finally:
        broker.close()
        store.close()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    _assert_nothing_leaked(out_dir, pdf, recipients)


def _wait_final(store: JobStore, ids: list[str], timeout: float) -> list[FaxJob]:
    """Block on the job event stream until every job is final."""
    deadline = time.monotonic() + timeout
    last = "0"
    while True:
        jobs = [store.get(i) for i in ids]
        if all(j.is_final for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [str(j.state) for j in jobs]
        entries = store.follow(last, block_ms=500, count=1000)
        if entries:
            last = entries[-1][0]


def _assert_nothing_leaked(
    out_dir: Path, pdf: bytes, recipients: dict[str, str]
) -> None:
    secrets = [
        TOKEN,
        API_TOKEN,
        CALLBACK_SECRET,
        base64.b64encode(f"{TOKEN_ID}:{TOKEN}".encode()).decode(),
    ]
    pdf_b64 = base64.b64encode(pdf).decode()
    pdf_samples = [pdf_b64[i : i + 40] for i in range(0, len(pdf_b64) - 40, 400)]
    job_lines = 0
    for path in sorted(out_dir.iterdir()):
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"secret in {path.name}"
        assert "JVBERi0" not in text, f"base64 PDF in {path.name}"
        for sample in pdf_samples:
            assert sample not in text, f"base64 PDF in {path.name}"
        assert "confidential letter body" not in text
        # `faxd status/list` print the job's own recipient on stdout, by design;
        # logs (stderr, the worker's output) never carry a full number.
        if path.suffix != ".out":
            for number in [*recipients.values(), "+4930555200"]:
                assert number not in text, f"{number} in {path.name}"
                assert number[1:] not in text, f"{number} in {path.name}"
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            obj = json.loads(line)
            if str(obj.get("event", "")).startswith(JOB_EVENT_PREFIXES):
                assert obj.get("job_id"), f"no job_id in {path.name}: {line}"
                job_lines += 1
    assert job_lines > 20
