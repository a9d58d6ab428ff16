"""The intake API over real HTTP: uvicorn in a subprocess, real Redis, httpx clients.

The end-to-end test adds a real ``faxd worker`` subprocess, the sandbox and a local
callback receiver, and follows one upload to ``sent`` and a verified callback.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxd.callbacks import SIGNATURE_HEADER, verify
from faxd.config import Settings
from faxd.jobs import JobState, JobStore
from faxd.sandbox import DEMO_FAXLINE_ID, DEMO_TOKEN, DEMO_TOKEN_ID, Sandbox
from tests import pdfs
from tests.conftest import RedisServer, free_port
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "t0ken-alpha"  # a test token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"
SECRET = "callback-secret-for-tests"  # a test secret
MB = 1024 * 1024


class ApiServer:
    """``faxd.api.serve`` in a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._running = threading.Event()
        code = (
            "import sys; from faxd.api import serve; from faxd.config import Settings; "
            f"sys.exit(serve(Settings.from_env(), '127.0.0.1', {self.port}))"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._running.wait(30) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("the API did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # drained for the whole run: the pipe never fills
            self.lines.append(line)
            if "Uvicorn running on" in line:
                self._running.set()
        self._running.set()  # the process ended: wake the waiter

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def api(redis_server: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(
        {
            "REDIS_URL": redis_server.url,
            "FAXD_API_TOKENS": f"other-token, {TOKEN}",
            "FAXD_LOG_FORMAT": "json",
            "FAXD_LOG_LEVEL": "INFO",
        }
    )
    yield server
    server.stop()


@pytest.fixture
def client(api: ApiServer, redis_url: str) -> Iterator[httpx.Client]:
    """An authorised client of the module's API on a freshly flushed Redis."""
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    s = JobStore.from_settings(Settings.from_env({"REDIS_URL": redis_url}))
    yield s
    s.close()


def post_pdf(
    client: httpx.Client,
    pdf: bytes,
    to: str = "+4930123456",
    headers: dict[str, str] | None = None,
    **fields: str,
) -> httpx.Response:
    return client.post(
        "/v1/faxes",
        files={"file": ("doc.pdf", pdf, "application/pdf")},
        data={"to": to, **fields},
        headers=headers,
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:faxd:error:{code}"
    assert body["title"] and body["detail"]
    return body


def multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body framed by hand: (name, filename, content) parts."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


# -- auth ------------------------------------------------------------------------


def test_missing_or_wrong_token_is_401_with_challenge(api: ApiServer) -> None:
    """/v1 without a token or with an unknown one: 401 problem + WWW-Authenticate."""
    with httpx.Client(base_url=api.url) as anon:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "x"}):
            response = anon.get("/v1/faxes", headers=headers)
            code = "auth_invalid" if "nope" in str(headers) else "auth_required"
            assert_problem(response, 401, code)
            assert response.headers["www-authenticate"].startswith("Bearer")
        response = anon.post(
            "/v1/faxes", files={"file": ("a.pdf", b"%PDF-")}, data={"to": "1"}
        )
        assert_problem(response, 401, "auth_required")
        assert anon.get("/healthz").status_code == 200


def test_second_configured_token_works(client: httpx.Client) -> None:
    """Every token in FAXD_API_TOKENS is accepted."""
    response = client.get("/v1/faxes", headers={"Authorization": "Bearer other-token"})
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_no_tokens_configured_refuses_every_v1_route(redis_url: str) -> None:
    """Without FAXD_API_TOKENS: 503 auth_unconfigured naming the variable."""
    server = ApiServer({"REDIS_URL": redis_url, "FAXD_LOG_LEVEL": "INFO"})
    try:
        with httpx.Client(base_url=server.url, headers=AUTH) as c:
            body = assert_problem(c.get("/v1/faxes"), 503, "auth_unconfigured")
            assert "FAXD_API_TOKENS" in body["detail"]
            assert c.get("/healthz").status_code == 200
    finally:
        server.stop()


# -- accepting -------------------------------------------------------------------


def test_multipart_upload_is_accepted_and_readable(client: httpx.Client) -> None:
    """Multipart upload: 202 + Location; GET shows state and history; list has it."""
    response = post_pdf(client, pdfs.text_pdf(text="multipart"), filename="inv.pdf")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/faxes/{job['id']}"
    assert (job["state"], job["recipient"], job["pages"]) == (
        "accepted",
        "+4930123456",
        1,
    )
    assert (job["source"], job["filename"]) == ("api", "inv.pdf")
    got = client.get(response.headers["location"]).json()
    assert got["id"] == job["id"]
    assert [e["event"] for e in got["history"]] == ["created"]
    listed = client.get("/v1/faxes", params={"state": "accepted"}).json()
    assert [j["id"] for j in listed["items"]] == [job["id"]]


def test_json_base64_upload_is_accepted(client: httpx.Client) -> None:
    """JSON with base64 content: 202 with the job, options applied."""
    pdf = pdfs.text_pdf(text="json")
    response = client.post(
        "/v1/faxes",
        json={
            "content": base64.b64encode(pdf).decode(),
            "to": "030 1234567",
            "filename": "j.pdf",
            "callback_url": "https://example.org/hook",
        },
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["recipient"], job["filename"], job["callback_url"]) == (
        "+49301234567",
        "j.pdf",
        "https://example.org/hook",
    )


def test_list_pages_with_cursor(client: httpx.Client) -> None:
    """?limit= pages newest first; next_cursor leads to the rest, then to None."""
    ids = [
        post_pdf(client, pdfs.text_pdf(text=f"page {i}")).json()["id"] for i in range(3)
    ]
    first = client.get("/v1/faxes", params={"limit": 2}).json()
    assert [j["id"] for j in first["items"]] == ids[::-1][:2]
    rest = client.get(
        "/v1/faxes", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [j["id"] for j in rest["items"]] == ids[:1]
    assert rest["next_cursor"] is None


# -- refusing ----------------------------------------------------------------------


def test_corrupt_pdf_is_422_with_code_and_job(client: httpx.Client) -> None:
    """A damaged PDF: 422 pdf_corrupt naming the rejected job, which GET shows."""
    body = assert_problem(post_pdf(client, pdfs.truncated_pdf()), 422, "pdf_corrupt")
    job = client.get(f"/v1/faxes/{body['job_id']}").json()
    assert (job["state"], job["code"]) == ("rejected", "pdf_corrupt")


def test_bad_number_is_422_number_invalid(client: httpx.Client) -> None:
    """An impossible number: 422 number_invalid with the rejected job's id."""
    response = post_pdf(client, pdfs.text_pdf(), to="+999123456")
    body = assert_problem(response, 422, "number_invalid")
    assert body["job"]["state"] == "rejected"
    assert response.headers["location"] == f"/v1/faxes/{body['job_id']}"


def test_wrong_content_type_is_415(client: httpx.Client) -> None:
    """A raw PDF or text body: 415 unsupported_media_type."""
    for ctype in ("application/pdf", "text/plain", None):
        headers = {"Content-Type": ctype} if ctype else {}
        response = client.post("/v1/faxes", content=b"%PDF-1.4", headers=headers)
        assert_problem(response, 415, "unsupported_media_type")


def test_malformed_requests_are_400(client: httpx.Client) -> None:
    """Bad JSON, bad base64, missing fields, bad flags and parameters: 400 problems."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}},
         "request_malformed"),
        ({"json": ["a list"]}, "request_malformed"),
        ({"json": {"content": "!!!notbase64", "to": "+4930123456"}},
         "request_malformed"),
        ({"json": {"content": base64.b64encode(b"%PDF").decode()}},
         "request_malformed"),
        ({"json": {"to": "+4930123456"}}, "request_malformed"),
        ({"data": {"to": "+4930123456"}, "files": {"other": ("x", b"x")}},
         "request_malformed"),
        ({"files": {"file": ("a.pdf", b"%PDF")}}, "request_malformed"),
        ({"files": {"file": ("a.pdf", b"%PDF")},
          "data": {"to": "+4930123456", "flatten": "maybe"}}, "request_malformed"),
        ({"files": {"file": ("a.pdf", b"%PDF")},
          "data": {"to": "+4930123456", "callback_url": "ftp://x/y"}},
         "callback_url_invalid"),
    ]  # fmt: skip
    for kwargs, code in cases:
        assert_problem(client.post("/v1/faxes", **kwargs), 400, code)
    assert_problem(client.get("/v1/faxes", params={"limit": 0}), 400, "request_invalid")
    assert_problem(
        client.get("/v1/faxes", params={"state": "nope"}), 400, "request_invalid"
    )
    assert client.get("/v1/faxes").json()["items"] == []  # nothing was created


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {
        k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
    }
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_big_content_length_is_413_before_the_body_is_sent(api: ApiServer) -> None:
    """A declared 40 MB body is refused at once: no byte of it was sent."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/faxes HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {40 * MB}\r\n\r\n".encode()
        )
        status, headers, body = _read_response(sock)
    assert status == 413
    assert headers["content-type"] == PROBLEM
    assert json.loads(body)["code"] == "request_too_large"


def test_chunked_40mb_upload_is_413(client: httpx.Client) -> None:
    """A 40 MB multipart upload streamed chunked (no length): 413 while it streams."""

    def chunks() -> Iterator[bytes]:
        yield (
            b'--b\r\nContent-Disposition: form-data; name="to"\r\n\r\n+4930123456'
            b'\r\n--b\r\nContent-Disposition: form-data; name="file"; '
            b'filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\n'
        )
        block = b"0" * MB
        for _ in range(40):
            yield block
        yield b"\r\n--b--\r\n"

    response = client.post(
        "/v1/faxes",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "request_too_large")


def test_oversized_json_with_honest_length_is_413(client: httpx.Client) -> None:
    """A 40 MB JSON body with its Content-Length, sent in full: 413, not a reset."""
    big = b'{"to": "+4930123456", "content": "' + b"A" * (40 * MB) + b'"}'
    response = client.post(
        "/v1/faxes", content=big, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "request_too_large")


def test_unknown_job_and_route_are_404(client: httpx.Client) -> None:
    """Unknown job ids (GET, DELETE, retry) and unknown paths: 404 problems."""
    assert_problem(client.get("/v1/faxes/nope"), 404, "job_not_found")
    assert_problem(client.delete("/v1/faxes/nope"), 404, "job_not_found")
    assert_problem(client.post("/v1/faxes/nope/retry"), 404, "job_not_found")
    assert_problem(client.get("/v2/nothing"), 404, "route_not_found")
    assert_problem(client.put("/v1/faxes"), 405, "method_not_allowed")


def test_cancel_before_submit_then_retry(client: httpx.Client) -> None:
    """DELETE an accepted job: cancelled; retry it: a new accepted job (202)."""
    job = post_pdf(client, pdfs.text_pdf(text="cancel me")).json()
    cancelled = client.delete(f"/v1/faxes/{job['id']}")
    assert cancelled.status_code == 200
    assert (cancelled.json()["state"], cancelled.json()["code"]) == (
        "cancelled",
        "cancelled",
    )
    again = client.post(f"/v1/faxes/{job['id']}/retry")
    assert again.status_code == 202
    assert again.json()["retry_of"] == job["id"]
    assert again.headers["location"] == f"/v1/faxes/{again.json()['id']}"


def test_cancel_after_submit_is_409(client: httpx.Client, store: JobStore) -> None:
    """A job already handed to sipgate cannot be cancelled: 409; retry too: 409."""
    job = post_pdf(client, pdfs.text_pdf(text="too late")).json()
    store.transition(job["id"], JobState.SUBMITTING, event="submitting")
    assert_problem(client.delete(f"/v1/faxes/{job['id']}"), 409, "job_not_cancellable")
    assert_problem(
        client.post(f"/v1/faxes/{job['id']}/retry"), 409, "job_not_cancellable"
    )
    assert client.get(f"/v1/faxes/{job['id']}").json()["state"] == "submitting"


# -- idempotency --------------------------------------------------------------------


def test_idempotency_key_same_request_differently_framed(client: httpx.Client) -> None:
    """Same key and bytes, other multipart framing or JSON: the same job, 202."""
    pdf = pdfs.text_pdf(text="idempotent")
    key = {"Idempotency-Key": "order-42"}
    first = post_pdf(client, pdf, headers=key)
    assert first.status_code == 202
    framed = multipart(
        "xYz-other-boundary",
        [("filename", None, b"renamed.pdf"), ("to", None, b"+4930123456"),
         ("file", "other.pdf", pdf)],
    )  # fmt: skip
    second = client.post(
        "/v1/faxes",
        content=framed,
        headers={
            **key,
            "Content-Type": "multipart/form-data; boundary=xYz-other-boundary",
        },
    )
    third = client.post(
        "/v1/faxes",
        json={"content": base64.b64encode(pdf).decode(), "to": "+4930123456"},
        headers=key,
    )
    for repeat in (second, third):
        assert repeat.status_code == 202, repeat.text
        assert repeat.json()["id"] == first.json()["id"]
        assert repeat.headers["location"] == first.headers["location"]
    assert len(client.get("/v1/faxes").json()["items"]) == 1


def test_idempotency_key_different_request_is_409(client: httpx.Client) -> None:
    """The same key with other bytes or another recipient: 409 idempotency_conflict."""
    key = {"Idempotency-Key": "order-43"}
    assert post_pdf(client, pdfs.text_pdf(text="a"), headers=key).status_code == 202
    conflict = post_pdf(client, pdfs.text_pdf(text="b"), headers=key)
    assert_problem(conflict, 409, "idempotency_conflict")
    other_to = post_pdf(client, pdfs.text_pdf(text="a"), to="+4930999999", headers=key)
    assert_problem(other_to, 409, "idempotency_conflict")


# -- service routes ------------------------------------------------------------------


def test_openapi_lists_the_routes(api: ApiServer) -> None:
    """/openapi.json (no auth) documents every route and the bearer scheme."""
    with httpx.Client(base_url=api.url) as anon:
        doc = anon.get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths) >= {
        "/v1/faxes",
        "/v1/faxes/{job_id}",
        "/v1/faxes/{job_id}/retry",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert set(paths["/v1/faxes"]) == {"get", "post"}
    assert set(paths["/v1/faxes/{job_id}"]) == {"get", "delete"}
    body = paths["/v1/faxes"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_healthz_and_readyz_without_workers(client: httpx.Client) -> None:
    """/healthz is 200; /readyz is 503 while no worker has a heartbeat."""
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"ready": False, "redis": "ok", "workers": 0}


def test_metrics(client: httpx.Client) -> None:
    """/metrics: jobs by state, intake outcomes and queue depth, all faxd_ prefixed."""
    post_pdf(client, pdfs.text_pdf(text="metrics"))
    post_pdf(client, pdfs.truncated_pdf())
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert 'faxd_jobs{state="accepted"} 1.0' in lines
    assert 'faxd_jobs{state="rejected"} 1.0' in lines
    assert 'faxd_queue_depth{queue="faxd"} 1.0' in lines
    assert "faxd_redis_up 1.0" in lines
    outcomes = {
        line.split('"')[1]
        for line in lines
        if line.startswith("faxd_intake_requests_total{")
    }
    assert {"accepted", "rejected"} <= outcomes
    names = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    assert all(name.startswith("faxd_") for name in names)


# -- end to end ----------------------------------------------------------------------


@pytest.mark.slow
def test_upload_followed_to_sent_with_signed_callback(
    client: httpx.Client, store: JobStore, redis_url: str, tmp_path: Path
) -> None:
    """Worker + sandbox: the upload ends sent, /readyz turns 200, callback verifies."""
    sandbox = Sandbox(pending_s=0.2, per_page_s=0.2, seed=0)
    sandbox.start("127.0.0.1", 0)
    receiver = Receiver(503, 204)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "SIPGATE_BASE_URL": sandbox.base_url,
        "SIPGATE_TOKEN_ID": DEMO_TOKEN_ID,
        "SIPGATE_TOKEN": DEMO_TOKEN,
        "SIPGATE_FAXLINE_ID": DEMO_FAXLINE_ID,
        "FAXD_POLL_INITIAL": "0.2",
        "FAXD_POLL_MAX": "0.5",
        "FAXD_PER_PAGE_ESTIMATE": "0.2",
        "FAXD_CALLBACK_SECRET": SECRET,
        "FAXD_LOG_LEVEL": "WARNING",
    }
    with (tmp_path / "worker.log").open("wb") as worker_log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faxd.cli", "worker", "--threads", "2",
             "--shutdown-timeout", "5"],
            env=env, stdout=worker_log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
    try:
        response = post_pdf(
            client, pdfs.text_pdf(text="end to end"), callback_url=receiver.url
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        last = "0"
        while not store.get(job_id).is_final:  # blocks on the job event stream
            entries = store.follow(last, block_ms=1000)
            last = entries[-1][0] if entries else last
        job = client.get(f"/v1/faxes/{job_id}").json()
        assert (job["state"], job["provider_status"]) == ("sent", "SENT")
        assert [e["state"] for e in job["history"]][-1] == "sent"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert ready.json()["workers"] >= 1  # one per worker process
        assert receiver.delivered.wait(30), (tmp_path / "worker.log").read_text()
        (_h1, b1), (h2, b2) = receiver.got
        assert b1 == b2  # the retry sends the same event
        assert verify(b2, h2[SIGNATURE_HEADER], SECRET)
        assert not verify(b2, h2[SIGNATURE_HEADER], "another secret")
        event = json.loads(b2)
        assert (event["type"], event["id"]) == ("fax.sent", f"{job_id}.sent")
        assert event["job"]["id"] == job_id
        assert event["history"][-1]["state"] == "sent"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        receiver.close()
        sandbox.stop()
