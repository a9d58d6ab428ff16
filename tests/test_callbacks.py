"""faxd.callbacks: the signature format, verification, backoff and one delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Iterator

import pytest
import requests

from faxd import callbacks
from faxd.callbacks import SIGNATURE_HEADER, build_event, deliver, sign, verify
from faxd.config import Settings
from faxd.jobs import FaxJob, JobState, JobStore
from tests.conftest import free_port
from tests.receiver import Receiver

SECRET = "s3cret"  # a test secret


def test_sign_matches_the_documented_format() -> None:
    """t=<ts>,v1=hex(HMAC-SHA256(secret, "<ts>." + body)), written out by hand."""
    body = b'{"id":"x"}'
    expected = hmac.new(b"s3cret", b'1700000000.{"id":"x"}', hashlib.sha256)
    assert sign(body, SECRET, 1700000000) == f"t=1700000000,v1={expected.hexdigest()}"


def test_verify_accepts_fresh_and_refuses_tampered_stale_or_foreign() -> None:
    """verify: the right body, secret and a fresh time only; any v1 may match."""
    body = b'{"a":1}'
    header = sign(body, SECRET, 1000)
    assert verify(body, header, SECRET, now=1000)
    assert verify(body, header, SECRET, now=1299)
    assert not verify(body, header, SECRET, now=1301)
    assert not verify(body, header, SECRET, now=699)
    assert not verify(b'{"a":2}', header, SECRET, now=1000)
    assert not verify(body, header, "other", now=1000)
    rotated = f"{sign(body, 'old', 1000)},v1={header.split('v1=')[1]}"
    assert verify(body, rotated, SECRET, now=1000)
    for broken in ("", "t=1000", "v1=abc", "t=x,v1=abc", "garbage"):
        assert not verify(body, broken, SECRET, now=1000)


def test_backoff_grows_is_capped_and_jittered() -> None:
    """Delays: 1, 3, 9 ... s, at most an hour, plus at most a quarter of jitter."""
    rng = random.Random(1)
    delays = [callbacks.next_delay_s(a, rng) for a in range(callbacks.MAX_ATTEMPTS)]
    bases = [min(3600.0, 3.0**a) for a in range(callbacks.MAX_ATTEMPTS)]
    for delay, base in zip(delays, bases, strict=True):
        assert base <= delay <= base * 1.25
    assert callbacks.next_delay_s(50, rng) <= 3600 * 1.25


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    s = JobStore.from_settings(Settings.from_env({"REDIS_URL": redis_url}))
    yield s
    s.close()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def make_job(store: JobStore, url: str, state: JobState = JobState.CANCELLED) -> str:
    now = time.time()
    job = FaxJob(
        id=f"job-{state}",
        state=state,
        recipient="+4930123456",
        source="test",
        created_at=now,
        updated_at=now,
        callback_url=url,
        error_code="cancelled" if state == JobState.CANCELLED else "",
    )
    store.create(job, None)
    return job.id


def test_deliver_posts_a_signed_event(
    store: JobStore, session: requests.Session
) -> None:
    """A 2xx receiver gets one JSON event whose signature verifies: True."""
    receiver = Receiver(200)
    try:
        job_id = make_job(store, receiver.url)
        assert deliver(job_id, store, SECRET, session, clock=lambda: 1234.0)
    finally:
        receiver.close()
    [(headers, body)] = receiver.got
    assert headers["Content-Type"] == "application/json"
    assert headers[SIGNATURE_HEADER].startswith("t=1234,v1=")
    assert verify(body, headers[SIGNATURE_HEADER], SECRET, now=1234)
    event = json.loads(body)
    job = store.get(job_id)
    assert event == build_event(job, store.events(job_id))
    assert (event["type"], event["id"]) == ("fax.cancelled", f"{job_id}.cancelled")
    assert event["job"]["code"] == "cancelled"
    assert [e["event"] for e in event["history"]] == ["created"]


def test_deliver_reports_failure_for_retry(
    store: JobStore, session: requests.Session
) -> None:
    """A 500 answer or nobody listening: False, so the actor retries."""
    receiver = Receiver(500)
    try:
        assert not deliver(make_job(store, receiver.url), store, SECRET, session)
    finally:
        receiver.close()
    assert len(receiver.got) == 1
    dead = f"http://127.0.0.1:{free_port()}/hook"
    assert not deliver(make_job(store, dead, JobState.FAILED), store, SECRET, session)


def test_deliver_skips_jobs_with_nothing_to_send(
    store: JobStore, session: requests.Session
) -> None:
    """Unknown job, unfinished job or no callback_url: True without any POST."""
    receiver = Receiver(200)
    try:
        assert deliver("missing", store, SECRET, session)
        assert deliver(make_job(store, receiver.url, JobState.ACCEPTED), store,
                       SECRET, session)  # fmt: skip
        assert deliver(make_job(store, "", JobState.SENT), store, SECRET, session)
    finally:
        receiver.close()
    assert receiver.got == []
