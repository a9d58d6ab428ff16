"""The sipgate client: pure builders/parsers, and every error mapping over real HTTP.

The HTTP tests talk to ``faxd.sandbox`` on loopback; nothing of the client is mocked.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from faxd.config import Secret, Settings
from faxd.errors import SipgateError, SipgateNotFound, SipgateRejected, SipgateTransient
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox
from faxd.sipgate import (
    FINAL_STATUSES,
    MAX_BASE64_CHARS,
    MAX_RESPONSE_BYTES,
    HistoryEntry,
    SipgateClient,
    build_fax_body,
    parse_history_entry,
    parse_retry_after,
)
from tests import pdfs

# A real outgoing fax entry as sipgate returns it (shape from sipgate's Node library and
# observed entries; ids and numbers made up).
SENT_ENTRY: dict[str, object] = {
    "id": "12345678901",
    "source": "+4921100000000",
    "target": "+4930123456789",
    "sourceAlias": "",
    "targetAlias": "",
    "type": "FAX",
    "created": "2024-03-05T09:14:02Z",
    "lastModified": "2024-03-05T09:15:40Z",
    "direction": "OUTGOING",
    "incoming": False,
    "status": "PICKUP",
    "connectionIds": ["f0"],
    "read": True,
    "archived": False,
    "note": "",
    "endpoints": [{"type": "ROUTED", "endpoint": {"extension": "f0", "type": "FAX"}}],
    "starred": False,
    "labels": [],
    "faxStatusType": "SENT",
    "documentUrl": "https://api.sipgate.com/v2/history/12345678901/document/fax.pdf",
    "reportUrl": "https://api.sipgate.com/v2/history/12345678901/report/report.pdf",
    "previewUrl": "https://api.sipgate.com/v2/history/12345678901/preview.png",
    "pageCount": 3,
}


# --- parse_history_entry -------------------------------------------------------------


def test_parse_sent_entry() -> None:
    """A complete SENT entry maps every field, timestamps as aware UTC."""
    entry = parse_history_entry(SENT_ENTRY)
    assert entry == HistoryEntry(
        id="12345678901",
        fax_status="SENT",
        target="+4930123456789",
        source="+4921100000000",
        direction="OUTGOING",
        created=datetime(2024, 3, 5, 9, 14, 2, tzinfo=UTC),
        last_modified=datetime(2024, 3, 5, 9, 15, 40, tzinfo=UTC),
        page_count=3,
        connection_ids=("f0",),
        document_url="https://api.sipgate.com/v2/history/12345678901/document/fax.pdf",
        report_url="https://api.sipgate.com/v2/history/12345678901/report/report.pdf",
        scheduled=None,
    )
    assert entry.is_final
    assert entry.is_sent


def test_parse_pending_entry_without_page_count_or_urls() -> None:
    """A fresh PENDING entry lacks pageCount and URLs: None, not an error."""
    data = {
        k: v
        for k, v in SENT_ENTRY.items()
        if k not in {"pageCount", "documentUrl", "reportUrl", "previewUrl"}
    }
    data["faxStatusType"] = "PENDING"
    entry = parse_history_entry(data)
    assert entry.page_count is None
    assert entry.document_url is None
    assert entry.report_url is None
    assert entry.fax_status == "PENDING"
    assert not entry.is_final
    assert not entry.is_sent


def test_parse_failed_entry_is_final_not_sent() -> None:
    """FAILED is final but not sent; the call status PICKUP does not matter."""
    entry = parse_history_entry({**SENT_ENTRY, "faxStatusType": "FAILED"})
    assert entry.is_final
    assert not entry.is_sent
    assert {"SENT", "FAILED"} == FINAL_STATUSES


def test_parse_unknown_and_missing_fax_status_are_not_final() -> None:
    """An unknown faxStatusType is kept as is and non-final; a missing one is ''."""
    unknown = parse_history_entry({**SENT_ENTRY, "faxStatusType": "QUEUED_ELSEWHERE"})
    assert unknown.fax_status == "QUEUED_ELSEWHERE"
    assert not unknown.is_final
    missing = parse_history_entry(
        {k: v for k, v in SENT_ENTRY.items() if k != "faxStatusType"}
    )
    assert missing.fax_status == ""
    assert not missing.is_final


def test_parse_scheduled_entry() -> None:
    """A SCHEDULED entry carries its scheduled time as sipgate's string."""
    entry = parse_history_entry(
        {
            **SENT_ENTRY,
            "faxStatusType": "SCHEDULED",
            "scheduled": "2024-03-06T08:00:00Z",
        }
    )
    assert entry.scheduled == "2024-03-06T08:00:00Z"
    assert not entry.is_final


@pytest.mark.parametrize("kind", ["CALL", "SMS", "VOICEMAIL", None, 7])
def test_parse_refuses_non_fax_entries(kind: object) -> None:
    """Entries of another or no type raise sipgate_unexpected."""
    data = {**SENT_ENTRY, "type": kind}
    if kind is None:
        del data["type"]
    with pytest.raises(SipgateError) as info:
        parse_history_entry(data)
    assert info.value.code == "sipgate_unexpected"


@pytest.mark.parametrize("bad_id", [None, "", True, ["1"]])
def test_parse_refuses_entry_without_id(bad_id: object) -> None:
    """A fax entry without a usable id is malformed: sipgate_unexpected."""
    with pytest.raises(SipgateError) as info:
        parse_history_entry({**SENT_ENTRY, "id": bad_id})
    assert info.value.code == "sipgate_unexpected"


def test_parse_tolerates_odd_field_types() -> None:
    """Wrong-typed optional fields become empty values instead of crashing."""
    entry = parse_history_entry(
        {
            **SENT_ENTRY,
            "id": 42,
            "pageCount": "x",
            "created": "yesterday",
            "lastModified": 5,
            "connectionIds": "f0",
            "target": None,
            "documentUrl": "",
        }
    )
    assert entry.id == "42"
    assert entry.page_count is None
    assert entry.created is None
    assert entry.last_modified is None
    assert entry.connection_ids == ()
    assert entry.target == ""
    assert entry.document_url is None


def test_parse_converts_offsets_to_utc() -> None:
    """A timestamp with an offset is converted to UTC; a naive one is taken as UTC."""
    entry = parse_history_entry(
        {
            **SENT_ENTRY,
            "created": "2024-03-05T10:14:02+01:00",
            "lastModified": "2024-03-05T09:15:40",
        }
    )
    assert entry.created == datetime(2024, 3, 5, 9, 14, 2, tzinfo=UTC)
    assert entry.created is not None and entry.created.utcoffset() == timedelta(0)
    assert entry.last_modified == datetime(2024, 3, 5, 9, 15, 40, tzinfo=UTC)


# --- build_fax_body ---------------------------------------------------------------


def test_build_fax_body_has_exactly_the_four_fields() -> None:
    """The body holds faxlineId, recipient, filename and base64Content, nothing else."""
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 100 + b"\n%%EOF\n"
    body = build_fax_body("f0", "+4930123456", "faxd-abc.pdf", pdf)
    assert set(body) == {"faxlineId", "recipient", "filename", "base64Content"}
    assert body["faxlineId"] == "f0"
    assert body["recipient"] == "+4930123456"
    assert body["filename"] == "faxd-abc.pdf"
    content = body["base64Content"]
    assert "\n" not in content and "\r" not in content
    assert "-" not in content and "_" not in content  # standard, not URL-safe alphabet
    assert len(content) % 4 == 0  # padded
    assert binascii.a2b_base64(content, strict_mode=True) == pdf


def test_build_fax_body_padding() -> None:
    """Lengths not divisible by three get '=' padding."""
    assert build_fax_body("f0", "+49", "a.pdf", b"ab")["base64Content"] == "YWI="
    assert build_fax_body("f0", "+49", "a.pdf", b"a")["base64Content"] == "YQ=="


def test_build_fax_body_size_cap() -> None:
    """The largest PDF within the 28,330,000-character cap passes; a byte more fails."""
    largest = MAX_BASE64_CHARS // 4 * 3  # 21,247,500 bytes -> exactly the cap
    body = build_fax_body("f0", "+49", "a.pdf", bytes(largest))
    assert len(body["base64Content"]) == MAX_BASE64_CHARS
    with pytest.raises(ValueError, match="28330000"):
        build_fax_body("f0", "+49", "a.pdf", bytes(largest + 1))


# --- parse_retry_after ------------------------------------------------------------

NOW = datetime(2024, 3, 5, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Tue, 05 Mar 2024 09:00:30 GMT", 30.0),
        ("Tue, 05 Mar 2024 08:59:00 GMT", 0.0),  # in the past: go now
        ("Tuesday, 05-Mar-24 09:01:00 GMT", 60.0),  # obsolete RFC 850 form
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e9", None),
        ("Tue, 99 Foo 2024 25:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After as delta-seconds or HTTP-date; garbage and negatives give None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_defaults_to_the_real_clock() -> None:
    """Without ``now`` an HTTP-date is measured against the current time."""
    future = datetime.now(UTC) + timedelta(hours=1)
    seconds = parse_retry_after(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None
    assert 3000 < seconds <= 3600


# --- against the sandbox over loopback HTTP -----------------------------------------

PDF = pdfs.text_pdf(pages=2, text="faxd sipgate client test")
RECIPIENT = "+4930123456789"
OTHER_RECIPIENT = "+4989123456789"
# Credentials for the auth and secrecy tests (names dodge the S105 heuristic).
BEARER_ONE = "oauth-access-1"
BEARER_TWO = "oauth-access-2"
WRONG_UUID = "00000000-0000-4000-8000-000000000000"
PRIVATE_ID = "token-PRIVAT"
PRIVATE_UUID = "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"


class RecordingSession(requests.Session):
    """A real requests session that also keeps every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.sent.append(request)
        return super().send(request, **kwargs)


@pytest.fixture(autouse=True)
def _no_proxies_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback tests must not be routed through a proxy the host happens to set."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with any constructor arguments; all are stopped afterwards."""
    started: list[Sandbox] = []

    def make(**kwargs: Any) -> Sandbox:
        box = Sandbox(**kwargs)
        box.start()
        started.append(box)
        return box

    yield make
    for box in started:
        box.stop()


def settings_for(
    box: Sandbox,
    *,
    token_id: str = DEMO_TOKEN_ID,
    token: str = DEMO_TOKEN,
    faxline_id: str = DEMO_FAXLINE_ID,
    timeout_s: float = 10.0,
    base_url: str | None = None,
) -> Settings:
    return Settings(
        sipgate_base_url=base_url or box.base_url,
        sipgate_token_id=token_id,
        sipgate_token=Secret(token),
        sipgate_faxline_id=faxline_id,
        http_timeout_s=timeout_s,
    )


@pytest.fixture
def client(sandbox_settings: Settings) -> Iterator[SipgateClient]:
    """A client of the shared ``sandbox`` fixture (conftest), closed afterwards."""
    with SipgateClient(sandbox_settings) as c:
        yield c


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- happy paths --


def test_send_then_poll_until_sent(sandbox: Sandbox, client: SipgateClient) -> None:
    """A POST returns a digit-string sessionId whose history entry ends SENT."""
    sandbox.set_time_scale(0)  # only advance() moves the fax on
    session_id = client.send_fax(RECIPIENT, PDF, "faxd-job1.pdf")
    assert isinstance(session_id, str) and session_id.isdigit()
    entry = client.get_history_entry(session_id)
    assert entry.id == session_id
    assert entry.fax_status == "PENDING"
    assert not entry.is_final
    assert entry.target == RECIPIENT
    assert entry.direction == "OUTGOING"
    assert entry.connection_ids == (DEMO_FAXLINE_ID,)
    assert entry.created is not None and entry.created.tzinfo is not None
    sandbox.advance(3600)
    done = client.get_history_entry(session_id)
    assert done.fax_status == "SENT"
    assert done.is_final and done.is_sent
    assert done.page_count == 2
    [fax] = sandbox.faxes()
    assert fax["filename"] == "faxd-job1.pdf"


def test_failed_outcome(sandbox: Sandbox, client: SipgateClient) -> None:
    """A transmission the far end refuses ends FAILED: final, not sent."""
    sandbox.inject(path="/sessions/fax", outcome="FAILED", times=1)
    session_id = client.send_fax(RECIPIENT, PDF, "faxd-job2.pdf")
    sandbox.advance(3600)
    entry = client.get_history_entry(session_id)
    assert entry.fax_status == "FAILED"
    assert entry.is_final and not entry.is_sent


def test_unknown_fax_status_is_not_final(
    sandbox: Sandbox, client: SipgateClient
) -> None:
    """An unknown faxStatusType from the server passes through as non-final."""
    sandbox.set_time_scale(0)  # only advance() moves the fax on
    sandbox.inject(path="/sessions/fax", fax_status="MYSTERY", times=1)
    session_id = client.send_fax(RECIPIENT, PDF, "faxd-job3.pdf")
    entry = client.get_history_entry(session_id)
    assert entry.fax_status == "MYSTERY"
    assert not entry.is_final


def test_bearer_auth(make_sandbox: Callable[..., Sandbox]) -> None:
    """SIPGATE_TOKEN alone is sent as an OAuth Bearer token."""
    box = make_sandbox(bearer_tokens=(BEARER_ONE,))
    settings = settings_for(box, token_id="", token=BEARER_ONE)
    assert settings.uses_bearer
    session = RecordingSession()
    with session, SipgateClient(settings, session=session) as c:
        assert c.send_fax(RECIPIENT, PDF, "faxd-bearer.pdf").isdigit()
    assert session.sent[0].headers["Authorization"] == f"Bearer {BEARER_ONE}"
    wrong = settings_for(box, token_id="", token=BEARER_TWO)
    with SipgateClient(wrong) as c, pytest.raises(SipgateRejected) as info:
        c.send_fax(RECIPIENT, PDF, "faxd-bearer.pdf")
    assert info.value.code == "sipgate_auth"
    assert "OAuth" in info.value.message


def test_client_sends_json_with_accept_header(sandbox: Sandbox) -> None:
    """Every call asks for JSON, and bodies go as application/json (never 415)."""
    session = RecordingSession()
    with session, SipgateClient(settings_for(sandbox), session=session) as c:
        session_id = c.send_fax(RECIPIENT, PDF, "faxd-json.pdf")
        sandbox.advance(3600)
        c.resend(session_id)
        c.get_history_entry(session_id)
    posts = [r for r in session.sent if r.method == "POST"]
    assert len(posts) == 2
    basic = base64.b64encode(f"{DEMO_TOKEN_ID}:{DEMO_TOKEN}".encode()).decode()
    for request in session.sent:
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Authorization"] == f"Basic {basic}"
    for request in posts:
        assert request.headers["Content-Type"] == "application/json"
        assert isinstance(request.body, bytes)
        json.loads(request.body)
    assert set(json.loads(posts[0].body)) == {  # type: ignore[arg-type]
        "faxlineId",
        "recipient",
        "filename",
        "base64Content",
    }


def test_passed_session_is_not_modified(sandbox: Sandbox) -> None:
    """A session handed in keeps its own headers and auth; credentials go per call."""
    with requests.Session() as session:
        headers_before = dict(session.headers)
        with SipgateClient(settings_for(sandbox), session=session) as c:
            assert c.userinfo()["sub"]
        assert dict(session.headers) == headers_before
        assert session.auth is None
        with SipgateClient(settings_for(sandbox), session=session) as again:
            assert "amount" in again.balance()  # the client did not close it


def test_account_calls(client: SipgateClient) -> None:
    """userinfo, faxlines and balance return sipgate's documented shapes."""
    user = client.userinfo()
    assert isinstance(user.get("sub"), str)
    lines = client.faxlines()
    assert any(line.get("id") == DEMO_FAXLINE_ID for line in lines)
    assert "amount" in client.balance()


# -- find_faxes --


def _send_many(client: SipgateClient, count: int) -> dict[str, str]:
    """Send ``count`` faxes alternating two recipients; return id -> recipient."""
    sent: dict[str, str] = {}
    for i in range(count):
        to = RECIPIENT if i % 3 else OTHER_RECIPIENT
        sent[client.send_fax(to, PDF, f"faxd-many-{i}.pdf")] = to
    return sent


def test_find_faxes_pages_through_everything(sandbox: Sandbox) -> None:
    """12 faxes at 5 per page: three pages return all 12, each once, oldest first."""
    since = datetime.now(UTC) - timedelta(minutes=5)
    session = RecordingSession()
    with session, SipgateClient(settings_for(sandbox), session=session) as c:
        sent = _send_many(c, 12)
        before = len(session.sent)
        found = c.find_faxes(since=since, limit=5)
        pages = session.sent[before:]
    assert sorted(e.id for e in found) == sorted(sent)
    assert len(pages) == 3
    offsets = [parse_qs(urlsplit(p.url or "").query)["offset"] for p in pages]
    assert offsets == [["0"], ["5"], ["10"]]
    query = parse_qs(urlsplit(pages[0].url or "").query)
    assert query["types"] == ["FAX"]
    assert query["directions"] == ["OUTGOING"]
    assert query["connectionIds"] == [DEMO_FAXLINE_ID]
    assert query["limit"] == ["5"]
    created = [e.created for e in found]
    assert all(c is not None for c in created)
    assert created == sorted(created)  # type: ignore[type-var]


def test_find_faxes_default_page_size(sandbox: Sandbox, client: SipgateClient) -> None:
    """The default (1000 per page) gets more than sipgate's default 10 in one go."""
    sent = _send_many(client, 12)
    found = client.find_faxes(since=datetime.now(UTC) - timedelta(minutes=5))
    assert {e.id for e in found} == set(sent)


def test_find_faxes_filters_target_after_normalising(client: SipgateClient) -> None:
    """target matches however the number is written (spaces, dashes, 00 prefix)."""
    sent = _send_many(client, 12)
    since = datetime.now(UTC) - timedelta(minutes=5)
    expected = {i for i, to in sent.items() if to == RECIPIENT}
    for spelling in ("+49 30 123456789", "+49 (30) 1234-56789", "004930123456789"):
        found = client.find_faxes(since=since, target=spelling)
        assert {e.id for e in found} == expected
    assert client.find_faxes(since=since, target="+4940111111") == []


def test_find_faxes_time_window(sandbox: Sandbox, client: SipgateClient) -> None:
    """from/to bound the listing: faxes before ``since`` or after ``until`` are out."""
    first = client.send_fax(RECIPIENT, PDF, "faxd-early.pdf")
    sandbox.advance(3600)
    middle = datetime.now(UTC) + timedelta(seconds=3600)
    sandbox.advance(3600)
    second = client.send_fax(RECIPIENT, PDF, "faxd-late.pdf")
    long_ago = datetime.now(UTC) - timedelta(days=1)
    assert [e.id for e in client.find_faxes(since=long_ago, until=middle)] == [first]
    assert [e.id for e in client.find_faxes(since=middle)] == [second]


def test_find_faxes_until_keeps_the_partial_second(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    """``to`` is sent rounded up, so a fax 0.25 s before ``until`` is not cut off."""
    box = make_sandbox(time_scale=0)  # frozen clock: created is exactly known
    box.advance(math.ceil(box.now()) - box.now() + 0.25)
    created = box.now()
    with SipgateClient(settings_for(box)) as c:
        session_id = c.send_fax(RECIPIENT, PDF, "faxd-until.pdf")
        until = datetime.fromtimestamp(created + 0.25, UTC)
        since = until - timedelta(minutes=5)
        assert [e.id for e in c.find_faxes(since=since, until=until)] == [session_id]


def test_find_faxes_refuses_naive_datetimes(client: SipgateClient) -> None:
    """A naive datetime is ambiguous: ValueError before any request."""
    with pytest.raises(ValueError, match="aware"):
        client.find_faxes(since=datetime(2024, 1, 1))


# -- resend --


def test_resend_a_failed_fax(sandbox: Sandbox, client: SipgateClient) -> None:
    """resend creates a new attempt (no id returned) that the listing finds, SENT."""
    sandbox.inject(path="/sessions/fax", outcome="FAILED", times=1)
    since = datetime.now(UTC) - timedelta(minutes=5)
    session_id = client.send_fax(RECIPIENT, PDF, "faxd-resend.pdf")
    sandbox.advance(3600)
    assert client.get_history_entry(session_id).fax_status == "FAILED"
    client.resend(session_id)
    sandbox.advance(3600)
    entries = client.find_faxes(since=since, target=RECIPIENT)
    assert entries[0].id == session_id  # oldest first
    [new] = [e for e in entries if e.id != session_id]
    assert new.is_sent
    assert sandbox.faxes()[1]["resend_of"] == session_id
    assert sandbox.faxes()[1]["faxline_id"] == DEMO_FAXLINE_ID


def test_resend_unknown_fax(client: SipgateClient) -> None:
    """Resending an id sipgate does not know is a permanent refusal."""
    with pytest.raises(SipgateNotFound) as info:
        client.resend("999999999")
    assert "nothing was resent" in info.value.message


# -- permanent refusals --


def test_401_bad_credentials(sandbox: Sandbox) -> None:
    """A wrong token is sipgate_auth, naming the variables to check."""
    settings = settings_for(sandbox, token=WRONG_UUID)
    with SipgateClient(settings) as c, pytest.raises(SipgateRejected) as info:
        c.send_fax(RECIPIENT, PDF, "faxd-401.pdf")
    assert info.value.code == "sipgate_auth"
    assert info.value.status == 401
    assert "SIPGATE_TOKEN_ID and SIPGATE_TOKEN" in info.value.message
    assert sandbox.faxes() == []


def test_401_no_credentials(sandbox: Sandbox) -> None:
    """No credentials at all: no Authorization header, and sipgate says 401."""
    with (
        SipgateClient(settings_for(sandbox, token_id="", token="")) as c,
        pytest.raises(SipgateRejected) as info,
    ):
        c.get_history_entry("1")
    assert info.value.code == "sipgate_auth"


def test_402_no_credit(make_sandbox: Callable[..., Sandbox]) -> None:
    """An empty balance is sipgate_payment and nothing is queued."""
    box = make_sandbox(balance_cents=0)
    with SipgateClient(settings_for(box)) as c, pytest.raises(SipgateRejected) as info:
        c.send_fax(RECIPIENT, PDF, "faxd-402.pdf")
    assert info.value.code == "sipgate_payment"
    assert info.value.status == 402
    assert box.faxes() == []


def test_403_missing_scope(make_sandbox: Callable[..., Sandbox]) -> None:
    """A token without the fax or history scope gets sipgate_forbidden."""
    box = make_sandbox(scopes=("history:read",))
    with SipgateClient(settings_for(box)) as c:
        with pytest.raises(SipgateRejected) as info:
            c.send_fax(RECIPIENT, PDF, "faxd-403.pdf")
        assert info.value.code == "sipgate_forbidden"
        assert "sessions:fax:write" in info.value.message
    box = make_sandbox(scopes=("sessions:fax:write",))
    with SipgateClient(settings_for(box)) as c:
        with pytest.raises(SipgateRejected) as info:
            c.find_faxes(since=datetime.now(UTC))
        assert info.value.code == "sipgate_forbidden"
        assert info.value.status == 403


def test_403_unknown_fax_line(sandbox: Sandbox) -> None:
    """Sending from a line the account does not have is sipgate_forbidden."""
    with (
        SipgateClient(settings_for(sandbox, faxline_id="f99")) as c,
        pytest.raises(SipgateRejected) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-f99.pdf")
    assert info.value.code == "sipgate_forbidden"
    assert info.value.status == 403


def test_unset_fax_line_is_refused_before_sending(sandbox: Sandbox) -> None:
    """Without SIPGATE_FAXLINE_ID nothing is posted; the message says what to set."""
    with (
        SipgateClient(settings_for(sandbox, faxline_id="")) as c,
        pytest.raises(SipgateRejected) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-noline.pdf")
    assert info.value.code == "sipgate_forbidden"
    assert "SIPGATE_FAXLINE_ID" in info.value.message
    assert sandbox.faxes() == []


def test_404_unknown_history_entry(client: SipgateClient) -> None:
    """An unknown id is SipgateNotFound with code sipgate_not_found."""
    with pytest.raises(SipgateNotFound) as info:
        client.get_history_entry("123456789012345")
    assert info.value.code == "sipgate_not_found"
    assert info.value.status == 404


def test_404_wrong_base_url(sandbox: Sandbox) -> None:
    """A base URL without /v2 gives 404s that point at SIPGATE_BASE_URL."""
    wrong = sandbox.base_url.removesuffix("/v2") + "/v1"
    with (
        SipgateClient(settings_for(sandbox, base_url=wrong)) as c,
        pytest.raises(SipgateNotFound) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-404.pdf")
    assert "SIPGATE_BASE_URL" in info.value.message


def test_407_invalid_recipient(sandbox: Sandbox, client: SipgateClient) -> None:
    """sipgate's 407 means a bad number, not proxy auth: sipgate_number_rejected."""
    with pytest.raises(SipgateRejected) as info:
        client.send_fax("+49900123456", PDF, "faxd-407.pdf")
    assert info.value.code == "sipgate_number_rejected"
    assert info.value.status == 407
    assert sandbox.faxes() == []


def test_400_blank_filename(sandbox: Sandbox, client: SipgateClient) -> None:
    """A blank field is sipgate_bad_request (our bug), nothing queued."""
    with pytest.raises(SipgateRejected) as info:
        client.send_fax(RECIPIENT, PDF, "   ")
    assert info.value.code == "sipgate_bad_request"
    assert info.value.status == 400
    assert sandbox.faxes() == []


# -- transient failures --


def test_429_with_retry_after(sandbox: Sandbox, client: SipgateClient) -> None:
    """429 is transient, nothing sent, Retry-After carried; the next call works."""
    sandbox.inject(path="/sessions/fax", status=429, retry_after=7, times=1)
    with pytest.raises(SipgateTransient) as info:
        client.send_fax(RECIPIENT, PDF, "faxd-429.pdf")
    assert info.value.status == 429
    assert info.value.retry_after_s == 7.0
    assert info.value.maybe_sent is False
    assert info.value.code == "sipgate_unavailable"
    assert sandbox.faxes() == []
    assert client.send_fax(RECIPIENT, PDF, "faxd-429.pdf").isdigit()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_transient_and_maybe_sent(
    sandbox: Sandbox, client: SipgateClient, status: int
) -> None:
    """5xx on a send is transient and the fax may exist."""
    sandbox.inject(path="/sessions/fax", status=status, times=1)
    with pytest.raises(SipgateTransient) as info:
        client.send_fax(RECIPIENT, PDF, "faxd-5xx.pdf")
    assert info.value.status == status
    assert info.value.maybe_sent is True
    assert "look it up" in info.value.message


def test_503_retry_after_and_html_body(sandbox: Sandbox, client: SipgateClient) -> None:
    """A 503 with Retry-After and an HTML body maps cleanly, hint kept."""
    sandbox.inject(
        path="/history/*",
        status=503,
        retry_after=3,
        body="<html><body>Service Unavailable</body></html>",
        times=1,
    )
    with pytest.raises(SipgateTransient) as info:
        client.get_history_entry("1")
    assert info.value.status == 503
    assert info.value.retry_after_s == 3.0


def test_connect_refused(sandbox: Sandbox) -> None:
    """A closed port is transient with maybe_sent False: re-posting is safe."""
    url = f"http://127.0.0.1:{closed_port()}/v2"
    with (
        SipgateClient(settings_for(sandbox, base_url=url)) as c,
        pytest.raises(SipgateTransient) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-refused.pdf")
    assert info.value.maybe_sent is False
    assert info.value.status is None
    assert "nothing was sent" in info.value.message
    assert isinstance(info.value.__cause__, requests.ConnectionError)


def test_unknown_host(sandbox: Sandbox) -> None:
    """A host name that does not resolve is a connect failure: nothing sent."""
    url = "http://faxd-no-such-host.invalid/v2"
    with (
        SipgateClient(settings_for(sandbox, base_url=url)) as c,
        pytest.raises(SipgateTransient) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-dns.pdf")
    assert info.value.maybe_sent is False


def test_read_timeout(sandbox: Sandbox) -> None:
    """An answer slower than the client's timeout is transient and maybe sent."""
    sandbox.inject(path="/sessions/fax", delay_s=5.0, times=1)
    with (
        SipgateClient(settings_for(sandbox, timeout_s=0.3)) as c,
        pytest.raises(SipgateTransient) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-slow.pdf")
    assert info.value.maybe_sent is True
    assert isinstance(info.value.__cause__, requests.Timeout)


@pytest.mark.parametrize("then", ["500", "timeout", "reset"])
def test_accepted_but_reply_lost(sandbox: Sandbox, then: str) -> None:
    """sipgate queued the fax but the answer was lost: maybe_sent, and findable."""
    sandbox.inject(path="/sessions/fax", accept_then=then, times=1)
    since = datetime.now(UTC) - timedelta(minutes=5)
    # Only the "timeout" case needs a short client timeout (the sandbox hangs 5 s).
    timeout_s = 0.5 if then == "timeout" else 10.0
    with (
        SipgateClient(settings_for(sandbox, timeout_s=timeout_s)) as c,
        pytest.raises(SipgateTransient) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-lost.pdf")
    assert info.value.maybe_sent is True
    [fax] = sandbox.faxes()
    with SipgateClient(settings_for(sandbox)) as c:
        [entry] = c.find_faxes(since=since, target=RECIPIENT)
    assert entry.id == fax["id"]


def test_dropped_connection(sandbox: Sandbox, client: SipgateClient) -> None:
    """A connection closed without an answer is transient and maybe sent."""
    sandbox.inject(path="/sessions/fax", drop=True, times=1)
    with pytest.raises(SipgateTransient) as info:
        client.send_fax(RECIPIENT, PDF, "faxd-drop.pdf")
    assert info.value.maybe_sent is True
    assert info.value.status is None


def test_history_errors_are_transient_too(
    sandbox: Sandbox, client: SipgateClient
) -> None:
    """A 502 while listing is transient; the listing then works again."""
    sandbox.inject(path="/history", status=502, times=1)
    since = datetime.now(UTC) - timedelta(minutes=5)
    with pytest.raises(SipgateTransient):
        client.find_faxes(since=since)
    assert client.find_faxes(since=since) == []


# -- secrets --


def _secret_free(exc: BaseException, secrets: list[str]) -> None:
    """Assert no secret appears in the exception, its chain, or its traceback text."""
    texts = ["".join(traceback.format_exception(exc))]
    link: BaseException | None = exc
    while link is not None:
        texts += [str(link), repr(link)]
        link = link.__cause__ or link.__context__
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_no_secret_in_any_error(make_sandbox: Callable[..., Sandbox]) -> None:
    """Tokens, the Basic header, the PDF and the number never reach an error's text."""
    token = PRIVATE_UUID
    box = make_sandbox(token_id=PRIVATE_ID, token=token)
    pdf = pdfs.text_pdf(pages=1, text="CONFIDENTIAL-DOCUMENT-MARKER")
    basic = base64.b64encode(f"{PRIVATE_ID}:{token}".encode()).decode()
    body = base64.b64encode(pdf).decode()
    secrets = [token, basic, body[:40], body[-40:], "CONFIDENTIAL-DOCUMENT-MARKER"]
    secrets += ["30123456789"]  # the recipient: numbers are logged masked only
    errors: list[SipgateError] = []

    def attempt(settings: Settings, inject: dict[str, Any] | None = None) -> None:
        box.clear_rules()
        if inject:
            box.inject(**inject)
        with SipgateClient(settings) as c:
            try:
                c.send_fax(RECIPIENT, pdf, "faxd-secret.pdf")
            except SipgateError as exc:
                errors.append(exc)
            else:
                pytest.fail("expected an error")

    good = settings_for(box, token_id=PRIVATE_ID, token=token)
    refused = f"http://127.0.0.1:{closed_port()}/v2"
    attempt(settings_for(box, token_id=PRIVATE_ID, token=token + "x"))
    attempt(good, {"path": "/sessions/fax", "status": 500, "times": 1})
    attempt(good, {"path": "/sessions/fax", "status": 429, "retry_after": 1})
    attempt(good, {"path": "/sessions/fax", "status": 407, "body": "<html>no</html>"})
    attempt(good, {"path": "/sessions/fax", "accept_then": "reset", "times": 1})
    attempt(good, {"path": "/sessions/fax", "drop": True, "times": 1})
    attempt(
        settings_for(box, token_id=PRIVATE_ID, token=token, timeout_s=0.3),
        {"path": "/sessions/fax", "delay_s": 5.0, "times": 1},
    )
    attempt(settings_for(box, token_id=PRIVATE_ID, token=token, base_url=refused))
    # A token a header cannot carry: requests' own error would quote the header.
    attempt(settings_for(box, token_id=PRIVATE_ID, token=token + "\n"))
    attempt(settings_for(box, token_id="", token=f" {token}"))
    assert len(errors) == 10
    for exc in errors:
        _secret_free(exc, [*secrets, token + "\n", f" {token}"])
    assert errors[-1].code == "sipgate_auth"
    client = SipgateClient(good)
    try:
        assert token not in repr(client)
        assert token not in repr(client.__dict__)
    finally:
        client.close()


# -- more statuses, via injection --


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (405, "sipgate_not_found"),
        (409, "sipgate_unexpected"),
        (413, "sipgate_unexpected"),
    ],
)
def test_other_permanent_statuses(
    sandbox: Sandbox, client: SipgateClient, status: int, code: str
) -> None:
    """405 is sipgate_not_found; any other unlisted 4xx is sipgate_unexpected."""
    sandbox.inject(path="/sessions/fax", status=status, times=1)
    with pytest.raises(SipgateRejected) as info:
        client.send_fax(RECIPIENT, PDF, "faxd-4xx.pdf")
    assert info.value.code == code
    assert info.value.status == status


def test_405_from_routing(sandbox: Sandbox) -> None:
    """A base URL that turns our POST into one on a GET-only route gives a real 405."""
    # The query string swallows our path: POST /v2/history?x=/sessions/fax.
    odd = sandbox.base_url + "/history?x="
    with (
        SipgateClient(settings_for(sandbox, base_url=odd)) as c,
        pytest.raises(SipgateRejected) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-405.pdf")
    assert info.value.status == 405
    assert info.value.code == "sipgate_not_found"
    assert not isinstance(info.value, SipgateNotFound)


def test_408_is_transient_and_not_sent(sandbox: Sandbox, client: SipgateClient) -> None:
    """408 means the request was not fully received: transient, nothing sent."""
    sandbox.inject(path="/sessions/fax", status=408, times=1)
    with pytest.raises(SipgateTransient) as info:
        client.send_fax(RECIPIENT, PDF, "faxd-408.pdf")
    assert info.value.maybe_sent is False
    assert sandbox.faxes() == []


def test_401_with_html_body(sandbox: Sandbox, client: SipgateClient) -> None:
    """A non-JSON error body does not matter: the status decides."""
    sandbox.inject(path="*", status=401, body="<html>Unauthorized</html>", times=1)
    with pytest.raises(SipgateRejected) as info:
        client.userinfo()
    assert info.value.code == "sipgate_auth"


# -- history lag, vanishing and scheduling --


def test_entry_visible_only_later(sandbox: Sandbox, client: SipgateClient) -> None:
    """A new id may 404 for a while (SipgateNotFound), then show up."""
    sandbox.inject(path="/sessions/fax", visible_after_s=30, times=1)
    session_id = client.send_fax(RECIPIENT, PDF, "faxd-lag.pdf")
    with pytest.raises(SipgateNotFound) as info:
        client.get_history_entry(session_id)
    assert "too new" in info.value.message
    sandbox.advance(60)
    assert client.get_history_entry(session_id).id == session_id


def test_scheduled_entry(sandbox: Sandbox, client: SipgateClient) -> None:
    """A SCHEDULED fax carries ``scheduled`` and is not final."""
    sandbox.inject(path="/sessions/fax", scheduled_s=600, times=1)
    session_id = client.send_fax(RECIPIENT, PDF, "faxd-scheduled.pdf")
    entry = client.get_history_entry(session_id)
    assert entry.fax_status == "SCHEDULED"
    assert entry.scheduled is not None
    assert not entry.is_final
    assert entry.document_url is not None and entry.report_url is not None


# -- answers the sandbox never gives: one canned reply on loopback --


Reply = tuple[int, dict[str, str], bytes]


class CannedServer:
    """A loopback HTTP server answering each request from ``answer(path_and_query)``."""

    def __init__(self, answer: Callable[[str], Reply]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests += 1
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.requests = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v2"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str], Reply]], CannedServer]]:
    """Start loopback servers with a given answer function; all stop afterwards."""
    servers: list[CannedServer] = []

    def make(answer: Callable[[str], Reply]) -> CannedServer:
        server = CannedServer(answer)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def canned(
    serve: Callable[[Callable[[str], Reply]], CannedServer],
) -> Callable[..., CannedServer]:
    """Start servers that give one fixed reply to every request."""

    def make(
        status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> CannedServer:
        return serve(lambda _path: (status, headers or {}, body))

    return make


def canned_settings(server: CannedServer) -> Settings:
    return Settings(
        sipgate_base_url=server.base_url,
        sipgate_token_id=DEMO_TOKEN_ID,
        sipgate_token=Secret(DEMO_TOKEN),
        sipgate_faxline_id=DEMO_FAXLINE_ID,
        http_timeout_s=10.0,
    )


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"id": "1"}', JSON),
        (b'{"sessionId": 12345}', JSON),
        (b'{"sessionId": ""}', JSON),
        (b'["12345"]', JSON),
        (b"<html>OK</html>", {"Content-Type": "text/html"}),
        (b"", {}),
        (b"[" * 100_000, JSON),
    ],
)
def test_send_200_without_session_id_may_have_sent(
    canned: Callable[..., CannedServer], body: bytes, headers: dict[str, str]
) -> None:
    """A 200 to a send without a string sessionId: transient, the fax may exist."""
    server = canned(200, body, headers)
    with (
        SipgateClient(canned_settings(server)) as c,
        pytest.raises(SipgateTransient) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-odd.pdf")
    assert info.value.maybe_sent is True
    assert info.value.status == 200


@pytest.mark.parametrize(
    "body",
    [
        b"<html>OK</html>",
        b'["not", "an", "entry"]',
        b'{"id": "1", "type": "CALL"}',
        b'{"type": "FAX"}',
    ],
)
def test_history_entry_200_malformed(
    canned: Callable[..., CannedServer], body: bytes
) -> None:
    """A 200 history answer that is no fax entry: sipgate_unexpected, not transient."""
    server = canned(200, body, JSON)
    with (
        SipgateClient(canned_settings(server)) as c,
        pytest.raises(SipgateError) as info,
    ):
        c.get_history_entry("1")
    assert info.value.code == "sipgate_unexpected"
    assert not isinstance(info.value, SipgateTransient)


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": "none", "totalCount": 0}',
        b'{"items": []}',
        b'{"items": [], "totalCount": "3"}',
        b'{"items": [1], "totalCount": 1}',
    ],
)
def test_listing_200_malformed(
    canned: Callable[..., CannedServer], body: bytes
) -> None:
    """A listing without items and an integer totalCount is sipgate_unexpected."""
    server = canned(200, body, JSON)
    with (
        SipgateClient(canned_settings(server)) as c,
        pytest.raises(SipgateError) as info,
    ):
        c.find_faxes(since=datetime.now(UTC))
    assert info.value.code == "sipgate_unexpected"


def test_listing_skips_other_types(canned: Callable[..., CannedServer]) -> None:
    """Entries of another type in a FAX listing are skipped, faxes kept."""
    fax = {**SENT_ENTRY, "id": "2"}
    call = {**SENT_ENTRY, "id": "3", "type": "CALL"}
    server = canned(200, json.dumps({"items": [fax, call], "totalCount": 2}).encode())
    with SipgateClient(canned_settings(server)) as c:
        assert [e.id for e in c.find_faxes(since=datetime(2024, 1, 1, tzinfo=UTC))] == [
            "2"
        ]


def test_redirect_is_not_followed(canned: Callable[..., CannedServer]) -> None:
    """A 3xx is refused (check the base URL) and its Location is never requested."""
    target = canned(200, b'{"sessionId": "1"}', JSON)
    server = canned(307, b"", {"Location": target.base_url + "/sessions/fax"})
    with (
        SipgateClient(canned_settings(server)) as c,
        pytest.raises(SipgateRejected) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-redirect.pdf")
    assert info.value.code == "sipgate_unexpected"
    assert "SIPGATE_BASE_URL" in info.value.message
    assert target.requests == 0


def test_407_from_a_proxy_is_not_a_bad_number(
    canned: Callable[..., CannedServer],
) -> None:
    """A 407 with Proxy-Authenticate is a proxy wanting credentials, not the caller."""
    server = canned(407, b"", {"Proxy-Authenticate": 'Basic realm="proxy"'})
    with (
        SipgateClient(canned_settings(server)) as c,
        pytest.raises(SipgateRejected) as info,
    ):
        c.send_fax(RECIPIENT, PDF, "faxd-proxy.pdf")
    assert info.value.code == "sipgate_auth"
    assert "proxy" in info.value.message


def test_oversized_answer_is_refused(canned: Callable[..., CannedServer]) -> None:
    """An answer beyond MAX_RESPONSE_BYTES is not read into memory: unexpected."""
    server = canned(200, b" " * (MAX_RESPONSE_BYTES + 1), JSON)
    with (
        SipgateClient(canned_settings(server)) as c,
        pytest.raises(SipgateError) as info,
    ):
        c.userinfo()
    assert info.value.code == "sipgate_unexpected"


def test_unusable_base_url_hides_its_password() -> None:
    """A URL requests refuses is sipgate_unexpected; its user:password never shows."""
    settings = Settings(
        sipgate_base_url="http://operator:hunter2-PASSWORD@127.0.0.1:99999/v2",
        sipgate_token_id=DEMO_TOKEN_ID,
        sipgate_token=Secret(DEMO_TOKEN),
        sipgate_faxline_id=DEMO_FAXLINE_ID,
    )
    with SipgateClient(settings) as c, pytest.raises(SipgateRejected) as info:
        c.send_fax(RECIPIENT, PDF, "faxd-badurl.pdf")
    assert info.value.code == "sipgate_unexpected"
    _secret_free(info.value, ["hunter2-PASSWORD", DEMO_TOKEN])
    assert "hunter2" not in repr(c)


def test_paging_follows_items_actually_returned(
    serve: Callable[[Callable[[str], Reply]], CannedServer],
) -> None:
    """Paging follows items returned, not limit; a page-shifted entry counts once."""
    entries = [{**SENT_ENTRY, "id": str(i)} for i in range(7, 0, -1)]  # newest first
    offsets: list[int] = []

    def answer(path: str) -> Reply:
        offset = int(parse_qs(urlsplit(path).query)["offset"][0])
        offsets.append(offset)
        if len(offsets) == 2:  # a new fax arrives between the first two pages
            entries.insert(0, {**SENT_ENTRY, "id": "8"})
        page = {"items": entries[offset : offset + 3], "totalCount": len(entries)}
        return 200, JSON, json.dumps(page).encode()

    server = serve(answer)
    with SipgateClient(canned_settings(server)) as c:
        found = c.find_faxes(since=datetime(2024, 1, 1, tzinfo=UTC), limit=1000)
    assert offsets == [0, 3, 6]
    assert sorted(e.id for e in found) == ["1", "2", "3", "4", "5", "6", "7"]
