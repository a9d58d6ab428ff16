"""The sandbox over real loopback HTTP with plain requests (never faxd's own client)."""

from __future__ import annotations

import base64
import http.client
import io
import math
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import phonenumbers
import pikepdf
import pytest
import requests
from pypdf import PdfReader, PdfWriter

from faxd.config import Settings
from faxd.sandbox import (
    BUILTIN_PATTERNS,
    DEMO_FAXLINE_ID,
    DEMO_TOKEN,
    DEMO_TOKEN_ID,
    MAX_BASE64_CHARS,
    RuleError,
    Sandbox,
    normalise_recipient,
)

ROOT = Path(__file__).resolve().parent.parent
NUMBER = "+49301234567"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def pdf_bytes(pages: int = 1) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def form_pdf() -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    widget = pikepdf.Dictionary(
        FT=pikepdf.Name.Tx,
        T="name",
        Rect=[0, 0, 10, 10],
        Type=pikepdf.Name.Annot,
        Subtype=pikepdf.Name.Widget,
    )
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=[pdf.make_indirect(widget)])
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def encrypted_pdf() -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    out = io.BytesIO()
    pdf.save(out, encryption=pikepdf.Encryption(owner="o", user="u"))
    return out.getvalue()


def fax_body(
    recipient: str = NUMBER, document: bytes | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "faxlineId": DEMO_FAXLINE_ID,
        "recipient": recipient,
        "filename": "faxd-job1.pdf",
        "base64Content": base64.b64encode(document or pdf_bytes()).decode(),
    }
    body.update(extra)
    return body


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[requests.Session]:
    """A requests session with the demo PAT, closed after the test."""
    session = requests.Session()
    session.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
    session.headers["Accept"] = "application/json"
    yield session
    session.close()


@pytest.fixture
def control(sandbox: Sandbox) -> Iterator[requests.Session]:
    """A plain session for the /_sandbox/ controls (they need no credentials)."""
    session = requests.Session()
    yield session
    session.close()


@pytest.fixture
def frozen(sandbox: Sandbox) -> Sandbox:
    """The sandbox with its clock stopped: only advance() moves it."""
    sandbox.set_time_scale(0)
    return sandbox


def send(api: requests.Session, sb: Sandbox, recipient: str = NUMBER, **kw: Any) -> str:
    response = api.post(f"{sb.base_url}/sessions/fax", json=fax_body(recipient, **kw))
    assert response.status_code == 200, response.text
    return str(response.json()["sessionId"])


def entry(api: requests.Session, sb: Sandbox, fax_id: str) -> dict[str, Any]:
    response = api.get(f"{sb.base_url}/history/{fax_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def status(api: requests.Session, sb: Sandbox, fax_id: str) -> str:
    return str(entry(api, sb, fax_id)["faxStatusType"])


# --------------------------------------------------------------------------- sending


def test_send_answers_exactly_200_with_digit_session_id(
    api: requests.Session, frozen: Sandbox
) -> None:
    """A good send is exactly 200 {"sessionId": digits} and a PENDING entry."""
    response = api.post(f"{frozen.base_url}/sessions/fax", json=fax_body())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()
    assert list(data) == ["sessionId"]
    assert data["sessionId"].isdigit()
    assert status(api, frozen, data["sessionId"]) == "PENDING"


def test_history_entry_has_the_section_3_shape(
    api: requests.Session, frozen: Sandbox
) -> None:
    """GET /history/{id} carries every section-3 field with sipgate's types."""
    fax_id = send(api, frozen, "030 1234-567", document=pdf_bytes(3))
    e = entry(api, frozen, fax_id)
    assert e["id"] == fax_id
    assert (e["type"], e["direction"], e["incoming"]) == ("FAX", "OUTGOING", False)
    assert e["target"] == NUMBER
    assert e["source"].startswith("+")
    assert isinstance(e["sourceAlias"], str) and e["targetAlias"] == ""
    assert STAMP.match(e["created"]) and STAMP.match(e["lastModified"])
    assert e["connectionIds"] == ["f0"]
    assert e["endpoints"] == [
        {"type": "ROUTED", "endpoint": {"extension": "f0", "type": "FAX"}}
    ]
    assert e["status"] == "PICKUP"
    assert (e["read"], e["archived"], e["starred"]) == (False, False, False)
    assert e["note"] == "" and e["labels"] == []
    assert e["pageCount"] == 3
    for key in ("documentUrl", "reportUrl", "previewUrl"):
        assert e[key].startswith(frozen.base_url + "/")
    assert "scheduled" not in e


def test_status_runs_pending_sending_sent_on_the_clock(
    api: requests.Session, frozen: Sandbox
) -> None:
    """PENDING pending_s, SENDING per_page_s x pages, then SENT; lastModified moves."""
    # lastModified has whole seconds: created at .5, SENT (0.8 s on) falls in the next
    frozen.advance(math.floor(frozen.now()) + 1.5 - frozen.now())
    fax_id = send(api, frozen, document=pdf_bytes(3))  # fixture: 0.2 s + 3 x 0.2 s
    first = entry(api, frozen, fax_id)
    frozen.advance(0.25)
    sending = entry(api, frozen, fax_id)
    frozen.advance(0.5)  # 0.75 s: still inside 0.2 + 0.6
    assert status(api, frozen, fax_id) == "SENDING"
    frozen.advance(5)
    done = entry(api, frozen, fax_id)
    assert [
        first["faxStatusType"],
        sending["faxStatusType"],
        done["faxStatusType"],
    ] == [
        "PENDING",
        "SENDING",
        "SENT",
    ]
    assert first["lastModified"] == first["created"]
    assert done["lastModified"] > first["lastModified"]
    assert done["created"] == first["created"]


def test_time_scale_speeds_the_clock(sandbox: Sandbox) -> None:
    """time_scale multiplies clock speed; advance() jumps; 0 freezes."""
    sandbox.set_time_scale(0)
    before = sandbox.now()
    sandbox.advance(10)
    assert sandbox.now() == before + 10
    with pytest.raises(ValueError):
        sandbox.advance(-1)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"just text, no PDF", "not_pdf"),
        (b"%PDF-1.4\n1 0 obj garbage", "pdf_corrupt"),
        (b"FORM", "pdf_has_form"),
        (b"ENCRYPTED", "pdf_encrypted"),
    ],
)
def test_bad_documents_are_accepted_then_failed(
    api: requests.Session, frozen: Sandbox, document: bytes, problem: str
) -> None:
    """Non-PDF, corrupt, form-bearing or encrypted content: 200, then FAILED."""
    document = {b"FORM": form_pdf(), b"ENCRYPTED": encrypted_pdf()}.get(
        document, document
    )
    fax_id = send(api, frozen, document=document)
    assert status(api, frozen, fax_id) == "PENDING"
    frozen.advance(60)
    assert status(api, frozen, fax_id) == "FAILED"
    assert frozen.faxes()[0]["problem"] == problem


def test_invalid_base64_can_be_queued_then_failed_like_sipgate_readmes() -> None:
    """invalid_base64="fail": broken base64 gets 200 and ends FAILED."""
    sb = Sandbox(time_scale=0, invalid_base64="fail")
    sb.start()
    try:
        with requests.Session() as s:
            s.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
            fax_id = send(s, sb, base64Content="not*base64")
            sb.advance(60)
            assert status(s, sb, fax_id) == "FAILED"
    finally:
        sb.stop()


def test_keep_alive_serves_several_requests_on_one_connection(sandbox: Sandbox) -> None:
    """HTTP/1.1 keep-alive with exact Content-Length: one socket, many answers."""
    auth = base64.b64encode(f"{DEMO_TOKEN_ID}:{DEMO_TOKEN}".encode()).decode()
    conn = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=10)
    try:
        for _ in range(3):
            conn.request(
                "GET", "/v2/history", headers={"Authorization": f"Basic {auth}"}
            )
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(body)
            assert response.headers.get("Connection") != "close"
        assert conn.sock is not None
    finally:
        conn.close()


def test_parallel_sends_get_distinct_ids(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """Concurrent POSTs are all recorded, each with its own id."""
    ids: list[str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        with requests.Session() as s:
            s.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
            fax_id = send(s, sandbox, f"+4930123450{n:02d}")
        with lock:
            ids.append(fax_id)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 12
    assert {f["id"] for f in sandbox.faxes()} == set(ids)


# --------------------------------------------------------------------------- auth


def test_bearer_token_is_accepted(control: requests.Session) -> None:
    """An OAuth Bearer token from bearer_tokens authenticates."""
    sb = Sandbox(bearer_tokens=["access-abc"])
    sb.start()
    try:
        ok = control.get(
            f"{sb.base_url}/history", headers={"Authorization": "Bearer access-abc"}
        )
        bad = control.get(
            f"{sb.base_url}/history", headers={"Authorization": "Bearer other"}
        )
        assert (ok.status_code, bad.status_code) == (200, 401)
    finally:
        sb.stop()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(f"{DEMO_TOKEN_ID}:wrong".encode()).decode(),
        "Basic " + base64.b64encode(f"token-OTHERS:{DEMO_TOKEN}".encode()).decode(),
        "Basic " + base64.b64encode(DEMO_TOKEN_ID.encode()).decode(),
        "Basic !!!not-base64",
        f"Bearer {DEMO_TOKEN}",
        "Digest x",
    ],
)
@pytest.mark.parametrize("path", ["/sessions/fax", "/history", "/balance"])
def test_bad_or_missing_credentials_are_401(
    sandbox: Sandbox, authorization: str | None, path: str
) -> None:
    """Wrong id, wrong token, malformed or missing credentials: 401, nothing sent."""
    headers = {"Authorization": authorization} if authorization else {}
    method = "POST" if path == "/sessions/fax" else "GET"
    with requests.Session() as s:
        response = s.request(
            method,
            sandbox.base_url + path,
            headers=headers,
            json=fax_body() if method == "POST" else None,
        )
    assert response.status_code == 401
    assert sandbox.faxes() == []


def test_missing_scope_is_403_per_credential() -> None:
    """A credential lacking the call's scope gets 403; scopes are set per credential."""
    sb = Sandbox(
        scopes=("history:read",),
        bearer_tokens=["sender"],
        credential_scopes={"sender": ["sessions:fax:write"]},
    )
    sb.start()
    try:
        with requests.Session() as pat:
            pat.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
            assert pat.get(f"{sb.base_url}/history").status_code == 200
            post = pat.post(f"{sb.base_url}/sessions/fax", json=fax_body())
            assert post.status_code == 403
            assert pat.get(f"{sb.base_url}/w0/faxlines").status_code == 403
            assert pat.get(f"{sb.base_url}/balance").status_code == 403
            assert pat.get(f"{sb.base_url}/authorization/userinfo").status_code == 200
        with requests.Session() as bearer:
            bearer.headers["Authorization"] = "Bearer sender"
            assert bearer.post(f"{sb.base_url}/sessions/fax", json=fax_body()).ok
            assert bearer.get(f"{sb.base_url}/history").status_code == 403
        assert len(sb.faxes()) == 1
    finally:
        sb.stop()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/pdf", pdf_bytes()),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nhello\r\n--x--\r\n"),
        ("text/plain", b"{}"),
        (None, b"{}"),
    ],
)
def test_non_json_content_type_is_415(
    api: requests.Session, sandbox: Sandbox, content_type: str | None, data: bytes
) -> None:
    """Raw PDF, multipart, text or no Content-Type: 415, nothing created."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post(f"{sandbox.base_url}/sessions/fax", data=data, headers=headers)
    assert response.status_code == 415
    assert sandbox.faxes() == []


def test_json_content_type_with_charset_is_accepted(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """application/json; charset=utf-8 is JSON too."""
    response = api.post(
        f"{sandbox.base_url}/sessions/fax",
        data=requests.compat.json.dumps(fax_body()),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def _without(key: str) -> dict[str, Any]:
    body = fax_body()
    del body[key]
    return body


BAD_BODIES: dict[str, object] = {
    "not json": b"{nope",
    "array": [fax_body()],
    "missing faxlineId": _without("faxlineId"),
    "missing recipient": _without("recipient"),
    "missing filename": _without("filename"),
    "missing base64Content": _without("base64Content"),
    "blank recipient": fax_body(recipient="   "),
    "blank filename": {**fax_body(), "filename": ""},
    "number recipient": {**fax_body(), "recipient": 49301234567},
    "null faxlineId": {**fax_body(), "faxlineId": None},
    "invalid base64": {**fax_body(), "base64Content": "JVBERi0x*=="},
    "bad padding": {**fax_body(), "base64Content": "JVBERi0"},
    "line breaks": {**fax_body(), "base64Content": "JVBE\nRi0x"},
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_malformed_send_bodies_are_400(
    api: requests.Session, sandbox: Sandbox, case: str
) -> None:
    """Bad JSON, missing, blank or non-string fields, broken base64: 400."""
    body = BAD_BODIES[case]
    if isinstance(body, bytes):
        response = api.post(
            f"{sandbox.base_url}/sessions/fax",
            data=body,
            headers={"Content-Type": "application/json"},
        )
    else:
        response = api.post(f"{sandbox.base_url}/sessions/fax", json=body)
    assert response.status_code == 400
    assert sandbox.faxes() == []


def test_oversized_base64_is_400_and_the_cap_itself_is_fine(
    api: requests.Session, frozen: Sandbox
) -> None:
    """More than 28,330,000 base64 characters: 400; exactly the cap: 200."""
    at_cap = "A" * MAX_BASE64_CHARS
    ok = api.post(
        f"{frozen.base_url}/sessions/fax", json=fax_body(base64Content=at_cap)
    )
    assert ok.status_code == 200
    over = api.post(
        f"{frozen.base_url}/sessions/fax", json=fax_body(base64Content=at_cap + "AAAA")
    )
    assert over.status_code == 400
    assert len(frozen.faxes()) == 1


@pytest.mark.parametrize("faxline", ["f7", "f1"])
def test_unknown_or_receive_only_line_is_403(
    api: requests.Session, sandbox: Sandbox, faxline: str
) -> None:
    """An unknown fax line or one with canSend false: 403."""
    response = api.post(
        f"{sandbox.base_url}/sessions/fax", json=fax_body(faxlineId=faxline)
    )
    assert response.status_code == 403
    assert sandbox.faxes() == []


@pytest.mark.parametrize(
    "recipient",
    [
        "123456",
        "+49123",
        "030",
        "1234567890",
        "+49 900 1234567",
        "0900 1234567",
        "0137 1234567",
        "0138 1234567",
        "01212 123456",
        "0185 1234567",
        "01807 123456",
        "0181 1234567",
        "0188 1234567",
        "030 123456a",
        "+49 30 1234567 ext 5",
        "+0301234567",
        "+1234567890123456",
    ],
)
def test_invalid_recipient_is_407(
    api: requests.Session, sandbox: Sandbox, recipient: str
) -> None:
    """Too short, malformed, premium or special-service numbers: 407."""
    response = api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body(recipient))
    assert response.status_code == 407
    assert sandbox.faxes() == []


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+49301234567", "+49301234567"),
        ("0049 30 1234567", "+49301234567"),
        ("(030) 123-4567", "+49301234567"),
        ("030/1234567", "+49301234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 212 555 0100", "+12125550100"),
    ],
)
def test_valid_recipients_are_sent_as_e164(raw: str, e164: str) -> None:
    """Accepted formats normalise to E.164 with +."""
    assert normalise_recipient(raw) == e164


def test_balance_used_up_is_402(api: requests.Session, sandbox: Sandbox) -> None:
    """Each page is billed; when the balance cannot pay a fax: 402, nothing created."""
    sandbox.set_balance(25)  # page cost 10 cents
    send(api, sandbox, document=pdf_bytes(2))
    response = api.post(
        f"{sandbox.base_url}/sessions/fax", json=fax_body(document=pdf_bytes(1))
    )
    assert response.status_code == 402
    assert len(sandbox.faxes()) == 1
    assert sandbox.balance_cents == 5


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/v2/sessions/fax", 405),
        ("PUT", "/v2/sessions/fax", 405),
        ("DELETE", "/v2/history", 405),
        ("POST", "/v2/history/123", 405),
        ("POST", "/v2/balance", 405),
        ("GET", "/v2/sessions/sms", 404),
        ("GET", "/v2/nothing/here/at/all", 404),
        ("POST", "/sessions/fax", 404),
        ("GET", "/", 404),
    ],
)
def test_wrong_method_is_405_unknown_path_404(
    api: requests.Session, sandbox: Sandbox, method: str, path: str, code: int
) -> None:
    """Known path with a wrong method: 405 with Allow; unknown path: 404."""
    base = sandbox.base_url.removesuffix("/v2")
    response = api.request(method, base + path, json={})
    assert response.status_code == code
    if code == 405:
        assert response.headers["Allow"]


# --------------------------------------------------------------------------- history


def test_unknown_and_deleted_entries_are_404(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """GET /history/{id}: unknown 404; DELETE answers 204, then 404 everywhere."""
    assert api.get(f"{sandbox.base_url}/history/999").status_code == 404
    fax_id = send(api, sandbox)
    assert api.delete(f"{sandbox.base_url}/history/{fax_id}").status_code == 204
    assert api.get(f"{sandbox.base_url}/history/{fax_id}").status_code == 404
    assert api.delete(f"{sandbox.base_url}/history/{fax_id}").status_code == 404
    assert api.get(f"{sandbox.base_url}/history").json()["totalCount"] == 0
    assert sandbox.faxes()[0]["deleted"] is True


def _ids(api: requests.Session, sb: Sandbox, **params: Any) -> list[str]:
    response = api.get(f"{sb.base_url}/history", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_history_list_filters(api: requests.Session, frozen: Sandbox) -> None:
    """types, directions, connectionIds, phonenumber, from/to, archived, starred."""
    old = send(api, frozen, "+49301111111")
    frozen.advance(3600)
    cut = frozen.now()
    mid = send(api, frozen, "+49302222222")
    frozen.advance(10)
    new = send(api, frozen, "+49303333333")
    assert _ids(api, frozen) == [new, mid, old]  # newest first
    assert _ids(api, frozen, types=["FAX", "SMS"]) == [new, mid, old]
    assert _ids(api, frozen, types="SMS") == []
    assert _ids(api, frozen, directions="OUTGOING") == [new, mid, old]
    assert _ids(api, frozen, directions=["INCOMING", "MISSED_INCOMING"]) == []
    assert _ids(api, frozen, connectionIds="f0") == [new, mid, old]
    assert _ids(api, frozen, connectionIds="f1") == []
    assert _ids(api, frozen, phonenumber="+49 30 2222222") == [mid]
    assert _ids(api, frozen, phonenumber="030 3333333") == [new]
    start = _iso_param(cut - 1)
    assert _ids(api, frozen, **{"from": start}) == [new, mid]
    assert _ids(api, frozen, to=start) == [old]
    assert (
        api.put(
            f"{frozen.base_url}/history/{mid}", json={"archived": True, "starred": True}
        ).status_code
        == 204
    )
    assert _ids(api, frozen) == [new, old]
    assert _ids(api, frozen, archived="true") == [mid]
    assert _ids(api, frozen, archived="true", starred="STARRED") == [mid]
    assert _ids(api, frozen, starred="STARRED") == []
    assert _ids(api, frozen, starred="UNSTARRED") == [new, old]


def _iso_param(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_history_paging_default_limit_and_total(
    api: requests.Session, frozen: Sandbox
) -> None:
    """limit defaults to 10, offset pages, totalCount counts all matches."""
    ids = []
    for n in range(12):
        ids.append(send(api, frozen, f"+4930555000{n:02d}"))
        frozen.advance(1)
    newest_first = list(reversed(ids))
    page = api.get(f"{frozen.base_url}/history").json()
    assert page["totalCount"] == 12
    assert [i["id"] for i in page["items"]] == newest_first[:10]
    assert _ids(api, frozen, offset=10) == newest_first[10:]
    assert _ids(api, frozen, offset=3, limit=2) == newest_first[3:5]
    assert _ids(api, frozen, limit=1000) == newest_first
    assert _ids(api, frozen, offset=50) == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "1001"},
        {"limit": "0"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "1.5"},
        {"types": "BOGUS"},
        {"types": "FAX,SMS"},
        {"directions": "SIDEWAYS"},
        {"from": "yesterday"},
        {"to": "2024-13-01T00:00:00Z"},
        {"archived": "maybe"},
        {"starred": "yes"},
    ],
)
def test_history_list_bad_filter_or_paging_is_400(
    api: requests.Session, sandbox: Sandbox, params: dict[str, str]
) -> None:
    """limit beyond 1000, bad numbers, enums or dates: 400."""
    assert api.get(f"{sandbox.base_url}/history", params=params).status_code == 400


def test_history_put_validates_flags(api: requests.Session, sandbox: Sandbox) -> None:
    """PUT /history/{id} takes booleans and a note; other types are 400."""
    fax_id = send(api, sandbox)
    url = f"{sandbox.base_url}/history/{fax_id}"
    assert api.put(url, json={"read": "yes"}).status_code == 400
    assert api.put(url, json={"read": True, "note": "hi"}).status_code == 204
    assert (
        entry(api, sandbox, fax_id)["read"],
        entry(api, sandbox, fax_id)["note"],
    ) == (
        True,
        "hi",
    )


# --------------------------------------------------------------------------- resend


def test_resend_creates_a_new_entry_and_transmission(
    api: requests.Session, frozen: Sandbox
) -> None:
    """Resend answers 200 with no body and creates a new entry for the same fax."""
    first = send(api, frozen, "+49301234777")  # built-in: first transmission FAILED
    frozen.advance(60)
    assert status(api, frozen, first) == "FAILED"
    response = api.post(f"{frozen.base_url}/sessions/fax/resend", json={"faxId": first})
    assert (response.status_code, response.content) == (200, b"")
    faxes = frozen.faxes()
    assert len(faxes) == 2
    again = faxes[1]
    assert again["id"] != first
    assert (again["resend_of"], again["transmission"]) == (first, 2)
    assert again["sha256"] == faxes[0]["sha256"]
    assert again["recipient"] == faxes[0]["recipient"]
    listed = _ids(api, frozen)
    assert listed == [str(again["id"]), first]
    frozen.advance(60)
    assert status(api, frozen, str(again["id"])) == "SENT"


def test_resend_errors(api: requests.Session, sandbox: Sandbox) -> None:
    """Resend: unknown faxId 404, missing faxId 400, bad line 403, no money 402."""
    url = f"{sandbox.base_url}/sessions/fax/resend"
    fax_id = send(api, sandbox)
    assert api.post(url, json={"faxId": "12"}).status_code == 404
    assert api.post(url, json={}).status_code == 400
    assert api.post(url, json={"faxId": 5}).status_code == 400
    assert (
        api.post(url, data="x", headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    assert api.post(url, json={"faxId": fax_id, "faxlineId": "f1"}).status_code == 403
    sandbox.set_balance(0)
    assert api.post(url, json={"faxId": fax_id}).status_code == 402
    assert len(sandbox.faxes()) == 1


def test_resend_with_explicit_line(api: requests.Session, sandbox: Sandbox) -> None:
    """faxlineId in a resend may name the (sendable) line explicitly."""
    fax_id = send(api, sandbox)
    url = f"{sandbox.base_url}/sessions/fax/resend"
    assert api.post(url, json={"faxId": fax_id, "faxlineId": "f0"}).status_code == 200


# --------------------------------------------------------------------------- account


def test_userinfo_faxlines_and_balance(api: requests.Session, sandbox: Sandbox) -> None:
    """userinfo names w0, its faxlines list f0 (canSend) and f1; balance drops."""
    info = api.get(f"{sandbox.base_url}/authorization/userinfo").json()
    assert info["sub"] == "w0" and {"domain", "masterSipId", "locale"} <= set(info)
    lines = api.get(f"{sandbox.base_url}/{info['sub']}/faxlines").json()["items"]
    assert [(line["id"], line["canSend"]) for line in lines] == [
        ("f0", True),
        ("f1", False),
    ]
    assert set(lines[0]) == {"id", "alias", "tagline", "canSend", "canReceive"}
    assert api.get(f"{sandbox.base_url}/w9/faxlines").status_code == 403
    before = api.get(f"{sandbox.base_url}/balance").json()
    send(api, sandbox, document=pdf_bytes(3))
    after = api.get(f"{sandbox.base_url}/balance").json()
    assert before["currency"] == "EUR"
    assert before["amount"] - after["amount"] == 3 * 10 * 100  # 1/10,000 EUR units


def test_files_are_served_without_credentials(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """documentUrl gives the posted PDF, reportUrl a PDF, previewUrl a PNG; no auth."""
    document = pdf_bytes(2)
    e = entry(api, sandbox, send(api, sandbox, document=document))
    with requests.Session() as anonymous:
        doc = anonymous.get(e["documentUrl"])
        report = anonymous.get(e["reportUrl"])
        preview = anonymous.get(e["previewUrl"])
        missing = anonymous.get(f"{sandbox.base_url}/_files/1/document.pdf")
    assert (doc.status_code, doc.content) == (200, document)
    assert doc.headers["Content-Type"] == "application/pdf"
    text = PdfReader(io.BytesIO(report.content)).pages[0].extract_text()
    assert e["id"] in text and NUMBER in text
    assert preview.content.startswith(b"\x89PNG")
    assert missing.status_code == 404


# --------------------------------------------------------------------------- injection


def test_injected_status_for_next_call_creates_nothing(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """{"status": 503, "times": 1}: one 503, no fax; the next call is normal."""
    sandbox.inject(method="POST", path="/sessions/fax", times=1, action={"status": 503})
    url = f"{sandbox.base_url}/sessions/fax"
    assert api.post(url, json=fax_body()).status_code == 503
    assert sandbox.faxes() == []
    assert api.post(url, json=fax_body()).status_code == 200
    assert len(sandbox.faxes()) == 1


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_injected_server_errors(
    api: requests.Session, sandbox: Sandbox, code: int
) -> None:
    """Any 5xx can be injected; the body is JSON unless told otherwise."""
    sandbox.inject(path="/history/*", status=code)
    response = api.get(f"{sandbox.base_url}/history/1")
    assert response.status_code == code
    assert response.json()["status"] == code


def test_injected_429_carries_retry_after(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """429 with retry_after sends a Retry-After header."""
    sandbox.inject(path="/sessions/fax", status=429, retry_after=2, times=1)
    response = api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body())
    assert (response.status_code, response.headers["Retry-After"]) == (429, "2")


def test_injected_non_json_error_body(api: requests.Session, sandbox: Sandbox) -> None:
    """body makes a non-JSON error answer, as proxies give."""
    sandbox.inject(
        status=502, body="<html>Bad Gateway</html>", content_type="text/html"
    )
    response = api.get(f"{sandbox.base_url}/history")
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    with pytest.raises(ValueError):
        response.json()


def test_injection_by_recipient_regex(api: requests.Session, sandbox: Sandbox) -> None:
    """A recipient regex limits a rule to matching numbers."""
    sandbox.inject(path="/sessions/fax", recipient=r"^\+4940", status=500)
    url = f"{sandbox.base_url}/sessions/fax"
    assert api.post(url, json=fax_body("040 1234567")).status_code == 500
    assert api.post(url, json=fax_body("030 1234567")).status_code == 200


def test_injection_rate_is_seeded(sandbox: Sandbox) -> None:
    """rate fires with that probability from the seeded generator: repeatable."""

    def pattern(seed: int) -> list[int]:
        sb = Sandbox(seed=seed)
        sb.start()
        try:
            sb.inject(path="/authorization/userinfo", rate=0.5, status=503)
            with requests.Session() as s:
                s.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
                url = f"{sb.base_url}/authorization/userinfo"
                return [s.get(url).status_code for _ in range(30)]
        finally:
            sb.stop()

    first = pattern(7)
    assert first == pattern(7)
    assert 0 < first.count(503) < 30
    assert set(first) == {200, 503}


def test_injected_delay_then_normal(api: requests.Session, sandbox: Sandbox) -> None:
    """delay_s makes a client with a shorter timeout time out; the call still runs."""
    sandbox.inject(path="/sessions/fax", delay_s=3, times=1)
    with pytest.raises(requests.ReadTimeout):
        api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body(), timeout=0.3)
    assert api.get(f"{sandbox.base_url}/history").status_code == 200


def test_injected_drop_closes_without_answer(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """drop: the connection closes with no answer and nothing is created."""
    sandbox.inject(path="/sessions/fax", drop=True, times=1)
    with pytest.raises(requests.ConnectionError):
        api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body())
    assert sandbox.faxes() == []
    assert api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body()).ok


def test_accept_then_500_creates_the_fax(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """accept_then 500: the fax exists although the client saw 500."""
    sandbox.inject(path="/sessions/fax", accept_then="500", times=1)
    response = api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body())
    assert response.status_code == 500
    faxes = sandbox.faxes()
    assert len(faxes) == 1
    listed = api.get(f"{sandbox.base_url}/history").json()["items"]
    assert [i["id"] for i in listed] == [faxes[0]["id"]]


def test_accept_then_timeout_creates_the_fax(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """accept_then timeout: the client times out, the fax exists."""
    sandbox.inject(path="/sessions/fax", accept_then="timeout")
    with pytest.raises(requests.ReadTimeout):
        api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body(), timeout=0.5)
    assert len(sandbox.faxes()) == 1


def test_accept_then_timeout_closes_after_hang_s() -> None:
    """After hang_s the connection closes without an answer."""
    sb = Sandbox(hang_s=0.2)
    sb.start()
    try:
        sb.inject(path="/sessions/fax", accept_then="timeout")
        with requests.Session() as s, pytest.raises(requests.ConnectionError):
            s.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
            s.post(f"{sb.base_url}/sessions/fax", json=fax_body(), timeout=30)
        assert len(sb.faxes()) == 1
    finally:
        sb.stop()


def test_accept_then_reset_creates_the_fax(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """accept_then reset: the connection is reset after the fax was created."""
    sandbox.inject(path="/sessions/fax", accept_then="reset")
    with pytest.raises(requests.ConnectionError):
        api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body(), timeout=10)
    assert len(sandbox.faxes()) == 1


def test_outcome_failed(api: requests.Session, frozen: Sandbox) -> None:
    """{"outcome": "FAILED"} makes the fax end FAILED after SENDING."""
    frozen.inject(action={"outcome": "FAILED"})
    fax_id = send(api, frozen)
    frozen.advance(0.3)
    assert status(api, frozen, fax_id) == "SENDING"
    frozen.advance(60)
    assert status(api, frozen, fax_id) == "FAILED"


def test_fail_transmissions_then_sent_on_repost(
    api: requests.Session, frozen: Sandbox
) -> None:
    """fail_transmissions N: the first N faxes per recipient FAIL, the next SENT."""
    frozen.inject(recipient="4567$", fail_transmissions=2)
    ids = [send(api, frozen) for _ in range(3)]
    other = send(api, frozen, "+49301111111")
    frozen.advance(60)
    assert [status(api, frozen, i) for i in ids] == ["FAILED", "FAILED", "SENT"]
    assert status(api, frozen, other) == "SENT"
    assert [f["transmission"] for f in frozen.faxes()] == [1, 2, 3, 1]


def test_visible_after_and_vanish_after(api: requests.Session, frozen: Sandbox) -> None:
    """visible_after_s: 404 until then; vanish_after_s: 404 from then on."""
    frozen.inject(times=1, visible_after_s=5)
    late = send(api, frozen)
    frozen.inject(times=1, vanish_after_s=10)
    gone = send(api, frozen, "+49301111111")
    assert api.get(f"{frozen.base_url}/history/{late}").status_code == 404
    assert _ids(api, frozen) == [gone]
    frozen.advance(5)
    assert _ids(api, frozen) == [gone, late]
    frozen.advance(5)
    assert api.get(f"{frozen.base_url}/history/{gone}").status_code == 404
    assert _ids(api, frozen) == [late]


def test_unknown_fax_status_for_a_while(api: requests.Session, frozen: Sandbox) -> None:
    """fax_status replaces PENDING/SENDING with an unknown value until final."""
    frozen.inject(fax_status="WEIRD_STATUS")
    fax_id = send(api, frozen)
    assert status(api, frozen, fax_id) == "WEIRD_STATUS"
    frozen.advance(60)
    assert status(api, frozen, fax_id) == "SENT"


def test_scheduled_becomes_pending_when_due(
    api: requests.Session, frozen: Sandbox
) -> None:
    """scheduled_s: SCHEDULED with `scheduled` set, then PENDING, then on."""
    frozen.inject(scheduled_s=100)
    e = entry(api, frozen, send(api, frozen))
    assert e["faxStatusType"] == "SCHEDULED"
    assert STAMP.match(e["scheduled"]) and e["scheduled"] > e["created"]
    frozen.advance(100)
    assert status(api, frozen, e["id"]) == "PENDING"
    frozen.advance(60)
    assert status(api, frozen, e["id"]) == "SENT"


@pytest.mark.parametrize(
    "rule",
    [
        {"status": 200},
        {"status": 503, "outcome": "FAILED"},
        {"drop": True, "status": 500},
        {"accept_then": "maybe"},
        {"outcome": "DONE"},
        {"recipient": "(", "status": 500},
        {"times": 0, "status": 500},
        {"rate": 2, "status": 500},
        {"frobnicate": True},
        {},
        {"action": {"status": 500}, "extra": 1},
    ],
)
def test_malformed_rules_are_refused(
    sandbox: Sandbox, rule: dict[str, Any], control: requests.Session
) -> None:
    """inject() and POST /_sandbox/inject refuse malformed rules (RuleError / 400)."""
    with pytest.raises(RuleError):
        sandbox.inject(**rule)
    response = control.post(f"{sandbox.control_url}/inject", json=rule)
    assert response.status_code == 400


# --------------------------------------------------------------------------- built-ins


def test_builtin_pattern_numbers_are_valid_german_numbers() -> None:
    """Every documented example number is valid per phonenumbers and our check."""
    for digits in BUILTIN_PATTERNS:
        number = f"+49301234{digits}"
        assert phonenumbers.is_valid_number(phonenumbers.parse(number))
        assert normalise_recipient(number) == number


def test_builtin_666_fails_and_777_fails_once(
    api: requests.Session, frozen: Sandbox
) -> None:
    """...666 always ends FAILED; ...777 fails the first transmission only."""
    ids = [
        send(api, frozen, n) for n in ("+49301234666", "+49301234777", "+49301234777")
    ]
    frozen.advance(60)
    assert [status(api, frozen, i) for i in ids] == ["FAILED", "FAILED", "SENT"]


@pytest.mark.parametrize(("digits", "code"), [("503", 503), ("429", 429), ("500", 500)])
def test_builtin_first_attempt_errors(
    api: requests.Session, sandbox: Sandbox, digits: str, code: int
) -> None:
    """...503/...429 refuse the first send; ...500 creates it and answers 500."""
    url = f"{sandbox.base_url}/sessions/fax"
    first = api.post(url, json=fax_body(f"+49301234{digits}"))
    assert first.status_code == code
    if code == 429:
        assert first.headers["Retry-After"] == "1"
    created = len(sandbox.faxes())
    assert created == (1 if digits == "500" else 0)
    assert api.post(url, json=fax_body(f"+49301234{digits}")).status_code == 200
    assert len(sandbox.faxes()) == created + 1


def test_builtin_408_hangs_after_creating(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """...408: the first send creates the fax and never answers in time."""
    with pytest.raises(requests.ReadTimeout):
        api.post(
            f"{sandbox.base_url}/sessions/fax",
            json=fax_body("+49301234408"),
            timeout=0.5,
        )
    assert len(sandbox.faxes()) == 1


def test_builtin_404_and_410_visibility(api: requests.Session, frozen: Sandbox) -> None:
    """...404 appears 3 s late; ...410 vanishes after 30 s."""
    late = send(api, frozen, "+49301234404")
    gone = send(api, frozen, "+49301234410")
    assert _ids(api, frozen) == [gone]
    frozen.advance(3)
    assert set(_ids(api, frozen)) == {gone, late}
    frozen.advance(30)
    assert _ids(api, frozen) == [late]


def test_builtin_patterns_can_be_switched_off() -> None:
    """builtin_patterns=False: ...503 is an ordinary number."""
    sb = Sandbox(builtin_patterns=False)
    sb.start()
    try:
        with requests.Session() as s:
            s.auth = (DEMO_TOKEN_ID, DEMO_TOKEN)
            send(s, sb, "+49301234503")
    finally:
        sb.stop()


# --------------------------------------------------------------------------- controls


def test_control_faxes_records_every_accepted_post(
    api: requests.Session, sandbox: Sandbox, control: requests.Session
) -> None:
    """GET /_sandbox/faxes lists filename, recipient, pages, sha256 of each fax."""
    import hashlib

    document = pdf_bytes(2)
    fax_id = send(api, sandbox, "0301234567", document=document)
    items = control.get(f"{sandbox.control_url}/faxes").json()["items"]
    assert len(items) == 1
    item = items[0]
    assert item["id"] == fax_id
    assert item["filename"] == "faxd-job1.pdf"
    assert item["recipient"] == NUMBER
    assert item["pages"] == 2
    assert item["sha256"] == hashlib.sha256(document).hexdigest()
    assert item["transmission"] == 1 and item["resend_of"] is None
    assert item["status"] in ("PENDING", "SENDING", "SENT")
    assert STAMP.match(item["created"])


def test_control_inject_list_delete_and_reset(
    api: requests.Session, sandbox: Sandbox, control: requests.Session
) -> None:
    """Rules are added, listed, removed one by one or all; reset forgets everything."""
    ctl = sandbox.control_url
    first = control.post(
        f"{ctl}/inject", json={"path": "/balance", "status": 500}
    ).json()
    control.post(f"{ctl}/inject", json={"path": "/history", "action": {"status": 502}})
    rules = control.get(f"{ctl}/inject").json()["items"]
    assert [r["id"] for r in rules] == [first["id"], "r2"]
    assert api.get(f"{sandbox.base_url}/balance").status_code == 500
    assert control.get(f"{ctl}/inject").json()["items"][0]["fired"] == 1
    assert control.delete(f"{ctl}/inject/{first['id']}").status_code == 200
    assert control.delete(f"{ctl}/inject/{first['id']}").status_code == 404
    assert api.get(f"{sandbox.base_url}/balance").status_code == 200
    assert api.get(f"{sandbox.base_url}/history").status_code == 502
    assert control.delete(f"{ctl}/inject").status_code == 200
    assert api.get(f"{sandbox.base_url}/history").status_code == 200
    send(api, sandbox)
    sandbox.set_balance(0)
    assert control.post(f"{ctl}/reset").status_code == 200
    assert sandbox.faxes() == [] and sandbox.stats() == {}
    assert sandbox.balance_cents == 100_000


def test_control_clock_and_status(
    api: requests.Session, sandbox: Sandbox, control: requests.Session
) -> None:
    """POST /_sandbox/clock freezes and advances; faxes/{id}/status forces a status."""
    ctl = sandbox.control_url
    frozen = control.post(f"{ctl}/clock", json={"time_scale": 0}).json()
    assert frozen["time_scale"] == 0
    fax_id = send(api, sandbox)
    assert status(api, sandbox, fax_id) == "PENDING"
    control.post(f"{ctl}/clock", json={"advance_s": 0.3})
    assert status(api, sandbox, fax_id) == "SENDING"
    assert control.post(f"{ctl}/clock", json={"advance_s": -1}).status_code == 400
    forced = control.post(f"{ctl}/faxes/{fax_id}/status", json={"status": "FAILED"})
    assert forced.status_code == 200
    assert status(api, sandbox, fax_id) == "FAILED"
    assert (
        control.post(f"{ctl}/faxes/1/status", json={"status": "SENT"}).status_code
        == 404
    )
    assert control.post(f"{ctl}/balance", json={"balance_cents": 0}).status_code == 200
    assert (
        api.post(f"{sandbox.base_url}/sessions/fax", json=fax_body()).status_code == 402
    )
    assert control.get(f"{ctl}/nothing").status_code == 404


def test_control_stats_count_requests_per_route(
    api: requests.Session, sandbox: Sandbox, control: requests.Session
) -> None:
    """GET /_sandbox/stats counts calls per route template, controls excluded."""
    fax_id = send(api, sandbox)
    for _ in range(3):
        api.get(f"{sandbox.base_url}/history/{fax_id}")
    api.get(f"{sandbox.base_url}/nowhere")
    control.get(f"{sandbox.control_url}/faxes")
    stats = control.get(f"{sandbox.control_url}/stats").json()
    assert stats == {
        "POST /sessions/fax": 1,
        "GET /history/{id}": 3,
        "GET <unknown>": 1,
    }
    assert sandbox.stats() == stats


# --------------------------------------------------------------------------- CLI


def test_from_settings_uses_configured_credentials() -> None:
    """from_settings accepts SIPGATE_TOKEN_ID/TOKEN/FAXLINE_ID when set."""
    token = "11111111-2222-4333-8444-555555555555"
    settings = Settings.from_env(
        {"SIPGATE_TOKEN_ID": "token-ABC123", "SIPGATE_TOKEN": token,
         "SIPGATE_FAXLINE_ID": "f5"}
    )  # fmt: skip
    sb = Sandbox.from_settings(settings)
    assert (sb.token_id, sb.faxline_id, sb.uses_demo_credentials) == (
        "token-ABC123",
        "f5",
        False,
    )
    assert Sandbox.from_settings(Settings.from_env({})).uses_demo_credentials


def test_sandbox_settings_fixture_points_at_the_sandbox(
    sandbox: Sandbox, sandbox_settings: Settings
) -> None:
    """The conftest fixture's settings carry the sandbox URL and demo credentials."""
    assert sandbox_settings.sipgate_base_url == sandbox.base_url
    assert sandbox_settings.sipgate_token.reveal() == DEMO_TOKEN
    assert sandbox_settings.sipgate_faxline_id == DEMO_FAXLINE_ID


def test_main_serves_until_sigterm() -> None:
    """`faxd sandbox` prints URL, credentials and an export line; SIGTERM ends it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPGATE_")}
    code = "from faxd.sandbox import main; raise SystemExit(main(['--port', '0']))"
    with subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("export "):
                break
        output = "".join(lines)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/v2)", output)
        assert match, output
        assert DEMO_TOKEN_ID in output and DEMO_TOKEN in output
        assert f"SIPGATE_FAXLINE_ID={DEMO_FAXLINE_ID}" in output
        response = requests.get(
            f"{match.group(1)}/authorization/userinfo",
            auth=(DEMO_TOKEN_ID, DEMO_TOKEN),
            timeout=30,
        )
        assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
        assert "stopped" in rest


def test_chunked_request_bodies_are_read(
    api: requests.Session, sandbox: Sandbox
) -> None:
    """A chunked JSON body (no Content-Length) is read like any other."""
    import json

    data = json.dumps(fax_body()).encode()
    chunks = iter([data[:100], data[100:]])
    response = api.post(
        f"{sandbox.base_url}/sessions/fax",
        data=chunks,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert len(sandbox.faxes()) == 1


def test_huge_bodies_are_413_unread(sandbox: Sandbox) -> None:
    """A body announced larger than 64 MiB gets 413 and a closed connection."""
    conn = http.client.HTTPConnection(sandbox.host, sandbox.port, timeout=10)
    try:
        conn.putrequest("POST", "/v2/sessions/fax")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(100 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        assert response.status == 413
        assert response.headers["Connection"] == "close"
    finally:
        conn.close()
    assert sandbox.faxes() == []
