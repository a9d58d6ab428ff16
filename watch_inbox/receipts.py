"""What the watcher writes beside a finished file: a receipt or an error record.

Pure builders from a job record, its history and the claimed file's facts; the
watcher writes their output with :func:`watch_inbox.layout.write_json_beside`.

``NAME.receipt.json`` (``sent/`` and ``failed/``)::

    {"receipt_version": 1, "job_id", "state", "recipient", "pages", "size",
     "sha256" (bytes faxed), "source_sha256" (bytes of the file), "flattened",
     "session_id", "provider_status" (final sipgate status), "transmissions": [...],
     "code", "message" (why it failed; null when sent), "created", "finished",
     "file": {"name", "path" (relative to inbox/), "sha256"},
     "events": [every state change with its time, from the job's history]}

``NAME.error.json`` (``rejected/``)::

    {"code", "message", "job_id" (null when no job was made, e.g. no_recipient),
     "recipient", "file": {...}, "rejected_at", "events": [...]}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faxd.jobs import FaxJob

__all__ = ["RECEIPT_VERSION", "FileFacts", "error_record", "receipt"]

RECEIPT_VERSION = 1

FileFacts = dict[str, str]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def receipt(
    job: FaxJob, events: list[dict[str, Any]], file: FileFacts
) -> dict[str, Any]:
    """The receipt of a job that reached ``sent``, ``failed`` or ``cancelled``."""
    return {
        "receipt_version": RECEIPT_VERSION,
        "job_id": job.id,
        "state": str(job.state),
        "recipient": job.recipient,
        "pages": job.pages,
        "size": job.size,
        "sha256": job.sha256,
        "source_sha256": job.source_sha256,
        "flattened": job.flattened,
        "session_id": job.session_id or None,
        "provider_status": job.provider_status or None,
        "transmissions": [
            {
                "number": t.number,
                "session_id": t.session_id,
                "status": t.status,
                "submitted": _iso(t.submitted_at),
                "finished": _iso(t.finished_at),
            }
            for t in job.transmissions
        ],
        "code": job.error_code or None,
        "message": job.error_message or None,
        "created": _iso(job.created_at),
        "finished": _iso(job.finished_at or job.updated_at),
        "file": dict(file),
        "events": events,
    }


def error_record(
    code: str,
    message: str,
    file: FileFacts,
    *,
    job: FaxJob | None = None,
    recipient: str = "",
    events: list[dict[str, Any]] | None = None,
    at: float,
) -> dict[str, Any]:
    """Why a file went to ``rejected/``, with the job id when a job record exists."""
    return {
        "code": code,
        "message": message,
        "job_id": job.id if job is not None else None,
        "recipient": (job.recipient if job is not None else recipient) or None,
        "file": dict(file),
        "rejected_at": _iso(at),
        "events": events or [],
    }
