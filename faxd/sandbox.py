"""A sipgate-compatible fax API server for tests, demos and trying a setup for free.

It speaks real HTTP/1.1 (keep-alive, exact ``Content-Length``) from the standard
library's ``ThreadingHTTPServer``, so it runs in a test thread (:class:`Sandbox`) and as
``faxd sandbox`` (:func:`main`). All state sits behind one lock; randomness comes from
``random.Random(seed)``. It never imports ``faxd.sipgate``: the client is tested against
it, so the two must not share code. SIPGATE_API.md is the contract; "ours" below marks
choices sipgate does not document.

sipgate's API (under ``/v2``, base URL ``http://127.0.0.1:PORT/v2``)
--------------------------------------------------------------------

=========================================  ===========================================
``POST /sessions/fax``                     send; 200 ``{"sessionId": "<digits>"}``
``POST /sessions/fax/resend``              ``{"faxId", "faxlineId"?}``; 200, empty body
``GET /history``                           ``{"items": [...], "totalCount": n}``
``GET|DELETE /history/{id}``               one entry; DELETE answers 204
``PUT /history/{id}``                      flags ``read``, ``archived``, ``starred``,
                                           ``note``; 204
``GET /authorization/userinfo``            ``{"sub": "w0", "domain", "masterSipId",
                                           "locale"}``
``GET /{userId}/faxlines``                 ``{"items": [{id, alias, tagline, canSend,
                                           canReceive}]}``; another user id: 403 (ours)
``GET /balance``                           ``{"amount": <1/10,000 EUR>, "currency"}``
``GET /_files/{id}/document.pdf``          the PDF as posted (no auth, like sipgate's
``GET /_files/{id}/report.pdf``            ``documentUrl``/``reportUrl``/``previewUrl``;
``GET /_files/{id}/preview.png``           the paths are ours)
=========================================  ===========================================

Auth: PAT ``Basic base64(tokenId:token)`` or ``Bearer <token>``; bad or missing: 401.
Scopes (any one): send/resend ``sessions:fax:write``, ``sessions:write``, ``all``;
history reads ``history:read``, ``all``; history PUT/DELETE ``history:write``, ``all``;
faxlines ``faxlines:read``, ``all``; balance ``balance:read``, ``all``; userinfo none.
Missing scope: 403. ``scopes`` applies to every credential, ``credential_scopes`` (keyed
by token id or bearer token) overrides it per credential.

Order of checks (ours): routing (404 unknown path, 405 with ``Allow`` for a wrong
method), then injected transport faults, then 401/403 auth, then for sends: 415 when
``Content-Type`` is not ``application/json``; 400 bad JSON, not an object, a missing,
blank or non-string field, ``base64Content`` longer than 28,330,000 characters or not
valid padded base64 (``invalid_base64="fail"`` queues it and fails it instead, as
sipgate's READMEs describe); 403 unknown fax line or ``canSend: false`` (line ``f1``
exists for that, unless it is the configured line); 407 invalid recipient; 402 when the
balance cannot pay the pages; else 200 and a ``PENDING`` history entry. Bodies over
64 MiB get 413 and a closed connection (ours). Extra JSON fields are ignored (ours).

Recipients (SIPGATE_API.md section 6, an independent simple check, not faxd.numbers):
separators `` -/().`` are dropped; fewer than 7 digits, letters or other characters:
407. ``+CC...`` or ``00CC...`` is international (7-15 digits, country code not 0);
``0...`` is national with default region DE (trunk 0 dropped, ``+49`` prefixed);
anything else 407. German national numbers must have 6-13 digits and must not start
with ``137``, ``138``, ``1212``, ``185``, ``1807``, ``181``, ``188`` or ``900``
(premium, special services): 407. ``target`` is the normalised E.164 number.

Documents: decoded and analysed with pypdf (lenient). Not a PDF, unreadable, encrypted,
or with AcroForm fields or XFA: accepted (200) and then ``FAILED``. Billing (ours): each
page (at least 1) costs ``page_cost_cents``, debited when the fax is accepted; 402 when
the balance cannot pay it. Resends are billed the same way.

Status: ``PENDING`` for ``pending_s``, ``SENDING`` for ``per_page_s`` x pages, then
``SENT`` or ``FAILED`` (bad documents skip ``SENDING``). Durations are sandbox-clock
seconds: the clock runs ``time_scale`` times real time (0 freezes it) and jumps with
:meth:`Sandbox.advance`. Status is computed lazily on read; ``lastModified`` is the time
of the last transition (or flag change). Resend creates a NEW history entry (new id,
same target, document and line unless ``faxlineId`` says otherwise, transmission number
+1) and answers 200 with an empty body; sipgate defines no body, so clients must find
the new entry in the listing. ``GET /history`` filters: ``types``, ``directions``,
``connectionIds`` (repeatable), ``phonenumber`` (source or target), ``from``/``to``
(ISO-8601, ``from <= created < to``, naive means UTC), ``archived`` (``true``/``false``,
default ``false``), ``starred`` (``STARRED``/``UNSTARRED``), ``offset`` (>= 0),
``limit`` (1-1000, default 10); a bad value is 400. Newest first.

Controls (ours; no auth, root prefix ``/_sandbox/``; bind to 127.0.0.1)
------------------------------------------------------------------------

=====================================  =================================================
``GET /_sandbox/faxes``                ``{"items": [...]}`` every accepted fax, oldest
                                       first: ``id``, ``filename``, ``recipient``,
                                       ``faxline_id``, ``pages``, ``bytes``, ``sha256``,
                                       ``status``, ``transmission``, ``resend_of``,
                                       ``created``, ``deleted``
``POST /_sandbox/inject``              add a rule (below); ``{"id": "r1"}``
``GET /_sandbox/inject``               ``{"items": [rules with "fired" counts]}``
``DELETE /_sandbox/inject[/{id}]``     remove all rules (or one)
``POST /_sandbox/reset``               forget faxes, rules, stats, balance and
                                       first-attempt memory; reseed the rule randomness
                                       (clock and id counter go on: ids never repeat)
``GET|POST /_sandbox/clock``           ``{"advance_s": x}`` and/or ``{"time_scale": f}``
``GET /_sandbox/stats``                ``{"POST /sessions/fax": 2, "GET /history/{id}":
                                       5, ...}`` requests per route (controls excluded)
``POST /_sandbox/faxes/{id}/status``   ``{"status": "SENT"}``: force it from now on
``POST /_sandbox/balance``             ``{"balance_cents": n}``
=====================================  =================================================

Rules (``POST /_sandbox/inject`` or :meth:`Sandbox.inject`) filter requests and act::

    {"method": "POST",            # default "*"
     "path": "/sessions/fax",     # fnmatch on the path after /v2: "/history/*", "*"
     "recipient": "666$",         # regex searched in the normalised E.164 recipient
                                  # (a send's body, a resend's or GET /history/{id}'s
                                  # entry); requests without one do not match
     "times": 1,                  # fire on the next N matching calls; default unlimited
     "rate": 0.3,                 # fire with this probability (seeded); default 1
     "action": {...}}             # or the action keys flat in the rule itself

Transport actions, decided when a request arrives (before auth; nothing is created):

- ``{"status": 503, "retry_after": 2, "body": "text", "content_type": "text/html"}``:
  answer that status (400-599); ``retry_after`` sets ``Retry-After``; ``body`` makes a
  non-JSON error body (default ``text/plain``).
- ``{"delay_s": 3}``: wait that many real seconds, then go on normally (combinable with
  ``status`` or ``drop``).
- ``{"drop": true}``: close the connection without an answer.

Creation actions, applied when a send or resend creates a fax (several rules merge):

- ``{"accept_then": "500" | "timeout" | "reset"}``: the fax IS created, then the client
  gets a 500 (``body`` allowed), no answer until ``hang_s`` real seconds pass and the
  connection closes, or a TCP reset: the "accepted but reply lost" case.
- ``{"outcome": "FAILED" | "SENT"}``: the final status.
- ``{"fail_transmissions": N}``: the first N faxes to each matching recipient end
  ``FAILED``, later ones (resend or re-post) ``SENT``.
- ``{"visible_after_s": x}``: 404 and absent from lists until x clock seconds old.
- ``{"vanish_after_s": x}``: 404 and absent from lists once x clock seconds old.
- ``{"fax_status": "WEIRD_STATUS"}``: this unknown ``faxStatusType`` replaces
  ``PENDING``/``SENDING`` until the fax is final.
- ``{"scheduled_s": x}``: ``SCHEDULED`` with ``scheduled`` set for x clock seconds,
  then ``PENDING`` and on as usual.

Transport rules: the first one that fires wins (in the order added). Built-in patterns
act as rules after the user's; ``builtin_patterns=False`` turns them off.

Built-in recipient patterns (last three digits; try e.g. ``+49301234666``)
---------------------------------------------------------------------------

=======  ============================================================================
``666``  accepted, then ``FAILED``
``777``  the first fax to the number ``FAILED``, later ones (resend, re-post) ``SENT``
``503``  the first send to the number answers 503 (plain-text body), nothing created
``429``  the first send to the number answers 429 with ``Retry-After: 1``, nothing
         created
``500``  the first send to the number creates the fax, then answers 500
``408``  the first send to the number creates the fax, then hangs ``hang_s`` and closes
``404``  the entry shows in history only 3 clock seconds after creation
``410``  the entry vanishes from history 30 clock seconds after creation
=======  ============================================================================

Error bodies are JSON ``{"status": n, "message": "..."}`` (ours: sipgate has none).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import fnmatch
import hashlib
import io
import json
import math
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from faxd.config import Settings

__all__ = [
    "BUILTIN_PATTERNS",
    "DEMO_FAXLINE_ID",
    "DEMO_TOKEN",
    "DEMO_TOKEN_ID",
    "DEMO_USER_ID",
    "MAX_BASE64_CHARS",
    "Sandbox",
    "main",
]

# Public demo credentials, accepted only by the sandbox (shaped like real ones so
# Settings raises no warnings).
DEMO_TOKEN_ID = "token-SANDBX"  # noqa: S105
DEMO_TOKEN = "5a3f6c1e-8d2b-4c7a-9e1f-0b6d2c4a8e73"  # noqa: S105
DEMO_FAXLINE_ID = "f0"
DEMO_USER_ID = "w0"
DEMO_SOURCE_NUMBER = "+492111234567"
BLOCKED_FAXLINE_ID = "f1"  # exists with canSend false, for the 403 case
DEFAULT_PORT = 8750
MAX_BASE64_CHARS = 28_330_000  # sipgate's documented cap on base64Content
MAX_BODY_BYTES = 64 * 1024 * 1024  # ours: larger bodies get 413 unread
FAX_STATUSES = ("SCHEDULED", "PENDING", "SENDING", "SENT", "FAILED")
FINAL_STATUSES = ("SENT", "FAILED")
HISTORY_TYPES = ("CALL", "VOICEMAIL", "SMS", "FAX")
HISTORY_DIRECTIONS = ("INCOMING", "OUTGOING", "MISSED_INCOMING", "MISSED_OUTGOING")
PREMIUM_PREFIXES = ("137", "138", "1212", "185", "1807", "181", "188", "900")

SEND_SCOPES = frozenset({"sessions:fax:write", "sessions:write", "all"})
HISTORY_READ_SCOPES = frozenset({"history:read", "all"})
HISTORY_WRITE_SCOPES = frozenset({"history:write", "all"})
FAXLINES_SCOPES = frozenset({"faxlines:read", "all"})
BALANCE_SCOPES = frozenset({"balance:read", "all"})

#: Built-in recipient patterns: last three digits -> (rule action, description).
BUILTIN_PATTERNS: dict[str, tuple[dict[str, Any], str]] = {
    "666": ({"outcome": "FAILED"}, "accepted, then FAILED"),
    "777": ({"fail_transmissions": 1}, "first fax FAILED, later ones SENT"),
    "503": ({"status": 503, "body": "Service Unavailable"}, "first send answers 503"),
    "429": ({"status": 429, "retry_after": 1}, "first send answers 429"),
    "500": ({"accept_then": "500"}, "first send created, then answers 500"),
    "408": ({"accept_then": "timeout"}, "first send created, then hangs"),
    "404": ({"visible_after_s": 3.0}, "in history 3 s after creation"),
    "410": ({"vanish_after_s": 30.0}, "gone from history 30 s after creation"),
}
_FIRST_ATTEMPT_ONLY = frozenset({"503", "429", "500", "408"})

_TRANSPORT_KEYS = frozenset(
    {"status", "retry_after", "body", "content_type", "delay_s"}
)
_TRANSPORT_KEYS_ALL = _TRANSPORT_KEYS | {"drop"}
_CREATION_KEYS = frozenset(
    {
        "accept_then",
        "outcome",
        "fail_transmissions",
        "visible_after_s",
        "vanish_after_s",
        "fax_status",
        "scheduled_s",
    }
)
_RULE_KEYS = frozenset({"method", "path", "recipient", "times", "rate", "action"})
_SEPARATORS = re.compile(r"[\s\-/().]")


class RuleError(ValueError):
    """Raised when an injection rule is malformed; the message says which key."""


# --------------------------------------------------------------------------- numbers


def normalise_recipient(raw: str) -> str | None:
    """The E.164 form of ``raw`` by the section-6 rules, or None when sipgate would 407.

    A deliberately simple, independent check (faxd.numbers owns the real policy).
    """
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("+"):
        digits, international = text[1:], True
    elif text.startswith("00"):
        digits, international = text[2:], True
    elif text.startswith("0"):
        digits, international = "49" + text[1:], False
    else:
        return None
    if not digits.isdigit() or not digits.isascii():
        return None
    raw_digits = digits if international else text
    if len(raw_digits) < 7 or not 7 <= len(digits) <= 15 or digits[0] == "0":
        return None
    if digits.startswith("49"):
        national = digits[2:]
        if not 6 <= len(national) <= 13 or national[0] == "0":
            return None
        if national.startswith(PREMIUM_PREFIXES):
            return None
    return "+" + digits


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class _Analysis:
    pages: int
    problem: str | None  # None: sendable


# pypdf raises many types on malformed input; each means "cannot read it".
_PDF_READ_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RecursionError,
    OSError,
    AssertionError,
    ZeroDivisionError,
)


def analyse_document(data: bytes) -> _Analysis:
    """Count pages leniently; name why sipgate would fail the document, if it would."""
    if b"%PDF-" not in data[:1024]:
        return _Analysis(0, "not_pdf")
    from pypdf import PdfReader  # local: only sends need it
    from pypdf.errors import PyPdfError
    from pypdf.generic import DictionaryObject

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return _Analysis(0, "pdf_encrypted")
        pages = len(reader.pages)
        form = reader.root_object.get("/AcroForm")
        form = form.get_object() if form is not None else None
        if isinstance(form, DictionaryObject):
            if form.get("/XFA") is not None:
                return _Analysis(pages, "pdf_has_xfa")
            if form.get("/Fields"):
                return _Analysis(pages, "pdf_has_form")
    # A corrupt file may break pypdf anywhere; any failure to read it means "corrupt".
    except (PyPdfError, *_PDF_READ_ERRORS):
        return _Analysis(0, "pdf_corrupt")
    if pages == 0:
        return _Analysis(0, "pdf_no_pages")
    return _Analysis(pages, None)


def _pdf_escape(text: str) -> str:
    safe = text.encode("latin-1", "replace").decode("latin-1")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_report_pdf(lines: Iterable[str]) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica: the transmission report."""
    ops = ["BT", "/F1 11 Tf", "14 TL", "56 780 Td"]
    for line in lines:
        ops.append(f"({_pdf_escape(line)}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length "
        + str(len(stream)).encode()
        + b" >>\nstream\n"
        + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def make_preview_png(width: int = 42, height: int = 60) -> bytes:
    """A plain grey page-shaped PNG: the preview thumbnail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + b"\xdd" * width
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- state


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(math.floor(seconds), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


@dataclass(slots=True)
class _Fax:
    id: str
    faxline_id: str
    source: str
    source_alias: str
    target: str
    filename: str
    pdf: bytes
    sha256: str
    pages: int
    problem: str | None
    created_v: float
    start_v: float
    scheduled: bool
    pending_s: float
    per_page_s: float
    outcome: str
    transmission: int
    resend_of: str | None
    visible_after_v: float | None = None
    vanish_at_v: float | None = None
    weird_status: str | None = None
    forced: tuple[float, str] | None = None
    deleted: bool = False
    read: bool = False
    archived: bool = False
    starred: bool = False
    note: str = ""
    flags_modified_v: float | None = None

    def timeline(self) -> list[tuple[float, str]]:
        steps: list[tuple[float, str]] = []
        if self.scheduled:
            steps.append((self.created_v, "SCHEDULED"))
        steps.append((self.start_v, "PENDING"))
        sending_at = self.start_v + self.pending_s
        if self.problem is None:
            steps.append((sending_at, "SENDING"))
            steps.append(
                (sending_at + self.per_page_s * max(self.pages, 1), self.outcome)
            )
        else:
            steps.append((sending_at, "FAILED"))
        if self.weird_status is not None:
            steps = [
                (t, self.weird_status if s in ("PENDING", "SENDING") else s)
                for t, s in steps
            ]
        if self.forced is not None:
            at, status = self.forced
            steps = [(t, s) for t, s in steps if t < at] + [(at, status)]
        return steps

    def status_at(self, now: float) -> tuple[str, float]:
        changed, status = self.timeline()[0]
        for t, s in self.timeline():
            if t <= now:
                status, changed = s, t
        if self.flags_modified_v is not None and self.flags_modified_v <= now:
            changed = max(changed, self.flags_modified_v)
        return status, changed

    def visible_at(self, now: float) -> bool:
        if self.deleted:
            return False
        if self.visible_after_v is not None and now < self.visible_after_v:
            return False
        return not (self.vanish_at_v is not None and now >= self.vanish_at_v)


@dataclass(slots=True)
class _Rule:
    id: str
    method: str
    path: str
    recipient: re.Pattern[str] | None
    times: int | None
    rate: float
    action: dict[str, Any]
    source: dict[str, Any]
    builtin: str | None = None  # pattern digits for built-ins
    fired: int = 0
    per_recipient: dict[str, int] = field(default_factory=dict)

    @property
    def transport(self) -> bool:
        return not (self.action.keys() & _CREATION_KEYS)

    def describe(self) -> dict[str, Any]:
        return {**self.source, "id": self.id, "fired": self.fired}


def _number(value: object, key: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{key} must be a number")
    if not math.isfinite(value) or value < minimum:
        raise RuleError(f"{key} must be at least {minimum:g}")
    return float(value)


def _integer(value: object, key: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError(f"{key} must be a whole number of at least {minimum}")
    return value


def _parse_action(raw: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(raw) - _TRANSPORT_KEYS_ALL - _CREATION_KEYS
    if unknown:
        raise RuleError(f"unknown action key(s): {', '.join(sorted(unknown))}")
    if not raw:
        raise RuleError("a rule needs an action")
    action: dict[str, Any] = {}
    creation = raw.keys() & _CREATION_KEYS
    if creation and raw.keys() & {"status", "drop", "delay_s", "retry_after"}:
        raise RuleError(
            "transport actions (status, drop, delay_s) cannot be mixed with creation "
            "actions; add two rules"
        )
    if "status" in raw and "drop" in raw:
        raise RuleError("status and drop exclude each other")
    if "status" in raw:
        action["status"] = _integer(raw["status"], "status", minimum=400)
        if action["status"] > 599:
            raise RuleError("status must be 400-599")
    if "retry_after" in raw:
        action["retry_after"] = _integer(raw["retry_after"], "retry_after", minimum=0)
    for key in ("body", "content_type"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise RuleError(f"{key} must be a string")
            action[key] = raw[key]
    if "delay_s" in raw:
        action["delay_s"] = _number(raw["delay_s"], "delay_s")
    if "drop" in raw:
        if raw["drop"] is not True:
            raise RuleError("drop must be true")
        action["drop"] = True
    if "accept_then" in raw:
        value = str(raw["accept_then"])
        if value not in ("500", "timeout", "reset"):
            raise RuleError('accept_then must be "500", "timeout" or "reset"')
        action["accept_then"] = value
    if "outcome" in raw and "fail_transmissions" in raw:
        raise RuleError("outcome and fail_transmissions exclude each other")
    if "outcome" in raw:
        if raw["outcome"] not in FINAL_STATUSES:
            raise RuleError('outcome must be "SENT" or "FAILED"')
        action["outcome"] = raw["outcome"]
    if "fail_transmissions" in raw:
        action["fail_transmissions"] = _integer(
            raw["fail_transmissions"], "fail_transmissions", minimum=1
        )
    for key in ("visible_after_s", "vanish_after_s", "scheduled_s"):
        if key in raw:
            action[key] = _number(raw[key], key)
    if "fax_status" in raw:
        if not isinstance(raw["fax_status"], str) or not raw["fax_status"].strip():
            raise RuleError("fax_status must be a non-empty string")
        action["fax_status"] = raw["fax_status"]
    if action.keys() <= {"retry_after", "body", "content_type"}:
        raise RuleError("retry_after, body and content_type need status (or 500)")
    return action


def parse_rule(raw: Mapping[str, Any], rule_id: str) -> _Rule:
    """Check a rule (module docstring) and build it; raise :class:`RuleError`."""
    if not isinstance(raw, Mapping):
        raise RuleError("a rule is a JSON object")
    if "action" in raw:
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise RuleError(f"unknown rule key(s): {', '.join(sorted(unknown))}")
        if not isinstance(raw["action"], Mapping):
            raise RuleError("action must be an object")
        action_raw: Mapping[str, Any] = raw["action"]
    else:
        action_raw = {k: v for k, v in raw.items() if k not in _RULE_KEYS}
    action = _parse_action(action_raw)
    method = raw.get("method", "*")
    path = raw.get("path", "*")
    if not isinstance(method, str) or not isinstance(path, str) or not path:
        raise RuleError("method and path must be strings")
    pattern = None
    if raw.get("recipient") is not None:
        if not isinstance(raw["recipient"], str):
            raise RuleError("recipient must be a regular expression string")
        try:
            pattern = re.compile(raw["recipient"])
        except re.error as exc:
            raise RuleError(
                f"recipient is not a valid regular expression: {exc}"
            ) from None
    times = raw.get("times")
    if times is not None:
        times = _integer(times, "times", minimum=1)
    rate = 1.0 if raw.get("rate") is None else _number(raw["rate"], "rate")
    if rate > 1:
        raise RuleError("rate must be between 0 and 1")
    source = dict(raw)
    return _Rule(rule_id, method.upper(), path, pattern, times, rate, action, source)


@dataclass(slots=True)
class _Reply:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    then: str | None = None  # None, "timeout", "reset", "drop"
    delay_s: float = 0.0

    @classmethod
    def json(cls, status: int, data: object, **headers: str) -> _Reply:
        return cls(status, json.dumps(data).encode(), headers=dict(headers))

    @classmethod
    def error(cls, status: int, message: str, **headers: str) -> _Reply:
        return cls.json(status, {"status": status, "message": message}, **headers)

    @classmethod
    def empty(cls, status: int) -> _Reply:
        return cls(status, b"", content_type=None)


class _HttpError(Exception):
    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _fail(status: int, message: str, **headers: str) -> _HttpError:
    return _HttpError(_Reply.error(status, message, **headers))


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str  # full path, no query
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    host: str


# Routes: (regex on the path after /v2, template for stats, allowed methods)
_ROUTES: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [
    (re.compile(r"/sessions/fax"), "/sessions/fax", ("POST",)),
    (re.compile(r"/sessions/fax/resend"), "/sessions/fax/resend", ("POST",)),
    (re.compile(r"/history"), "/history", ("GET",)),
    (re.compile(r"/history/([^/]+)"), "/history/{id}", ("GET", "PUT", "DELETE")),
    (re.compile(r"/authorization/userinfo"), "/authorization/userinfo", ("GET",)),
    (re.compile(r"/balance"), "/balance", ("GET",)),
    (
        re.compile(r"/_files/([^/]+)/(document\.pdf|report\.pdf|preview\.png)"),
        "/_files/{id}/{name}",
        ("GET",),
    ),
    (re.compile(r"/([^/_][^/]*)/faxlines"), "/{userId}/faxlines", ("GET",)),
]


def _route(rel: str) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    """(stats template, allowed methods, path parameters) for a path after /v2."""
    for pattern, template, methods in _ROUTES:
        match = pattern.fullmatch(rel)
        if match:
            return template, methods, match.groups()
    return None


class Sandbox:
    """A sipgate-compatible fax API on loopback; see the module docstring."""

    def __init__(
        self,
        *,
        token_id: str = DEMO_TOKEN_ID,
        token: str = DEMO_TOKEN,
        faxline_id: str = DEMO_FAXLINE_ID,
        bearer_tokens: Iterable[str] = (),
        scopes: Iterable[str] = ("all",),
        credential_scopes: Mapping[str, Iterable[str]] | None = None,
        pending_s: float = 1.0,
        per_page_s: float = 2.0,
        time_scale: float = 1.0,
        seed: int = 0,
        balance_cents: int = 100_000,
        page_cost_cents: int = 10,
        hang_s: float = 5.0,
        builtin_patterns: bool = True,
        invalid_base64: str = "reject",
        rules: Iterable[Mapping[str, Any]] = (),
        verbose: bool = False,
    ) -> None:
        if invalid_base64 not in ("reject", "fail"):
            raise ValueError('invalid_base64 must be "reject" or "fail"')
        if min(pending_s, per_page_s, time_scale, hang_s) < 0:
            raise ValueError("durations and time_scale must not be negative")
        self.token_id = token_id
        self._token = token
        self.faxline_id = faxline_id
        self._bearer_tokens = frozenset(bearer_tokens)
        self._scopes = frozenset(scopes)
        self._credential_scopes = {
            key: frozenset(value) for key, value in (credential_scopes or {}).items()
        }
        self.pending_s = pending_s
        self.per_page_s = per_page_s
        self.hang_s = hang_s
        self.page_cost_cents = page_cost_cents
        self.builtin_patterns = builtin_patterns
        self.invalid_base64 = invalid_base64
        self.verbose = verbose
        self._seed = seed
        self._initial_balance = balance_cents
        self._initial_rules = [dict(r) for r in rules]
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        # The clock: virtual = _v0 + (monotonic - _m0) * _scale
        self._v0 = time.time()
        self._m0 = time.monotonic()
        self._scale = time_scale
        self._next_id = random.Random(seed).randrange(10**9, 2 * 10**9)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._reset_state()

    def _reset_state(self) -> None:
        with self._lock:
            self._faxes: dict[str, _Fax] = {}
            self._rules: list[_Rule] = []
            self._rule_counter = 0
            self._rng = random.Random(self._seed)
            self._stats: dict[str, int] = {}
            self._balance_cents = self._initial_balance
            self._first_attempts: set[tuple[str, str]] = set()
            self._builtins = [
                _Rule(
                    f"builtin-{digits}",
                    "POST",
                    "/sessions/fax*",
                    re.compile(digits + "$"),
                    None,
                    1.0,
                    action,
                    {"recipient": digits + "$", "action": action},
                    builtin=digits,
                )
                for digits, (action, _) in BUILTIN_PATTERNS.items()
            ]
            for raw in self._initial_rules:
                self.inject(**raw)

    # ------------------------------------------------------------------ settings

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> Sandbox:
        """A sandbox accepting the configured credentials and line, else demo ones."""
        token = settings.sipgate_token.reveal()  # the sandbox must know what to accept
        if settings.uses_bearer:
            kw.setdefault("bearer_tokens", (token,))
        elif settings.sipgate_token_id:
            kw.setdefault("token_id", settings.sipgate_token_id)
            kw.setdefault("token", token)
        if settings.sipgate_faxline_id:
            kw.setdefault("faxline_id", settings.sipgate_faxline_id)
        return cls(**kw)

    @property
    def uses_demo_credentials(self) -> bool:
        return self.token_id == DEMO_TOKEN_ID and self._token == DEMO_TOKEN

    # ------------------------------------------------------------------ serving

    def _bind(self, host: str, port: int) -> ThreadingHTTPServer:
        if self._server is not None:
            raise RuntimeError("the sandbox is already serving")
        self._stopping.clear()
        sandbox = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

            def handle_error(self, request: Any, client_address: Any) -> None:
                exc = sys.exc_info()[1]
                if isinstance(exc, OSError):  # clients hang up; not our bug
                    return
                super().handle_error(request, client_address)

        class Handler(_Handler):
            pass

        Handler.sandbox = sandbox
        self._server = Server((host, port), Handler)
        return self._server

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve in a daemon thread until :meth:`stop`."""
        server = self._bind(host, port)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="faxd-sandbox",
            daemon=True,
        )
        self._thread.start()

    def serve_forever(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        """Serve in the calling thread until another thread calls :meth:`stop`."""
        server = self._bind(host, port)
        try:
            server.serve_forever(poll_interval=0.05)
        finally:
            self._close_server()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not serving; call start() first")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not serving; call start() first")
        host = str(self._server.server_address[0])
        if host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if host == "::":
            return "::1"
        return host

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v2``: what ``SIPGATE_BASE_URL`` should say."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v2"

    @property
    def control_url(self) -> str:
        return self.base_url[: -len("/v2")] + "/_sandbox"

    def stop(self) -> None:
        """Stop serving, end hanging replies and close open connections."""
        self._stopping.set()
        server = self._server
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
            self._close_server()
        else:  # serve_forever() in another thread closes itself when it returns
            server.shutdown()

    def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()

    def __enter__(self) -> Sandbox:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        """Sandbox-clock time in epoch seconds."""
        with self._lock:
            return self._v0 + (time.monotonic() - self._m0) * self._scale

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._v0 += seconds

    @property
    def time_scale(self) -> float:
        return self._scale

    def set_time_scale(self, factor: float) -> None:
        """Run the clock ``factor`` times real time from now on (0 freezes it)."""
        if not math.isfinite(factor) or factor < 0:
            raise ValueError("time_scale must be a non-negative number")
        with self._lock:
            self._v0 = self.now()
            self._m0 = time.monotonic()
            self._scale = factor

    # ------------------------------------------------------------------ inspection

    def inject(self, **rule: Any) -> str:
        """Add a failure-injection rule (see the module docstring); return its id."""
        with self._lock:
            self._rule_counter += 1
            parsed = parse_rule(rule, f"r{self._rule_counter}")
            self._rules.append(parsed)
            return parsed.id

    def remove_rule(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear_rules(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def faxes(self) -> list[dict[str, object]]:
        """Every accepted fax, oldest first, for asserting what was really posted."""
        with self._lock:
            now = self.now()
            return [self._fax_record(f, now) for f in self._faxes.values()]

    def _fax_record(self, fax: _Fax, now: float) -> dict[str, object]:
        return {
            "id": fax.id,
            "filename": fax.filename,
            "recipient": fax.target,
            "faxline_id": fax.faxline_id,
            "pages": fax.pages,
            "bytes": len(fax.pdf),
            "sha256": fax.sha256,
            "status": fax.status_at(now)[0],
            "problem": fax.problem,
            "transmission": fax.transmission,
            "resend_of": fax.resend_of,
            "created": _iso(fax.created_v),
            "deleted": fax.deleted,
        }

    def stats(self) -> dict[str, int]:
        """Requests per route, e.g. ``{"GET /history/{id}": 4}`` (controls excluded)."""
        with self._lock:
            return dict(self._stats)

    def reset(self) -> None:
        """Forget faxes, rules, stats and balance; the clock and ids keep going."""
        self._reset_state()

    def set_status(self, fax_id: str, status: str) -> None:
        """Force a fax's ``faxStatusType`` from now on (any string)."""
        with self._lock:
            fax = self._faxes.get(fax_id)
            if fax is None:
                raise KeyError(fax_id)
            fax.forced = (self.now(), status)

    def status_of(self, fax_id: str) -> str:
        with self._lock:
            return self._faxes[fax_id].status_at(self.now())[0]

    @property
    def balance_cents(self) -> int:
        with self._lock:
            return self._balance_cents

    def set_balance(self, cents: int) -> None:
        with self._lock:
            self._balance_cents = cents

    # ------------------------------------------------------------------ dispatch

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + 1

    def _dispatch(self, req: _Request) -> _Reply:
        """Answer one request (the HTTP handler's only call)."""
        try:
            if req.path == "/_sandbox" or req.path.startswith("/_sandbox/"):
                return self._control(req)
            return self._api(req)
        except _HttpError as exc:
            return exc.reply

    def _api(self, req: _Request) -> _Reply:
        if not req.path.startswith("/v2/"):
            self._count(f"{req.method} <unknown>")
            return _Reply.error(404, "not found")
        rel = req.path[3:]
        route = _route(rel)
        if route is None:
            self._count(f"{req.method} <unknown>")
            reply = self._transport_faults(req, rel)
            return reply if reply is not None else _Reply.error(404, "not found")
        template, methods, groups = route
        self._count(f"{req.method} {template}")
        reply = self._transport_faults(req, rel)
        if reply is not None:
            return reply
        if req.method not in methods:
            return _Reply.error(405, "method not allowed", Allow=", ".join(methods))
        if template == "/_files/{id}/{name}":
            return self._file(groups[0], groups[1])
        credential = self._authenticate(req)
        if template == "/sessions/fax":
            return self._send(req, rel, credential)
        if template == "/sessions/fax/resend":
            return self._resend(req, rel, credential)
        if template == "/history":
            return self._list(req, credential)
        if template == "/history/{id}":
            return self._entry(req, groups[0], credential)
        if template == "/balance":
            return self._balance(credential)
        if template == "/{userId}/faxlines":
            return self._faxlines(groups[0], credential)
        return self._userinfo()

    # ------------------------------------------------------------------ rules

    def _request_recipient(self, req: _Request, rel: str) -> str | None:
        if req.method == "POST" and rel == "/sessions/fax":
            try:
                data = json.loads(req.body)
            except ValueError:
                return None
            raw = data.get("recipient") if isinstance(data, dict) else None
            if not isinstance(raw, str):
                return None
            return normalise_recipient(raw) or raw
        if rel == "/sessions/fax/resend":
            try:
                data = json.loads(req.body)
            except ValueError:
                return None
            fax_id = data.get("faxId") if isinstance(data, dict) else None
            fax = self._faxes.get(fax_id) if isinstance(fax_id, str) else None
            return fax.target if fax is not None else None
        if rel.startswith("/history/"):
            fax = self._faxes.get(rel[len("/history/") :])
            return fax.target if fax is not None else None
        return None

    def _matches(
        self, rule: _Rule, method: str, rel: str, recipient: str | None
    ) -> bool:
        if rule.method not in ("*", method):
            return False
        if not fnmatch.fnmatchcase(rel, rule.path):
            return False
        if rule.recipient is not None and (
            recipient is None or not rule.recipient.search(recipient)
        ):
            return False
        if rule.times is not None and rule.fired >= rule.times:
            return False
        return rule.rate >= 1.0 or self._rng.random() < rule.rate

    def _builtin_fires(self, rule: _Rule, recipient: str) -> bool:
        assert rule.builtin is not None
        if rule.builtin not in _FIRST_ATTEMPT_ONLY:
            return True
        key = (rule.builtin, recipient)
        if key in self._first_attempts:
            return False
        self._first_attempts.add(key)
        return True

    def _transport_faults(self, req: _Request, rel: str) -> _Reply | None:
        with self._lock:
            recipient = self._request_recipient(req, rel)
            chosen: _Rule | None = None
            candidates = [r for r in self._rules if r.transport]
            if self.builtin_patterns:
                candidates += [r for r in self._builtins if r.transport]
            for rule in candidates:
                if not self._matches(rule, req.method, rel, recipient):
                    continue
                if rule.builtin is not None and not self._builtin_fires(
                    rule, recipient or ""
                ):
                    continue
                rule.fired += 1
                chosen = rule
                break
        if chosen is None:
            return None
        action = chosen.action
        if action.get("delay_s"):
            self._stopping.wait(action["delay_s"])
        if action.get("drop"):
            return _Reply(then="drop")
        if "status" not in action:
            return None  # a pure delay: go on normally
        return self._injected_error(action, action["status"])

    @staticmethod
    def _injected_error(action: Mapping[str, Any], status: int) -> _Reply:
        headers = {}
        if "retry_after" in action:
            headers["Retry-After"] = str(action["retry_after"])
        if "body" in action:
            ctype = action.get("content_type", "text/plain; charset=utf-8")
            return _Reply(status, action["body"].encode(), ctype, headers)
        return _Reply.error(status, "injected fault", **headers)

    def _creation_effects(
        self, method: str, rel: str, recipient: str
    ) -> dict[str, Any]:
        """Merge the creation actions of all rules that fire (caller holds the lock)."""
        effects: dict[str, Any] = {}
        candidates = [r for r in self._rules if not r.transport]
        if self.builtin_patterns:
            candidates += [r for r in self._builtins if not r.transport]
        for rule in candidates:
            if not self._matches(rule, method, rel, recipient):
                continue
            if rule.builtin is not None and not self._builtin_fires(rule, recipient):
                continue
            action = dict(rule.action)
            limit = action.pop("fail_transmissions", None)
            if limit is not None:
                done = rule.per_recipient.get(recipient, 0)
                rule.per_recipient[recipient] = done + 1
                if done < limit:
                    action["outcome"] = "FAILED"
            rule.fired += 1
            for key, value in action.items():
                if key == "accept_then" and "accept_then" in effects:
                    continue
                effects[key] = value
        return effects

    # ------------------------------------------------------------------ auth

    def _authenticate(self, req: _Request) -> str:
        header = req.headers.get("authorization", "")
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        challenge = {"WWW-Authenticate": 'Basic realm="sipgate sandbox"'}
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise _fail(401, "malformed Basic credentials", **challenge) from None
            token_id, sep, token = decoded.partition(":")
            if sep and token_id == self.token_id and token == self._token:
                return token_id
        elif scheme.lower() == "bearer" and value in self._bearer_tokens:
            return value
        raise _fail(401, "missing or invalid credentials", **challenge)

    def _require(self, credential: str, allowed: frozenset[str]) -> None:
        scopes = self._credential_scopes.get(credential, self._scopes)
        if not scopes & allowed:
            raise _fail(403, f"missing scope; need one of {', '.join(sorted(allowed))}")

    # ------------------------------------------------------------------ JSON bodies

    @staticmethod
    def _json_body(req: _Request) -> dict[str, Any]:
        ctype = req.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise _fail(415, "Content-Type must be application/json")
        try:
            data = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _fail(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _fail(400, "body must be a JSON object")
        return data

    @staticmethod
    def _string_field(
        data: Mapping[str, Any], key: str, *, required: bool = True
    ) -> str:
        value = data.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise _fail(400, f"{key} must be a string")
        if not value.strip():
            raise _fail(400, f"{key} must not be blank")
        return value

    def _faxline(self, faxline_id: str) -> dict[str, Any] | None:
        for line in self._faxline_items():
            if line["id"] == faxline_id:
                return line
        return None

    def _faxline_items(self) -> list[dict[str, Any]]:
        lines = [
            {
                "id": self.faxline_id,
                "alias": "Sandbox fax",
                "tagline": "faxd sandbox",
                "canSend": True,
                "canReceive": True,
            },
        ]
        if self.faxline_id != BLOCKED_FAXLINE_ID:
            lines.append(
                {
                    "id": BLOCKED_FAXLINE_ID,
                    "alias": "Receive-only fax",
                    "tagline": "faxd sandbox",
                    "canSend": False,
                    "canReceive": True,
                }
            )
        return lines

    def _sendable_line(self, faxline_id: str) -> dict[str, Any]:
        line = self._faxline(faxline_id)
        if line is None:
            raise _fail(403, "unknown fax line")
        if not line["canSend"]:
            raise _fail(403, "this fax line cannot send")
        return line

    # ------------------------------------------------------------------ sending

    def _decode(self, content: str) -> tuple[bytes, bool]:
        """The document bytes and whether the base64 was valid."""
        if len(content) > MAX_BASE64_CHARS:
            raise _fail(400, f"base64Content longer than {MAX_BASE64_CHARS} characters")
        try:
            return base64.b64decode(content, validate=True), True
        except (binascii.Error, ValueError):
            if self.invalid_base64 == "reject":
                raise _fail(400, "base64Content is not valid base64") from None
            return content.encode("utf-8", "replace"), False

    def _send(self, req: _Request, rel: str, credential: str) -> _Reply:
        self._require(credential, SEND_SCOPES)
        data = self._json_body(req)
        values = {
            key: self._string_field(data, key)
            for key in ("faxlineId", "recipient", "filename", "base64Content")
        }
        document, valid = self._decode(values["base64Content"])
        line = self._sendable_line(values["faxlineId"])
        target = normalise_recipient(values["recipient"])
        if target is None:
            raise _fail(407, "invalid recipient number")
        analysis = analyse_document(document) if valid else _Analysis(0, "bad_base64")
        return self._create(
            req, rel, line, target, values["filename"], document, analysis, None
        )

    def _resend(self, req: _Request, rel: str, credential: str) -> _Reply:
        self._require(credential, SEND_SCOPES)
        data = self._json_body(req)
        fax_id = self._string_field(data, "faxId")
        faxline_id = self._string_field(data, "faxlineId", required=False)
        with self._lock:
            original = self._faxes.get(fax_id)
            if original is None or not original.visible_at(self.now()):
                raise _fail(404, "unknown fax")
            line = self._sendable_line(faxline_id or original.faxline_id)
            analysis = _Analysis(original.pages, original.problem)
            return self._create(
                req,
                rel,
                line,
                original.target,
                original.filename,
                original.pdf,
                analysis,
                original.id,
            )

    def _create(
        self,
        req: _Request,
        rel: str,
        line: Mapping[str, Any],
        target: str,
        filename: str,
        document: bytes,
        analysis: _Analysis,
        resend_of: str | None,
    ) -> _Reply:
        digest = hashlib.sha256(document).hexdigest()
        with self._lock:
            cost = max(analysis.pages, 1) * self.page_cost_cents
            if self._balance_cents < cost:
                raise _fail(402, "balance too low")
            self._balance_cents -= cost
            effects = self._creation_effects(req.method, rel, target)
            now = self.now()
            self._next_id += 1 + self._rng.randrange(7)
            fax_id = str(self._next_id)
            transmission = 1 + sum(
                1
                for f in self._faxes.values()
                if f.target == target and f.sha256 == digest
            )
            scheduled_s = effects.get("scheduled_s")
            fax = _Fax(
                id=fax_id,
                faxline_id=str(line["id"]),
                source=DEMO_SOURCE_NUMBER,
                source_alias=str(line["alias"]),
                target=target,
                filename=filename,
                pdf=document,
                sha256=digest,
                pages=analysis.pages,
                problem=analysis.problem,
                created_v=now,
                start_v=now + (scheduled_s or 0.0),
                scheduled=scheduled_s is not None,
                pending_s=self.pending_s,
                per_page_s=self.per_page_s,
                outcome=effects.get("outcome", "SENT"),
                transmission=transmission,
                resend_of=resend_of,
                weird_status=effects.get("fax_status"),
            )
            if "visible_after_s" in effects:
                fax.visible_after_v = now + effects["visible_after_s"]
            if "vanish_after_s" in effects:
                fax.vanish_at_v = now + effects["vanish_after_s"]
            self._faxes[fax_id] = fax
        if resend_of is None:
            reply = _Reply.json(200, {"sessionId": fax_id})
        else:
            reply = _Reply.empty(200)  # sipgate defines no body for resend
        then = effects.get("accept_then")
        if then == "500":
            return self._injected_error(effects, 500)
        if then in ("timeout", "reset"):
            return _Reply(then=then)
        return reply

    # ------------------------------------------------------------------ history

    def _entry_json(self, fax: _Fax, now: float, host: str) -> dict[str, Any]:
        status, changed = fax.status_at(now)
        files = f"http://{host}/v2/_files/{fax.id}"
        entry: dict[str, Any] = {
            "id": fax.id,
            "source": fax.source,
            "target": fax.target,
            "sourceAlias": fax.source_alias,
            "targetAlias": "",
            "type": "FAX",
            "created": _iso(fax.created_v),
            "lastModified": _iso(changed),
            "direction": "OUTGOING",
            "incoming": False,
            "status": "PICKUP",
            "connectionIds": [fax.faxline_id],
            "read": fax.read,
            "archived": fax.archived,
            "note": fax.note,
            "endpoints": [
                {
                    "type": "ROUTED",
                    "endpoint": {"extension": fax.faxline_id, "type": "FAX"},
                }
            ],
            "starred": fax.starred,
            "labels": [],
            "faxStatusType": status,
            "pageCount": fax.pages,
            "documentUrl": f"{files}/document.pdf",
            "reportUrl": f"{files}/report.pdf",
            "previewUrl": f"{files}/preview.png",
        }
        if fax.scheduled:
            entry["scheduled"] = _iso(fax.start_v)
        return entry

    def _visible_fax(self, fax_id: str) -> _Fax:
        fax = self._faxes.get(fax_id)
        if fax is None or not fax.visible_at(self.now()):
            raise _fail(404, "history entry not found")
        return fax

    def _entry(self, req: _Request, fax_id: str, credential: str) -> _Reply:
        if req.method == "GET":
            self._require(credential, HISTORY_READ_SCOPES)
            with self._lock:
                fax = self._visible_fax(fax_id)
                return _Reply.json(200, self._entry_json(fax, self.now(), req.host))
        self._require(credential, HISTORY_WRITE_SCOPES)
        if req.method == "DELETE":
            with self._lock:
                self._visible_fax(fax_id).deleted = True
            return _Reply.empty(204)
        data = self._json_body(req)  # PUT: the inbox flags
        for key in ("read", "archived", "starred"):
            if key in data and not isinstance(data[key], bool):
                raise _fail(400, f"{key} must be true or false")
        if "note" in data and not isinstance(data["note"], str):
            raise _fail(400, "note must be a string")
        with self._lock:
            fax = self._visible_fax(fax_id)
            for key in ("read", "archived", "starred", "note"):
                if key in data:
                    setattr(fax, key, data[key])
            fax.flags_modified_v = self.now()
        return _Reply.empty(204)

    def _list(self, req: _Request, credential: str) -> _Reply:
        self._require(credential, HISTORY_READ_SCOPES)
        q = req.query
        types = self._enum_list(q, "types", HISTORY_TYPES)
        directions = self._enum_list(q, "directions", HISTORY_DIRECTIONS)
        lines = set(q.get("connectionIds", []))
        numbers = {
            normalise_recipient(n) or normalise_recipient("+" + n) or n.strip()
            for n in q.get("phonenumber", [])
        }
        since = self._time_param(q, "from")
        until = self._time_param(q, "to")
        archived = self._one(q, "archived", ("true", "false"), "false") == "true"
        starred = self._one(q, "starred", ("STARRED", "UNSTARRED"), None)
        offset = self._int_param(q, "offset", 0, 0, None)
        limit = self._int_param(q, "limit", 10, 1, 1000)
        with self._lock:
            now = self.now()
            found = [
                f
                for f in self._faxes.values()
                if f.visible_at(now)
                and (types is None or "FAX" in types)
                and (directions is None or "OUTGOING" in directions)
                and (not lines or f.faxline_id in lines)
                and (not numbers or f.target in numbers or f.source in numbers)
                and (since is None or math.floor(f.created_v) >= since)
                and (until is None or math.floor(f.created_v) < until)
                and f.archived == archived
                and (starred is None or f.starred == (starred == "STARRED"))
            ]
            found.sort(key=lambda f: (f.created_v, int(f.id)), reverse=True)
            items = [self._entry_json(f, now, req.host) for f in found]
        return _Reply.json(
            200, {"items": items[offset : offset + limit], "totalCount": len(items)}
        )

    @staticmethod
    def _enum_list(
        q: Mapping[str, list[str]], key: str, allowed: tuple[str, ...]
    ) -> set[str] | None:
        if key not in q:
            return None
        values = set(q[key])
        if not values <= set(allowed):
            raise _fail(400, f"{key} must be among {', '.join(allowed)}")
        return values

    @staticmethod
    def _one(
        q: Mapping[str, list[str]],
        key: str,
        allowed: tuple[str, ...],
        default: str | None,
    ) -> str | None:
        if key not in q:
            return default
        values = q[key]
        if len(values) != 1 or values[0] not in allowed:
            raise _fail(400, f"{key} must be one of {', '.join(allowed)}")
        return values[0]

    @staticmethod
    def _int_param(
        q: Mapping[str, list[str]], key: str, default: int, low: int, high: int | None
    ) -> int:
        if key not in q:
            return default
        values = q[key]
        if len(values) != 1 or not re.fullmatch(r"\d{1,9}", values[0]):
            raise _fail(400, f"{key} must be a whole number")
        number = int(values[0])
        if number < low or (high is not None and number > high):
            raise _fail(400, f"{key} must be between {low} and {high}")
        return number

    @staticmethod
    def _time_param(q: Mapping[str, list[str]], key: str) -> float | None:
        if key not in q:
            return None
        values = q[key]
        try:
            if len(values) != 1:
                raise ValueError(key)
            stamp = datetime.fromisoformat(values[0].strip())
        except ValueError:
            raise _fail(400, f"{key} must be an ISO-8601 date-time") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()

    # ------------------------------------------------------------------ account

    def _userinfo(self) -> _Reply:
        return _Reply.json(
            200,
            {
                "sub": DEMO_USER_ID,
                "domain": "sipgate.de",
                "masterSipId": "1234567",
                "locale": "de_DE",
            },
        )

    def _faxlines(self, user_id: str, credential: str) -> _Reply:
        self._require(credential, FAXLINES_SCOPES)
        if user_id != DEMO_USER_ID:
            raise _fail(403, "not your user id")
        return _Reply.json(200, {"items": self._faxline_items()})

    def _balance(self, credential: str) -> _Reply:
        self._require(credential, BALANCE_SCOPES)
        with self._lock:
            amount = self._balance_cents * 100  # 1/10,000 EUR
        return _Reply.json(200, {"amount": amount, "currency": "EUR"})

    def _file(self, fax_id: str, name: str) -> _Reply:
        with self._lock:
            fax = self._visible_fax(fax_id)
            now = self.now()
            status, changed = fax.status_at(now)
            if name == "document.pdf":
                return _Reply(200, fax.pdf, "application/pdf")
            if name == "preview.png":
                return _Reply(200, make_preview_png(), "image/png")
            report = make_report_pdf(
                [
                    "faxd sandbox - transmission report",
                    f"Fax id: {fax.id}",
                    f"From: {fax.source} ({fax.faxline_id})",
                    f"To: {fax.target}",
                    f"Pages: {fax.pages}",
                    f"Status: {status}" + (f" ({fax.problem})" if fax.problem else ""),
                    f"Created: {_iso(fax.created_v)}",
                    f"Last change: {_iso(changed)}",
                ]
            )
            return _Reply(200, report, "application/pdf")

    # ------------------------------------------------------------------ controls

    def _control(self, req: _Request) -> _Reply:
        rel = req.path[len("/_sandbox") :].rstrip("/")
        data: Any = {}
        if req.body.strip():
            try:
                data = json.loads(req.body)
            except ValueError:
                raise _fail(400, "control bodies are JSON") from None
        if not isinstance(data, dict):
            raise _fail(400, "control bodies are JSON objects")
        key = (req.method, rel)
        if key == ("GET", "/faxes"):
            return _Reply.json(200, {"items": self.faxes()})
        if key == ("GET", "/stats"):
            return _Reply.json(200, self.stats())
        if key == ("GET", "/inject"):
            return _Reply.json(200, {"items": self.rules()})
        if key == ("POST", "/inject"):
            try:
                return _Reply.json(200, {"id": self.inject(**data)})
            except RuleError as exc:
                raise _fail(400, str(exc)) from None
        if key == ("DELETE", "/inject"):
            self.clear_rules()
            return _Reply.json(200, {})
        if req.method == "DELETE" and rel.startswith("/inject/"):
            if not self.remove_rule(rel[len("/inject/") :]):
                raise _fail(404, "no such rule")
            return _Reply.json(200, {})
        if key == ("POST", "/reset"):
            self.reset()
            return _Reply.json(200, {})
        if key in (("GET", "/clock"), ("POST", "/clock")):
            return self._clock_control(data)
        if key == ("POST", "/balance"):
            cents = data.get("balance_cents")
            if isinstance(cents, bool) or not isinstance(cents, int):
                raise _fail(400, "balance_cents must be a whole number")
            self.set_balance(cents)
            return _Reply.json(200, {"balance_cents": cents})
        status_path = re.fullmatch(r"/faxes/([^/]+)/status", rel)
        if req.method == "POST" and status_path:
            status = data.get("status")
            if not isinstance(status, str) or not status:
                raise _fail(400, "status must be a string")
            try:
                self.set_status(status_path.group(1), status)
            except KeyError:
                raise _fail(404, "unknown fax") from None
            return _Reply.json(200, {})
        raise _fail(404, "unknown control")

    def _clock_control(self, data: Mapping[str, Any]) -> _Reply:
        try:
            if "time_scale" in data:
                self.set_time_scale(_number(data["time_scale"], "time_scale"))
            if "advance_s" in data:
                self.advance(_number(data["advance_s"], "advance_s"))
        except (RuleError, ValueError) as exc:
            raise _fail(400, str(exc)) from None
        return _Reply.json(200, {"now": _iso(self.now()), "time_scale": self._scale})


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets the sandbox answer it, writes the reply."""

    protocol_version = "HTTP/1.1"
    server_version = "faxd-sandbox"
    sys_version = ""
    sandbox: ClassVar[Sandbox]

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and
        # delayed ACKs add 40 ms to every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.sandbox._lock:
            self.sandbox._connections.add(self.connection)

    def finish(self) -> None:
        with self.sandbox._lock:
            self.sandbox._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.sandbox.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(_Reply.error(400, "malformed body framing"))
            return
        if body is None:
            self.close_connection = True
            self._write(_Reply.error(413, "body too large"))
            return
        split = urlsplit(self.path)
        host = self.headers.get("Host") or f"{self.sandbox.host}:{self.sandbox.port}"
        request = _Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            host=host,
        )
        reply = self.sandbox._dispatch(request)
        if reply.then == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.then == "timeout":
            self.sandbox._stopping.wait(self.sandbox.hang_s)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.then == "reset":
            self.close_connection = True
            # Linger 0 makes close() send RST instead of FIN.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
            return
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.status not in (204, 304):
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``faxd sandbox``: serve until SIGINT/SIGTERM; print how to point faxd at it."""
    parser = argparse.ArgumentParser(
        prog="faxd sandbox",
        description="Run a sipgate-compatible fax API locally; nothing is sent.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="0: any free port"
    )
    parser.add_argument("--pending", type=float, default=1.0, help="PENDING seconds")
    parser.add_argument(
        "--per-page", type=float, default=2.0, help="SENDING s per page"
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="clock speed")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of faxes that end FAILED"
    )
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="share of sends answered 503"
    )
    parser.add_argument("--balance-cents", type=int, default=100_000)
    parser.add_argument("--hang", type=float, default=5.0, help="hang_s for timeouts")
    parser.add_argument(
        "--no-patterns", action="store_true", help="no built-in patterns"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    for name in ("fail_rate", "error_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")

    settings = Settings.from_env()
    rules: list[dict[str, Any]] = []
    if args.error_rate:
        rules.append(
            {
                "method": "POST",
                "path": "/sessions/fax",
                "rate": args.error_rate,
                "action": {"status": 503},
            }
        )
    if args.fail_rate:
        rules.append(
            {
                "method": "POST",
                "path": "/sessions/fax*",
                "rate": args.fail_rate,
                "action": {"outcome": "FAILED"},
            }
        )
    try:
        sandbox = Sandbox.from_settings(
            settings,
            pending_s=args.pending,
            per_page_s=args.per_page,
            time_scale=args.time_scale,
            seed=args.seed,
            balance_cents=args.balance_cents,
            hang_s=args.hang,
            builtin_patterns=not args.no_patterns,
            rules=rules,
            verbose=args.verbose,
        )
        sandbox.start(args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"faxd sandbox: cannot start: {exc}", file=sys.stderr)
        return 2

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    out = sys.stderr
    print(f"faxd sandbox listening on {sandbox.base_url}", file=out)
    print(
        f"controls: {sandbox.control_url}/ (faxes, inject, reset, clock, stats)",
        file=out,
    )
    if settings.uses_bearer:
        print(
            "accepts: Bearer SIPGATE_TOKEN from the environment (not shown)", file=out
        )
        token_shown = "$SIPGATE_TOKEN"  # noqa: S105
    elif sandbox.uses_demo_credentials:
        print(f"accepts: token id {DEMO_TOKEN_ID}, token {DEMO_TOKEN}", file=out)
        token_shown = DEMO_TOKEN
    else:
        print(
            f"accepts: token id {sandbox.token_id}, SIPGATE_TOKEN from the environment "
            "(not shown)",
            file=out,
        )
        token_shown = "$SIPGATE_TOKEN"  # noqa: S105
    print(f"fax line: {sandbox.faxline_id}", file=out)
    exports = f"export SIPGATE_BASE_URL={sandbox.base_url}"
    if not settings.uses_bearer:
        exports += f" SIPGATE_TOKEN_ID={sandbox.token_id}"
    exports += f" SIPGATE_TOKEN={token_shown} SIPGATE_FAXLINE_ID={sandbox.faxline_id}"
    print(exports, file=out)
    patterns = "; ".join(f"...{d}: {desc}" for d, (_, desc) in BUILTIN_PATTERNS.items())
    if not args.no_patterns:
        print(f"built-in recipient patterns: {patterns}", file=out)
    out.flush()
    try:
        while not done.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("faxd sandbox stopped", file=out)
    return 0
