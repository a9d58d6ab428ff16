"""The job store against a real redis-server: transitions, atomicity, indexes, keys."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest

from faxd.config import Settings
from faxd.errors import ConflictError, JobStateError, StoreError
from faxd.jobs import (
    TERMINAL,
    TRANSITIONS,
    FaxJob,
    JobState,
    JobStore,
    check_transition,
    iter_all,
    new_job_id,
)


@pytest.fixture
def store(redis_url: str) -> Iterator[JobStore]:
    s = JobStore.from_settings(Settings.from_env({"REDIS_URL": redis_url}))
    yield s
    s.close()


def make_job(**changes: object) -> FaxJob:
    now = time.time()
    job = FaxJob(
        id=new_job_id(),
        state=JobState.ACCEPTED,
        recipient="+49301234567",
        source="test",
        created_at=now,
        updated_at=now,
        pages=1,
        sha256="a" * 64,
        source_sha256="a" * 64,
    )
    return dataclasses.replace(job, **changes)  # type: ignore[arg-type]


def test_terminal_states_have_no_way_out() -> None:
    """sent, failed, rejected and cancelled are final in the table."""
    assert {JobState.SENT, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED} == (
        TERMINAL
    )
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (JobState.ACCEPTED, JobState.SENT),
        (JobState.ACCEPTED, JobState.SUBMITTED),
        (JobState.SUBMITTED, JobState.CANCELLED),
        (JobState.SENT, JobState.FAILED),
        (JobState.REJECTED, JobState.ACCEPTED),
    ],
)
def test_illegal_moves_raise(current: JobState, new: JobState) -> None:
    """Moves outside the table raise JobStateError with code illegal_transition."""
    with pytest.raises(JobStateError) as info:
        check_transition(current, new)
    assert info.value.code == "illegal_transition"


def test_create_get_and_roundtrip(store: JobStore) -> None:
    """A created job reads back equal, with its PDF and a 'created' event."""
    job = make_job(meta={"k": "v"})
    stored, created = store.create(job, b"%PDF-1.4 bytes")
    assert created
    assert store.get(job.id) == stored == job
    assert store.pdf(job.id) == b"%PDF-1.4 bytes"
    assert [e["event"] for e in store.events(job.id)] == ["created"]


def test_missing_job_is_job_not_found(store: JobStore) -> None:
    """get() of an unknown id raises StoreError(job_not_found)."""
    with pytest.raises(StoreError) as info:
        store.get("nope")
    assert info.value.code == "job_not_found"


def test_transition_records_event_and_moves_index(store: JobStore) -> None:
    """A transition updates the record, the state index and the event history."""
    job, _ = store.create(make_job(), b"x")
    moved = store.transition(
        job.id, JobState.SUBMITTING, event="submitting", attempts=1
    )
    assert moved is not None and moved.state == JobState.SUBMITTING
    assert moved.attempts == 1
    assert [j.id for j in store.list(JobState.SUBMITTING)] == [job.id]
    assert store.list(JobState.ACCEPTED) == []
    events = store.events(job.id)
    assert events[-1]["event"] == "submitting"
    assert events[-1]["from"] == "accepted" and events[-1]["state"] == "submitting"


def test_illegal_transition_writes_nothing(store: JobStore) -> None:
    """An illegal move raises and leaves record and history untouched."""
    job, _ = store.create(make_job(), b"x")
    with pytest.raises(JobStateError):
        store.transition(job.id, JobState.SENT, event="bogus")
    assert store.get(job.id).state == JobState.ACCEPTED
    assert len(store.events(job.id)) == 1


def test_expect_guard_returns_none(store: JobStore) -> None:
    """A transition whose expected state does not hold writes nothing."""
    job, _ = store.create(make_job(), b"x")
    assert (
        store.transition(
            job.id, JobState.FAILED, event="x", expect={JobState.SUBMITTING}
        )
        is None
    )
    assert store.get(job.id).state == JobState.ACCEPTED


def test_concurrent_transitions_have_one_winner(store: JobStore) -> None:
    """Ten threads racing accepted->submitting: exactly one succeeds."""
    job, _ = store.create(make_job(), b"x")
    wins: list[FaxJob] = []
    barrier = threading.Barrier(10)

    def race() -> None:
        barrier.wait()
        got = store.transition(
            job.id, JobState.SUBMITTING, event="submitting", expect={JobState.ACCEPTED}
        )
        if got is not None:
            wins.append(got)

    threads = [threading.Thread(target=race) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert [e["event"] for e in store.events(job.id)] == ["created", "submitting"]


def test_idempotency_key_same_request_same_job(store: JobStore) -> None:
    """The same key and fingerprint returns the earlier job.

    Another fingerprint 409s.
    """
    first, created = store.create(make_job(idempotency_key="k1"), b"x", fingerprint="f")
    again, created_again = store.create(
        make_job(idempotency_key="k1"), b"x", fingerprint="f"
    )
    assert created and not created_again and again.id == first.id
    with pytest.raises(ConflictError):
        store.create(make_job(idempotency_key="k1"), b"y", fingerprint="other")


def test_dedupe_returns_unfinished_job_only(store: JobStore) -> None:
    """Dedupe matches an unfinished job with the same bytes and number.

    It does not match a final one.
    """
    first, _ = store.create(make_job(), b"x", dedupe=True)
    dup, created = store.create(make_job(), b"x", dedupe=True)
    assert not created and dup.id == first.id
    store.transition(first.id, JobState.CANCELLED, event="cancelled")
    fresh, created = store.create(make_job(), b"x", dedupe=True)
    assert created and fresh.id != first.id


def test_final_jobs_expire_and_sent_drops_pdf(redis_url: str) -> None:
    """A finished job gets the retention TTL; a sent job's PDF is dropped at once."""
    settings = Settings.from_env({"REDIS_URL": redis_url, "FAXD_RETENTION": "100"})
    store = JobStore.from_settings(settings)
    try:
        job, _ = store.create(make_job(), b"x")
        assert store.r.ttl(f"faxd:job:{job.id}") == -1
        store.transition(job.id, JobState.SUBMITTING, event="s")
        store.transition(job.id, JobState.SUBMITTED, event="s", session_id="1")
        store.transition(job.id, JobState.SENT, event="sent")
        assert 0 < store.r.ttl(f"faxd:job:{job.id}") <= 100
        assert store.pdf(job.id) is None
        assert store.owner_of_session("1") == job.id
    finally:
        store.close()


def test_list_newest_first_and_pages(store: JobStore) -> None:
    """list() is newest first; iter_all pages through every job."""
    ids = []
    for i in range(7):
        job, _ = store.create(
            make_job(created_at=1000.0 + i, updated_at=1000.0 + i), None
        )
        ids.append(job.id)
    assert [j.id for j in store.list(limit=3)] == ids[::-1][:3]
    assert [j.id for j in iter_all(store)] == ids[::-1]
    assert store.count_by_state()["accepted"] == 7


def test_follow_sees_events(store: JobStore) -> None:
    """The global event stream carries each change with the job id."""
    job, _ = store.create(make_job(), None)
    entries = store.follow("0", block_ms=100)
    assert [(e["job_id"], e["event"]) for _, e in entries] == [(job.id, "created")]


def test_redis_down_is_store_error(redis_url: str) -> None:
    """A Redis that does not answer becomes StoreError(store_unavailable)."""
    store = JobStore.from_settings(
        Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    )
    with pytest.raises(StoreError) as info:
        store.get("x")
    assert info.value.code == "store_unavailable"
    assert "127.0.0.1:1" not in info.value.message or "REDIS_URL" in info.value.message
