"""Fax jobs: the record, its states, the one transition table, and their Redis store.

A job is one JSON document at ``faxd:job:<id>``; its PDF bytes sit beside it at
``faxd:job:<id>:pdf`` until sipgate has the fax for good; its history is a list at
``faxd:job:<id>:events``. Every change goes through :meth:`JobStore.update`, which
applies a pure function to the current record inside ``WATCH``/``MULTI``, so two
workers racing on one job cannot both win, and appends an event to the job's history
and to the global stream ``faxd:events`` (which the watcher and callbacks follow) in
the same transaction.

States (DESIGN.md), with two additions reality needed::

    accepted -> submitting -> submitted -> sent
       │  ▲          │  │          │  └──> failed   (FAILED, transmissions used up)
       │  └──────────┘  │          └─────> accepted (FAILED, another transmission due)
       │  nothing sent  └──> failed  (permanent API error)
       ├──> cancelled
       └──> failed   (document no longer stored)
    rejected  (validation said no: a record, nothing queued)

``submitting -> accepted`` records a POST that provably never reached sipgate
(connection refused, 429), so the next attempt posts without a history lookup.
``submitted -> accepted`` schedules a retransmission after sipgate said FAILED.

Redis errors stop here: they become :class:`faxd.errors.StoreError`.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, cast

import redis

from faxd.config import Settings
from faxd.errors import ConflictError, JobStateError, StoreError

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "FaxJob",
    "JobState",
    "JobStore",
    "Transmission",
    "check_transition",
]

KEY_PREFIX = "faxd:"
EVENTS_STREAM = "faxd:events"
EVENTS_STREAM_MAXLEN = 100_000
_WATCH_RETRIES = 50

# The client is built without ``decode_responses``, so Redis replies are bytes; the
# casts below say so, as redis-py can only type them ``bytes | str``.
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class JobState(StrEnum):
    ACCEPTED = "accepted"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


TERMINAL: frozenset[JobState] = frozenset(
    {JobState.SENT, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED}
)

#: The only moves a job may make. ``transition`` applies nothing else.
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset(
        {JobState.SUBMITTING, JobState.CANCELLED, JobState.FAILED}
    ),
    JobState.SUBMITTING: frozenset(
        {JobState.SUBMITTED, JobState.ACCEPTED, JobState.FAILED}
    ),
    JobState.SUBMITTED: frozenset({JobState.SENT, JobState.FAILED, JobState.ACCEPTED}),
    JobState.SENT: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.REJECTED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(current: JobState, new: JobState) -> None:
    """Raise :class:`JobStateError` unless the table allows ``current -> new``."""
    if new not in TRANSITIONS[current]:
        raise JobStateError(
            f"A job cannot move from {current} to {new}; this is a bug in faxd.",
        )


@dataclass(frozen=True, slots=True)
class Transmission:
    """One fax sipgate accepted for this job (a job has more after FAILED)."""

    number: int
    session_id: str
    submitted_at: float
    status: str = "PENDING"
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class FaxJob:
    """A fax job record. Frozen: change it with :func:`dataclasses.replace`."""

    id: str
    state: JobState
    recipient: str
    source: str
    created_at: float
    updated_at: float
    filename: str = ""
    pages: int = 0
    size: int = 0
    sha256: str = ""
    source_sha256: str = ""
    flattened: bool = False
    session_id: str = ""
    provider_status: str = ""
    attempts: int = 0
    attempt_at: float | None = None
    post_unknown_since: float | None = None
    transmissions: tuple[Transmission, ...] = ()
    poll_seq: int = 0
    polls: int = 0
    next_due_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    error_code: str = ""
    error_message: str = ""
    idempotency_key: str = ""
    callback_url: str = ""
    retry_of: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["state"] = str(self.state)
        data["meta"] = dict(self.meta)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> FaxJob:
        data: dict[str, Any] = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["state"] = JobState(data["state"])
        data["transmissions"] = tuple(
            Transmission(**t) for t in data.get("transmissions", ())
        )
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """The record as plain data for CLI/API output (no PDF, recipient in full)."""
        data: dict[str, Any] = json.loads(self.to_json())
        data["created"] = _iso(self.created_at)
        data["updated"] = _iso(self.updated_at)
        data["code"] = self.error_code or None
        data["message"] = self.error_message or None
        return data


def new_job_id() -> str:
    return uuid.uuid4().hex


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _k(*parts: str) -> str:
    return KEY_PREFIX + ":".join(parts)


def job_key(job_id: str) -> str:
    return _k("job", job_id)


def pdf_key(job_id: str) -> str:
    return _k("job", job_id, "pdf")


def events_key(job_id: str) -> str:
    return _k("job", job_id, "events")


def state_index_key(state: JobState) -> str:
    return _k("state", str(state))


ALL_INDEX = _k("jobs")


def idempotency_key(key: str) -> str:
    return _k("idem", key)


def dedupe_key(recipient: str, sha256: str) -> str:
    return _k("dedupe", recipient, sha256)


def session_owner_key(session_id: str) -> str:
    return _k("session", session_id)


class JobStore:
    """Job records, PDF blobs and events in Redis. One per process; thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = client
        self.settings = settings
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=30, socket_connect_timeout=5
        )
        return cls(client, settings)

    def close(self) -> None:
        self.r.close()

    # -- reading -------------------------------------------------------------

    def get(self, job_id: str) -> FaxJob:
        """Return the job or raise ``StoreError(code='job_not_found')``."""
        with self._redis_errors():
            raw = self.r.get(job_key(job_id))
        if raw is None:
            raise StoreError(
                f"No fax job {job_id!r} exists (it may have expired); check the id.",
                "job_not_found",
            )
        return FaxJob.from_json(raw)

    def find(self, job_id: str) -> FaxJob | None:
        with self._redis_errors():
            raw = self.r.get(job_key(job_id))
        return None if raw is None else FaxJob.from_json(raw)

    def pdf(self, job_id: str) -> bytes | None:
        with self._redis_errors():
            data = cast("bytes | None", self.r.get(pdf_key(job_id)))
        return None if data is None else bytes(data)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        with self._redis_errors():
            raw = self.r.lrange(events_key(job_id), 0, -1)
        return [json.loads(e) for e in raw]

    def list(
        self,
        state: JobState | None = None,
        *,
        limit: int = 100,
        before: float | None = None,
    ) -> list[FaxJob]:
        """Jobs newest first (by last change for a state, by creation for all)."""
        index = ALL_INDEX if state is None else state_index_key(state)
        top: float | str = "+inf" if before is None else f"({before}"
        with self._redis_errors():
            ids = cast(
                list[bytes],
                self.r.zrevrangebyscore(index, top, "-inf", start=0, num=limit),
            )
            raws = self.r.mget([job_key(i.decode()) for i in ids]) if ids else []
        jobs: list[FaxJob] = []
        stale: list[bytes] = []
        for job_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                stale.append(job_id)  # expired by retention: tidy the index lazily
                continue
            job = FaxJob.from_json(raw)
            if state is None or job.state == state:
                jobs.append(job)
        if stale:
            with self._redis_errors():
                self.r.zrem(index, *stale)
        return jobs

    def count_by_state(self) -> dict[str, int]:
        with self._redis_errors(), self.r.pipeline(transaction=False) as pipe:
            for s in JobState:
                pipe.zcard(state_index_key(s))
            counts = pipe.execute()
        return {str(s): int(c) for s, c in zip(JobState, counts, strict=True)}

    def owner_of_session(self, session_id: str) -> str | None:
        with self._redis_errors():
            raw = cast("bytes | None", self.r.get(session_owner_key(session_id)))
        return None if raw is None else raw.decode()

    def follow(
        self, last_id: str = "$", *, block_ms: int = 1000, count: int = 100
    ) -> builtins.list[tuple[str, dict[str, str]]]:
        """Read job events after ``last_id`` from the global stream (blocking)."""
        with self._redis_errors():
            reply = cast(
                _XReadReply,
                self.r.xread({EVENTS_STREAM: last_id}, block=block_ms, count=count),
            )
        out: list[tuple[str, dict[str, str]]] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                out.append(
                    (
                        entry_id.decode(),
                        {k.decode(): v.decode() for k, v in fields.items()},
                    )
                )
        return out

    # -- writing -------------------------------------------------------------

    def create(
        self,
        job: FaxJob,
        pdf: bytes | None,
        *,
        fingerprint: str = "",
        dedupe: bool = False,
    ) -> tuple[FaxJob, bool]:
        """Store a new job atomically; return ``(job, True)``.

        With an idempotency key on the job, an earlier job with that key is returned
        as ``(earlier, False)`` when ``fingerprint`` matches, else ConflictError.
        With ``dedupe``, an unfinished earlier job for the same recipient and bytes
        is returned instead of a second fax.
        """
        idem = idempotency_key(job.idempotency_key) if job.idempotency_key else None
        dkey = dedupe_key(job.recipient, job.source_sha256) if dedupe else None
        watched = [k for k in (idem, dkey) if k]
        ttl_ms = int(self.settings.retention_s * 1000)
        for _ in range(_WATCH_RETRIES):
            with self._redis_errors(), self.r.pipeline() as pipe:
                try:
                    if watched:
                        pipe.watch(*watched)  # type: ignore[no-untyped-call]
                    if idem:
                        earlier = pipe.get(idem)
                        if earlier is not None:
                            return self._earlier(earlier, fingerprint), False
                    if dkey:
                        earlier_id = cast("bytes | None", pipe.get(dkey))
                        if earlier_id is not None:
                            found = self.find(earlier_id.decode())
                            if found is not None and not found.is_final:
                                return found, False
                    pipe.multi()
                    pipe.set(job_key(job.id), job.to_json())
                    if pdf is not None:
                        pipe.set(pdf_key(job.id), pdf)
                    pipe.zadd(ALL_INDEX, {job.id: job.created_at})
                    pipe.zadd(state_index_key(job.state), {job.id: job.updated_at})
                    if idem:
                        record = json.dumps({"id": job.id, "fingerprint": fingerprint})
                        pipe.set(idem, record, px=ttl_ms)
                    if dkey and not job.is_final:
                        pipe.set(dkey, job.id, px=ttl_ms)
                    self._append_event(pipe, job, None, "created", {})
                    if job.is_final:
                        self._expire(pipe, job)
                    pipe.execute()
                    return job, True
                except redis.WatchError:
                    continue
        raise StoreError("The job store is too busy to create a job; try again.")

    def _earlier(self, raw: bytes | str, fingerprint: str) -> FaxJob:
        record = json.loads(raw)
        if record.get("fingerprint") != fingerprint:
            raise ConflictError(
                "This Idempotency-Key was already used for a different request; "
                "use a new key for a new fax."
            )
        return self.get(record["id"])

    def update(
        self,
        job_id: str,
        change: Callable[[FaxJob], FaxJob | None],
        *,
        event: str,
        detail: Mapping[str, Any] | None = None,
    ) -> FaxJob | None:
        """Apply ``change`` to the current record atomically.

        ``change`` returns the new record, or None to write nothing (a precondition
        failed: someone else moved first). A state change is checked against
        :data:`TRANSITIONS`. Returns the stored record, or None when nothing changed.
        """
        key = job_key(job_id)
        for _ in range(_WATCH_RETRIES):
            with self._redis_errors(), self.r.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is None:
                        raise StoreError(
                            f"No fax job {job_id!r} exists (it may have expired).",
                            "job_not_found",
                        )
                    current = FaxJob.from_json(raw)
                    new = change(current)
                    if new is None:
                        pipe.unwatch()
                        return None
                    if new.state != current.state:
                        check_transition(current.state, new.state)
                    new = dataclasses.replace(new, updated_at=self.clock())
                    pipe.multi()
                    pipe.set(key, new.to_json())
                    if new.state != current.state:
                        pipe.zrem(state_index_key(current.state), job_id)
                    # Scored by the last change, so "quiet for N seconds" is a range.
                    pipe.zadd(state_index_key(new.state), {job_id: new.updated_at})
                    if new.state != current.state and new.is_final:
                        pipe.delete(dedupe_key(new.recipient, new.source_sha256))
                        self._expire(pipe, new)
                    if new.session_id and new.session_id != current.session_id:
                        pipe.set(
                            session_owner_key(new.session_id),
                            job_id,
                            px=int(self.settings.retention_s * 1000),
                        )
                    self._append_event(pipe, new, current, event, detail or {})
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise StoreError(f"The job store is too busy to update job {job_id}.")

    def transition(
        self,
        job_id: str,
        new_state: JobState,
        *,
        event: str,
        expect: frozenset[JobState] | set[JobState] | None = None,
        detail: Mapping[str, Any] | None = None,
        **changes: Any,
    ) -> FaxJob | None:
        """Move a job to ``new_state`` (and set ``changes``) if it is in ``expect``.

        Returns None, writing nothing, when the job is not in ``expect`` (another
        worker got there first); raises JobStateError for a move the table forbids.
        """

        def change(job: FaxJob) -> FaxJob | None:
            if expect is not None and job.state not in expect:
                return None
            return dataclasses.replace(job, state=new_state, **changes)

        return self.update(job_id, change, event=event, detail=detail)

    def callback_delivered(self, job_id: str) -> bool:
        """True once the job's end-of-job callback has been taken by its receiver."""
        with self._redis_errors():
            return bool(self.r.exists(_k("callback", job_id)))

    def mark_callback_delivered(self, job_id: str) -> None:
        ttl_ms = max(1, int(self.settings.retention_s * 1000))
        with self._redis_errors():
            self.r.set(_k("callback", job_id), 1, px=ttl_ms)

    def drop_pdf(self, job_id: str) -> None:
        with self._redis_errors():
            self.r.delete(pdf_key(job_id))

    def ping(self) -> None:
        with self._redis_errors():
            self.r.ping()

    # -- internals -----------------------------------------------------------

    def _append_event(
        self,
        pipe: Any,
        job: FaxJob,
        previous: FaxJob | None,
        event: str,
        detail: Mapping[str, Any],
    ) -> None:
        entry: dict[str, Any] = {
            "at": _iso(job.updated_at),
            "event": event,
            "state": str(job.state),
        }
        if previous is not None and previous.state != job.state:
            entry["from"] = str(previous.state)
        if job.provider_status and (
            previous is None or previous.provider_status != job.provider_status
        ):
            entry["provider_status"] = job.provider_status
        if job.error_code and (
            previous is None or previous.error_code != job.error_code
        ):
            entry["code"] = job.error_code
        entry.update(detail)
        pipe.rpush(events_key(job.id), json.dumps(entry, separators=(",", ":")))
        pipe.xadd(
            EVENTS_STREAM,
            {"job_id": job.id, "event": event, "state": str(job.state)},
            maxlen=EVENTS_STREAM_MAXLEN,
            approximate=True,
        )

    def _expire(self, pipe: Any, job: FaxJob) -> None:
        ttl_ms = max(1, int(self.settings.retention_s * 1000))
        pipe.pexpire(job_key(job.id), ttl_ms)
        pipe.pexpire(events_key(job.id), ttl_ms)
        if job.state == JobState.SENT:
            pipe.delete(pdf_key(job.id))  # sipgate has it; proof is the sha256
        else:
            pipe.pexpire(pdf_key(job.id), ttl_ms)  # kept so `faxd retry` can resend

    class _Errors:
        def __enter__(self) -> None:
            return None

        def __exit__(
            self, exc_type: Any, exc: BaseException | None, tb: Any
        ) -> Literal[False]:
            if isinstance(exc, redis.RedisError) and not isinstance(
                exc, redis.WatchError
            ):
                raise StoreError(
                    "Redis is unreachable or failed "
                    f"({type(exc).__name__}); check REDIS_URL and the redis-server.",
                ) from exc
            return False

    def _redis_errors(self) -> JobStore._Errors:
        return JobStore._Errors()


def iter_all(store: JobStore, state: JobState | None = None) -> Iterator[FaxJob]:
    """Every job (in pages), newest first."""
    before: float | None = None
    while True:
        page = store.list(state, limit=500, before=before)
        if not page:
            return
        yield from page
        last = page[-1]
        before = last.created_at if state is None else last.updated_at
