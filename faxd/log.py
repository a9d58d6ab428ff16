"""structlog set-up for every faxd process, and the redaction that keeps secrets out.

JSON lines when stderr is not a terminal (systemd, pipes) or when asked; readable
console lines in a terminal. Every line goes to stderr, so ``--json`` output on
stdout stays clean. :func:`redact` drops tokens, authorization headers, passwords and
document bytes from every event, whoever logs it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["SECRET_KEYS", "configure", "redact"]

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
        "pdf",
        "content",
        "base64content",
        "data",
        "body",
    }
)


def redact(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the values of secret-bearing keys with ``'[redacted]'``."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def configure(fmt: str = "auto", level: str = "INFO") -> None:
    """Set up structlog and stdlib logging for this process.

    dramatiq logs through stdlib logging.
    """
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                redact,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
