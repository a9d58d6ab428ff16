"""The one exception tree of faxd and the registry of its stable error codes.

::

    FaxError                      root of every error faxd raises deliberately
    ├── ConfigError               the operator's settings are wrong    (config_invalid)
    ├── ValidationError           intake refuses a document or number  (not_pdf, ...)
    ├── SipgateError              the fax API said no or could not be reached
    │   ├── SipgateRejected       permanent: retrying the same call cannot help
    │   │   └── SipgateNotFound   404 on a history entry (may be brief after creation)
    │   └── SipgateTransient      network, timeout, 5xx, 429: retry with backoff
    ├── JobStateError             an illegal job transition: a bug (illegal_transition)
    ├── ConflictError             a request clashes with an earlier one
    │                             (idempotency_conflict)
    └── StoreError                the job store (Redis) failed or a job is missing

Every instance carries ``code`` (a key of :data:`CODES`, stable once released: the API,
receipts and logs share it) and ``message`` (a human sentence saying whose fault it is
and what to do). Messages never contain secrets or document bytes.
"""

from __future__ import annotations

__all__ = [
    "CODES",
    "ConfigError",
    "ConflictError",
    "FaxError",
    "JobStateError",
    "SipgateError",
    "SipgateNotFound",
    "SipgateRejected",
    "SipgateTransient",
    "StoreError",
    "ValidationError",
]

#: Every code faxd emits, with whose fault it is. Add codes; never rename or reuse one.
CODES: dict[str, str] = {
    # documents (caller)
    "empty_file": "caller",
    "pdf_too_large": "caller",
    "not_pdf": "caller",
    "pdf_corrupt": "caller",
    "pdf_too_complex": "caller",
    "pdf_encrypted": "caller",
    "pdf_print_restricted": "caller",
    "pdf_signed": "caller",
    "pdf_no_pages": "caller",
    "too_many_pages": "caller",
    "pdf_has_form": "caller",
    "pdf_has_xfa": "caller",
    # recipients (caller)
    "number_empty": "caller",
    "number_has_letters": "caller",
    "number_has_extension": "caller",
    "number_too_short": "caller",
    "number_invalid": "caller",
    "number_region_required": "caller",
    "number_premium": "caller",
    "number_mass_call": "caller",
    "number_personal": "caller",
    "number_pager": "caller",
    "number_voicemail": "caller",
    # hot folder (caller)
    "no_recipient": "caller",  # no sidecar "to", number subfolder or number_ prefix
    "sidecar_invalid": "caller",  # NAME.json is not a JSON object
    # sipgate answers
    "sipgate_bad_request": "us",  # 400: we built a bad body
    "sipgate_auth": "operator",  # 401
    "sipgate_payment": "operator",  # 402
    "sipgate_forbidden": "operator",  # 403
    "sipgate_not_found": "operator",  # 404/405: wrong base URL or unknown id
    "sipgate_number_rejected": "caller",  # 407
    "sipgate_unsupported_media": "us",  # 415
    "sipgate_unexpected": "sipgate",  # any other 4xx or a malformed answer
    "sipgate_unavailable": "sipgate",  # 5xx, 429, network: retried
    # delivery outcomes set on jobs
    "fax_failed": "far end",
    "poll_deadline": "sipgate",
    "provider_lost": "sipgate",
    "outcome_unknown": "operator",
    "retries_exhausted": "sipgate",
    "cancelled": "caller",
    # ours
    "config_invalid": "operator",
    "illegal_transition": "us",
    "job_not_found": "caller",
    "store_unavailable": "operator",
    "idempotency_conflict": "caller",
    "job_not_cancellable": "caller",
    "document_gone": "caller",
    # the intake API (faxd.api)
    "auth_required": "caller",  # 401: no bearer token
    "auth_invalid": "caller",  # 401: a token that is not configured
    "auth_unconfigured": "operator",  # 503: FAXD_API_TOKENS is empty
    "request_too_large": "caller",  # 413: the body exceeds the upload limit
    "unsupported_media_type": "caller",  # 415
    "request_malformed": "caller",  # 400: bad JSON, bad base64, missing fields
    "request_invalid": "caller",  # 400: a parameter of the wrong type or range
    "callback_url_invalid": "caller",  # 400: callback_url is not http(s)
    "route_not_found": "caller",  # 404: no such path
    "method_not_allowed": "caller",  # 405
    "internal_error": "us",  # 500: a bug; the traceback is in the log
}


class FaxError(Exception):
    """Root of the errors faxd raises deliberately."""

    code = "fax_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        if code is not None:
            if code not in CODES:
                raise ValueError(f"unregistered error code {code!r}")
            self.code = code
        self.message = message
        super().__init__(message)

    @property
    def fault(self) -> str:
        """Whose fault this is: caller, operator, sipgate, far end or us."""
        return CODES.get(self.code, "us")

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ConfigError(FaxError):
    """Raised when a setting is missing or malformed; the operator must fix it."""

    code = "config_invalid"


class ValidationError(FaxError):
    """Raised when intake refuses a document or recipient; the caller must fix it."""

    code = "not_pdf"


class SipgateError(FaxError):
    """Raised when the fax API refused a call or could not be reached."""

    code = "sipgate_unexpected"

    def __init__(
        self, message: str, code: str | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message, code)
        self.status = status


class SipgateRejected(SipgateError):
    """Raised on a permanent refusal (400, 401, 402, 403, 404, 407, 415).

    Do not retry.
    """

    code = "sipgate_unexpected"


class SipgateNotFound(SipgateRejected):
    """Raised when a history entry does not exist (404); new ids may 404 briefly."""

    code = "sipgate_not_found"


class SipgateTransient(SipgateError):
    """Raised on network errors, timeouts, 5xx and 429: retry with backoff.

    ``maybe_sent`` is False only when the request provably never reached sipgate
    (connect failure, 429): then a re-post is safe. ``retry_after_s`` carries a
    ``Retry-After`` hint when sipgate gave one.
    """

    code = "sipgate_unavailable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        maybe_sent: bool = True,
    ) -> None:
        super().__init__(message, "sipgate_unavailable", status=status)
        self.retry_after_s = retry_after_s
        self.maybe_sent = maybe_sent


class JobStateError(FaxError):
    """Raised on a job transition the state table forbids; nothing was written."""

    code = "illegal_transition"


class ConflictError(FaxError):
    """Raised when an idempotency key is reused for a different request."""

    code = "idempotency_conflict"


class StoreError(FaxError):
    """Raised when the job store cannot answer (Redis down) or a job does not exist."""

    code = "store_unavailable"
