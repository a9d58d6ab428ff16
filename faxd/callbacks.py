"""Job callbacks: the signed JSON event POSTed to a job's ``callback_url`` when it ends.

The pure core lives here (building the event, signing, verifying, the backoff
schedule, one delivery attempt); the dramatiq actor ``workers.callbacks`` calls
:func:`deliver` and re-enqueues itself with :func:`next_delay_s` when it fails.

The event
---------

``POST <callback_url>`` with ``Content-Type: application/json`` and the body::

    {"id": "<job id>.<state>", "type": "fax.sent",      # fax.failed, fax.cancelled
     "created": "2024-05-01T12:00:00.000+00:00",        # when the job ended
     "job": {...},                                       # as GET /v1/faxes/{id}
     "history": [{"at": ..., "event": ..., "state": ...}, ...]}

``id`` is stable for a job's final state: a receiver that sees it twice (a retry
after a lost answer) can drop the duplicate. Any 2xx answer ends delivery; anything
else (or no answer within ``TIMEOUT_S``) is retried with exponential backoff
(``BASE_DELAY_S`` x ``FACTOR`` ** attempt, capped at ``MAX_DELAY_S``, plus up to
``JITTER`` of it) for ``MAX_ATTEMPTS`` attempts in all; then faxd logs
``callback_gave_up`` and stops. Redirects are not followed.

The signature
-------------

Header ``Faxd-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
``HMAC-SHA256(key=FAXD_CALLBACK_SECRET, msg=b"<t>." + raw body)``. To verify: split
the header on ``,`` and ``=``, recompute the HMAC over the exact bytes received,
compare in constant time (``hmac.compare_digest``) against every ``v1`` value (there
may be several while a secret is rotated), and refuse a ``t`` more than five minutes
from your clock (replay protection). In Python: :func:`verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any

import requests
import structlog

from faxd.jobs import FaxJob, JobStore

__all__ = [
    "SIGNATURE_HEADER",
    "build_event",
    "deliver",
    "next_delay_s",
    "sign",
    "verify",
]

log = structlog.get_logger("faxd.callbacks")

SIGNATURE_HEADER = "Faxd-Signature"
#: Seconds a receiver has to answer one POST.
TIMEOUT_S = 10.0
#: Attempts in all (the first plus retries) before faxd gives up on a callback.
MAX_ATTEMPTS = 10
BASE_DELAY_S = 1.0
FACTOR = 3.0
MAX_DELAY_S = 3600.0
JITTER = 0.25
#: How far a signature's timestamp may be from the verifier's clock.
TOLERANCE_S = 300
USER_AGENT = "faxd-callbacks/1"


def build_event(job: FaxJob, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON event for a job that ended (see the module docstring)."""
    public = job.public()
    return {
        "id": f"{job.id}.{job.state}",
        "type": f"fax.{job.state}",
        "created": public["updated"],
        "job": public,
        "history": events,
    }


def encode(event: dict[str, Any]) -> bytes:
    """The exact body bytes that are signed and sent."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    msg = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Faxd-Signature`` header value: ``t=<timestamp>,v1=<hex hmac>``."""
    return f"t={timestamp},v1={_digest(body, secret, timestamp)}"


def verify(
    body: bytes,
    header: str,
    secret: str,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is fresh enough."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_s:
        return False
    expected = _digest(body, secret, timestamp)
    return any(hmac.compare_digest(expected, s) for s in signatures)


def next_delay_s(attempt: int, rng: random.Random) -> float:
    """Seconds before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
    base = min(MAX_DELAY_S, BASE_DELAY_S * FACTOR**attempt)
    return base * (1 + JITTER * rng.random())


def deliver(
    job_id: str,
    store: JobStore,
    secret: str,
    session: requests.Session,
    *,
    clock: Callable[[], float] = time.time,
    timeout_s: float = TIMEOUT_S,
) -> bool:
    """POST the signed event for ``job_id`` once; True when nothing is left to do.

    False means the receiver did not take it (network error, timeout, non-2xx) and
    a retry makes sense. A job that is gone, unfinished or without a callback URL
    needs nothing: True.
    """
    if store.callback_delivered(job_id):
        # Stale or duplicate messages (a redelivery, a repeated step) end here, so
        # a receiver sees a repeat only if we die between its 2xx and the mark.
        log.info("callback_already_delivered", job_id=job_id)
        return True
    job = store.find(job_id)
    if job is None or not job.callback_url or not job.is_final:
        log.warning(
            "callback_nothing_to_send",
            job_id=job_id,
            state=None if job is None else str(job.state),
        )
        return True
    body = encode(build_event(job, store.events(job_id)))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(body, secret, int(clock())),
    }
    try:
        response = session.post(
            job.callback_url,
            data=body,
            headers=headers,
            timeout=timeout_s,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        log.info("callback_unreachable", job_id=job_id, error=type(exc).__name__)
        return False
    with response:
        if 200 <= response.status_code < 300:
            store.mark_callback_delivered(job_id)
            log.info("callback_delivered", job_id=job_id, status=response.status_code)
            return True
        log.info("callback_refused", job_id=job_id, status=response.status_code)
        return False
