"""``submit()``: the one way a document enters faxd, plus cancel and retry.

The watcher, the API and the CLI are thin adapters around these functions. A
document the validator refuses still gets a job record (state ``rejected`` with the
code and message), so every intake leaves a trace; nothing is queued for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping

import dramatiq
import structlog

from faxd.config import Settings
from faxd.errors import FaxError, StoreError, ValidationError
from faxd.jobs import FaxJob, JobState, JobStore, new_job_id
from faxd.numbers import mask, to_e164
from faxd.queue import CALLBACK_ACTOR, SUBMIT_ACTOR, enqueue
from faxd.validation import validate_pdf

__all__ = ["cancel", "retry", "submit"]

log = structlog.get_logger("faxd.intake")

_UNSET: object = object()


def request_fingerprint(
    source_sha256: str, to: str, flatten: bool | None, callback_url: str
) -> str:
    """What makes two requests 'the same' for an idempotency key."""
    payload = json.dumps([source_sha256, to.strip(), flatten, callback_url])
    return hashlib.sha256(payload.encode()).hexdigest()


def submit(
    data: bytes,
    to: str,
    *,
    settings: Settings,
    store: JobStore,
    broker: dramatiq.Broker,
    source: str = "python",
    filename: str = "",
    region: str | object | None = _UNSET,
    flatten: bool | None = None,
    dedupe: bool = False,
    idempotency_key: str = "",
    callback_url: str = "",
    meta: Mapping[str, str] | None = None,
) -> FaxJob:
    """Validate ``data`` for recipient ``to``, store the job and queue it.

    Returns the job: ``accepted`` (queued), ``rejected`` (with ``error_code`` and
    ``error_message``; nothing queued), or, with ``dedupe`` or a repeated
    ``idempotency_key``, the earlier job. Raises ConflictError when the key was used
    for a different request and StoreError when Redis is unreachable.
    """
    source_sha256 = hashlib.sha256(data).hexdigest()
    fingerprint = request_fingerprint(source_sha256, to, flatten, callback_url)
    now = time.time()
    job = FaxJob(
        id=new_job_id(),
        state=JobState.ACCEPTED,
        recipient=to.strip(),
        source=source,
        created_at=now,
        updated_at=now,
        filename=filename,
        size=len(data),
        sha256=source_sha256,
        source_sha256=source_sha256,
        idempotency_key=idempotency_key,
        callback_url=callback_url,
        meta=dict(meta or {}),
        next_due_at=now,
    )
    pdf: bytes | None = None
    try:
        recipient = to_e164(
            to,
            settings.default_region if region is _UNSET else region,  # type: ignore[arg-type]
        )
        job = dataclasses.replace(job, recipient=recipient)
        doc = validate_pdf(data, settings, flatten=flatten)
    except ValidationError as exc:
        job = dataclasses.replace(
            job,
            state=JobState.REJECTED,
            error_code=exc.code,
            error_message=exc.message,
            finished_at=now,
        )
    else:
        pdf = doc.pdf
        job = dataclasses.replace(
            job,
            pages=doc.pages,
            size=doc.size,
            sha256=doc.sha256,
            flattened=doc.flattened,
        )
    stored, created = store.create(
        job, pdf, fingerprint=fingerprint, dedupe=dedupe and pdf is not None
    )
    structlog.contextvars.bind_contextvars(job_id=stored.id)
    try:
        if not created:
            log.info("intake_repeat", state=str(stored.state), source=source)
            if stored.state == JobState.ACCEPTED:
                # The first caller may have died before enqueueing; a second
                # message is harmless, as the submit step checks the job first.
                enqueue(broker, SUBMIT_ACTOR, stored.id)
            return stored
        if stored.state == JobState.REJECTED:
            log.info("intake_rejected", code=stored.error_code, source=source)
            return stored
        enqueue(broker, SUBMIT_ACTOR, stored.id)
        log.info(
            "intake_accepted",
            recipient=mask(stored.recipient),
            pages=stored.pages,
            source=source,
        )
        return stored
    finally:
        structlog.contextvars.unbind_contextvars("job_id")


def cancel(
    job_id: str, *, store: JobStore, broker: dramatiq.Broker | None = None
) -> FaxJob:
    """Cancel a job that sipgate does not have yet; raise FaxError otherwise.

    With a broker, a job that has a ``callback_url`` gets its callback queued.
    """
    job = store.transition(
        job_id,
        JobState.CANCELLED,
        event="cancelled",
        expect={JobState.ACCEPTED},
        error_code="cancelled",
        error_message="Cancelled on request before it was sent.",
        finished_at=time.time(),
    )
    if job is None:
        current = store.get(job_id)
        raise FaxError(
            f"Job {job_id} is {current.state}; only a job not yet handed to sipgate "
            "(accepted) can be cancelled.",
            "job_not_cancellable",
        )
    log.info("job_cancelled", job_id=job_id)
    if broker is not None and job.callback_url:
        enqueue(broker, CALLBACK_ACTOR, job.id)
    return job


def retry(
    job_id: str, *, settings: Settings, store: JobStore, broker: dramatiq.Broker
) -> FaxJob:
    """Send a failed or cancelled job's document again as a new job."""
    old = store.get(job_id)
    if old.state not in (JobState.FAILED, JobState.CANCELLED):
        raise FaxError(
            f"Job {job_id} is {old.state}; "
            "only failed or cancelled jobs can be retried.",
            "job_not_cancellable",
        )
    pdf = store.pdf(job_id)
    if pdf is None:
        raise StoreError(
            f"The document of job {job_id} is no longer stored; submit the file again.",
            "document_gone",
        )
    now = time.time()
    job = dataclasses.replace(
        old,
        id=new_job_id(),
        state=JobState.ACCEPTED,
        created_at=now,
        updated_at=now,
        session_id="",
        provider_status="",
        attempts=0,
        attempt_at=None,
        post_unknown_since=None,
        transmissions=(),
        poll_seq=0,
        polls=0,
        next_due_at=now,
        submitted_at=None,
        finished_at=None,
        error_code="",
        error_message="",
        idempotency_key="",
        retry_of=old.id,
    )
    stored, _ = store.create(job, pdf)
    enqueue(broker, SUBMIT_ACTOR, stored.id)
    log.info("job_retried", job_id=stored.id, retry_of=old.id)
    return stored
