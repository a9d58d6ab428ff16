"""The faxd command as a user runs it.

A real process, exit codes, clean --json stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pdfs

ROOT = Path(__file__).resolve().parents[1]


def faxd(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faxd.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "good.pdf": pdfs.text_pdf(pages=2),
        "form.pdf": pdfs.acroform_pdf(),
        "junk.pdf": b"<html>not a pdf</html>",
        "cut.pdf": pdfs.truncated_pdf(),
    }
    out = {}
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


def test_validate_number_alone() -> None:
    """With no FILE, validate checks the number and prints its E.164 form."""
    r = faxd("validate", "--json", "--to", "030 1234567")
    assert r.returncode == 0, r.stderr
    (obj,) = lines(r.stdout)
    assert obj["ok"] is True and obj["recipient"] == "+49301234567"
    assert "file" not in obj


def test_validate_bad_number_exits_65() -> None:
    """A rejected number: exit 65 and its code."""
    r = faxd("validate", "--json", "--to", "0800-FLOWERS")
    assert r.returncode == 65
    (obj,) = lines(r.stdout)
    assert obj["ok"] is False and obj["code"] == "number_has_letters"


def test_validate_many_files_json(files: dict[str, Path]) -> None:
    """One JSON line per file in order, with the documented fields; 65 if any bad."""
    names = [str(files[n]) for n in ("good.pdf", "form.pdf", "junk.pdf", "cut.pdf")]
    r = faxd("validate", "--json", "--to", "+4930123456", *names)
    assert r.returncode == 65
    got = lines(r.stdout)
    assert [o["file"] for o in got] == names
    assert [o["code"] for o in got] == [None, "pdf_has_form", "not_pdf", "pdf_corrupt"]
    good = got[0]
    assert good["ok"] is True and good["pages"] == 2 and good["flattened"] is False
    assert isinstance(good["sha256"], str) and len(good["sha256"]) == 64
    for obj in got:
        assert set(obj) >= {"file", "ok", "code", "message", "recipient", "pages"}


def test_validate_flatten_accepts_form(files: dict[str, Path]) -> None:
    """--flatten turns a form into a faxable, flattened document."""
    r = faxd(
        "validate", "--json", "--flatten", "--to", "+4930123456", str(files["form.pdf"])
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (obj,) = lines(r.stdout)
    assert obj["flattened"] is True


def test_validate_region_override() -> None:
    """--region none refuses national numbers; --region AT reads them as Austrian."""
    r = faxd("validate", "--json", "--region", "none", "--to", "030 1234567")
    assert r.returncode == 65
    assert lines(r.stdout)[0]["code"] == "number_region_required"
    r = faxd("validate", "--json", "--region", "at", "--to", "01 5123456")
    assert r.returncode == 0, r.stdout
    assert lines(r.stdout)[0]["recipient"] == "+4315123456"


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "--to"],
        ["validate", "--to", "+4930123456", "--bogus"],
        ["validate", "--to", "+4930123456", "--region", "XX"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_exit_64(args: list[str]) -> None:
    """Missing or unknown arguments and a bad region are usage errors (64)."""
    r = faxd(*args)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert r.stdout == ""


def test_human_output(files: dict[str, Path]) -> None:
    """Without --json, one readable line per file naming the verdict."""
    r = faxd(
        "validate",
        "--to",
        "+4930123456",
        str(files["good.pdf"]),
        str(files["junk.pdf"]),
    )
    assert r.returncode == 65
    out = r.stdout.splitlines()
    assert out[0].endswith("ok: +4930123456, 2 page(s)")
    assert "rejected [not_pdf]" in out[1]


def test_validation_never_touches_the_file(files: dict[str, Path]) -> None:
    """Rejected files stay byte for byte where they were."""
    before = {p: p.read_bytes() for p in files.values()}
    faxd("validate", "--to", "+4930123456", *map(str, files.values()))
    assert {p: p.read_bytes() for p in files.values()} == before


def test_send_status_list_cancel_retry(files: dict[str, Path], redis_url: str) -> None:
    """send queues (no worker running), status shows events, cancel, retry, list."""
    env = {"REDIS_URL": redis_url}
    r = faxd("send", "--json", "--to", "+4930123456", str(files["good.pdf"]),
             str(files["junk.pdf"]), env=env)  # fmt: skip
    assert r.returncode == 65, r.stderr
    sent, junk = lines(r.stdout)
    assert sent["state"] == "accepted" and junk["state"] == "rejected"
    assert junk["code"] == "not_pdf"
    r = faxd("status", "--json", str(sent["id"]), env=env)
    assert r.returncode == 0
    (status,) = lines(r.stdout)
    assert status["id"] == sent["id"] and status["state"] == "accepted"
    assert [e["event"] for e in status["events"]] == ["created"]  # type: ignore[index]
    r = faxd("cancel", "--json", str(sent["id"]), env=env)
    assert r.returncode == 0 and lines(r.stdout)[0]["state"] == "cancelled"
    r = faxd("cancel", str(sent["id"]), env=env)
    assert r.returncode == 65 and "job_not_cancellable" in r.stderr
    r = faxd("retry", "--json", str(sent["id"]), env=env)
    assert r.returncode == 0
    again = lines(r.stdout)[0]
    assert again["state"] == "accepted" and again["id"] != sent["id"]
    r = faxd("list", "--json", "--state", "cancelled", env=env)
    assert [o["id"] for o in lines(r.stdout)] == [sent["id"]]
    r = faxd("status", "--json", "nope", env=env)
    assert r.returncode == 65 and lines(r.stdout)[0]["code"] == "job_not_found"


def test_unreachable_redis_is_a_clear_error(files: dict[str, Path]) -> None:
    """send with Redis down: exit 69 and a message naming REDIS_URL, no traceback."""
    r = faxd("send", "--to", "+4930123456", str(files["good.pdf"]),
             env={"REDIS_URL": "redis://127.0.0.1:1/0"})  # fmt: skip
    assert r.returncode == 69
    assert "REDIS_URL" in r.stderr and "Traceback" not in r.stderr


def test_config_error_names_variable() -> None:
    """A bad setting: exit 78 and the variable's name."""
    r = faxd("validate", "--to", "+4930123456", env={"FAXD_MAX_PAGES": "many"})
    assert r.returncode == 78
    assert "FAXD_MAX_PAGES" in r.stderr
