"""structlog set-up for every faxd process, and the scrubbing that keeps secrets out.

Format: JSON lines under systemd (``JOURNAL_STREAM`` set), when stderr is not a
terminal (pipes, files) or when asked (``--log-format json``); readable console lines
in a terminal. Every line goes to stderr, so ``--json`` output on stdout stays clean.
Console tracebacks use structlog's plain formatter: rich's would print local
variables, and locals hold tokens and PDF bytes.

What never reaches a line, whoever logs it (faxd, dramatiq, requests, uvicorn):

- :func:`redact`: values of secret-bearing keys (:data:`SECRET_KEYS`) and bytes.
- :func:`mask_numbers`: values of number-bearing keys (:data:`NUMBER_KEYS`) go
  through :func:`faxd.numbers.mask`, and so does any E.164-looking ``+`` and 7 or
  more digits inside any string value (messages, tracebacks, nested lists).
- :class:`Scrubber`: ``Authorization: Basic/Bearer ...`` credentials, long base64
  runs (a PDF's ``base64Content``) and the literal values of the configured secrets
  (``configure(..., secrets=secrets_of(settings))``): in every string value, and
  once more in the rendered line, which also covers tracebacks the console renderer
  formats itself.

Field processors run on the event dict so tests can check them with dicts; the last
pass on the rendered text is what makes the promise hold for text nobody structured.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from faxd.config import Settings
from faxd.numbers import mask

__all__ = [
    "NUMBER_KEYS",
    "REDACTED",
    "SECRET_KEYS",
    "Scrubber",
    "configure",
    "mask_numbers",
    "mask_text",
    "redact",
    "secrets_of",
    "wants_json",
]

REDACTED = "[redacted]"

#: Event keys whose values never reach a log line.
SECRET_KEYS = frozenset(
    {
        "token",
        "sipgate_token",
        "api_token",
        "api_tokens",
        "authorization",
        "password",
        "secret",
        "callback_secret",
        "pdf",
        "content",
        "base64content",
        "data",
        "body",
    }
)

#: Event keys holding a phone number; their values are logged only masked.
NUMBER_KEYS = frozenset(
    {"recipient", "to", "target", "number", "phone", "phonenumber", "fax_number"}
)

#: A secret shorter than this is not searched for in text: it would match by chance
#: (and such a secret is no secret anyway).
MIN_SECRET_CHARS = 6
#: A run of base64 this long is document content, not an id or a hash (a SHA-256
#: in hex is 64 characters, a job id 32).
MIN_BASE64_RUN = 120
#: How deep nested lists and dicts in an event are scrubbed.
MAX_DEPTH = 4

_E164_ANYWHERE = re.compile(r"\+\d{7,}")
_AUTH_CREDENTIALS = re.compile(
    r"\b(Basic|Bearer)(\s+|%20|\\u0020)[A-Za-z0-9._~+/=-]+", re.IGNORECASE
)
_BASE64_RUN = re.compile(rf"[A-Za-z0-9+/]{{{MIN_BASE64_RUN},}}={{0,2}}")
_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")


def _mask_match(match: re.Match[str]) -> str:
    return mask(match.group(0))


def mask_text(text: str) -> str:
    """``text`` with every E.164-looking number masked (``+49******56``)."""
    return _E164_ANYWHERE.sub(_mask_match, text)


def _walk(value: Any, text: Callable[[str], str], depth: int = 0) -> Any:
    """Apply ``text`` to every string in ``value``; bytes are never logged."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes redacted]"
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, list | tuple):
        return [_walk(v, text, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, text, depth + 1) for k, v in value.items()}
    return value


def _internal(key: str) -> bool:
    """Keys processors must leave alone: exception tuples, stdlib's ``_record``."""
    return key.startswith("_") or key == "exc_info"


def redact(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the values of secret-bearing keys with ``'[redacted]'``."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = REDACTED
    return event


def mask_numbers(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask number-bearing keys whole and E.164-looking substrings of all strings."""
    for key, value in list(event.items()):
        lowered = key.lower()
        if lowered in NUMBER_KEYS or lowered.endswith("_number"):
            event[key] = _walk(value, mask) if value else value
        elif not _internal(key):
            event[key] = _walk(value, mask_text)
    return event


class Scrubber:
    """Removes credentials, base64 runs and configured secret values from text.

    As a processor it scrubs every string value of an event; :meth:`text` is the
    same for a rendered line.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literal: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_CHARS:
                continue
            literal.add(secret)
            # A header or a traceback may carry it encoded.
            literal.add(base64.b64encode(secret.encode()).decode())
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(literal, key=len, reverse=True)
        self._secrets = (
            re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
        )

    def text(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _AUTH_CREDENTIALS.sub(rf"\1 {REDACTED}", text)
        text = _USERINFO_PASSWORD.sub(r"\1***@", text)
        text = _BASE64_RUN.sub(_base64_placeholder, text)
        return mask_text(text)

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if not _internal(key):
                event[key] = _walk(value, self.text)
        return event


def _base64_placeholder(match: re.Match[str]) -> str:
    return f"[{len(match.group(0))} base64 chars redacted]"


class _ScrubbedRenderer:
    """The renderer, then one more scrub of the whole line (tracebacks included)."""

    def __init__(self, renderer: Any, scrubber: Scrubber) -> None:
        self.renderer = renderer
        self.scrubber = scrubber

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> str:
        rendered = self.renderer(logger, method, event)
        return self.scrubber.text(str(rendered))


def secrets_of(settings: Settings) -> list[str]:
    """The literal secret values in ``settings``, for :func:`configure`."""
    values = [settings.sipgate_token.reveal(), settings.callback_secret.reveal()]
    values += [t.reveal() for t in settings.api_tokens]
    password = re.search(r"://[^:/@]*:([^@/]+)@", settings.redis_url)
    if password:
        values.append(password.group(1))
    return [v for v in values if v]


def wants_json(fmt: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """JSON when asked, under systemd's journal, or when ``stream`` is no terminal."""
    if fmt in ("json", "console"):
        return fmt == "json"
    return bool(environ.get("JOURNAL_STREAM")) or not _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def configure(
    fmt: str = "auto",
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up structlog and stdlib logging (dramatiq, uvicorn) for this process.

    ``secrets`` are literal values never to print (:func:`secrets_of`); ``stream``
    defaults to stderr.
    """
    out = sys.stderr if stream is None else stream
    as_json = wants_json(fmt, out, os.environ)
    scrubber = Scrubber(secrets)
    fields: list[Any] = [redact, mask_numbers, scrubber]
    renderer: Any
    if as_json:
        fields.insert(0, structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
        )
    final = _ScrubbedRenderer(renderer, scrubber)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *fields,
            final,
        ],
        # One write per line (print() makes two), so lines from structlog and from
        # stdlib logging in other threads never interleave within a line.
        logger_factory=structlog.WriteLoggerFactory(file=out),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *fields,
                final,
            ],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
