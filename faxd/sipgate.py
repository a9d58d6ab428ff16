"""The one HTTP client of sipgate's fax API, with its pure body builders and parsers.

This module owns every request faxd makes to sipgate (``POST /sessions/fax``,
``POST /sessions/fax/resend``, ``GET /history``, ``GET /history/{id}``, userinfo,
faxlines, balance) and the conversion of every ``requests`` error into the
:class:`faxd.errors.SipgateError` tree: no ``requests`` exception leaves this module.
It never retries and never sleeps; the caller (the dramatiq actors) owns retries.

Secrets: the token is revealed only inside the auth hook that writes the
``Authorization`` header. Messages name the operation and host, never a token, a header
or the request body (the base64 PDF), and never a phone number (numbers are logged only
masked, by ``faxd.numbers``). Redirects are not followed, and ``~/.netrc`` never
replaces our credentials. Proxies from the environment are honoured.

Error mapping (one boundary, :meth:`SipgateClient._request`); T = SipgateTransient
(code ``sipgate_unavailable``), R = SipgateRejected, E = SipgateError::

    answer                                   raises   code                       sent?
    2xx with the expected JSON               (returns)
    2xx, no string sessionId (send)          T                                   maybe
    2xx, not the expected JSON (others)      E        sipgate_unexpected
    3xx (redirects are not followed)         R        sipgate_unexpected
    400                                      R        sipgate_bad_request
    401                                      R        sipgate_auth
    402                                      R        sipgate_payment
    403                                      R        sipgate_forbidden
    404                                      SipgateNotFound (sipgate_not_found)
    405                                      R        sipgate_not_found
    407 (sipgate: invalid recipient)         R        sipgate_number_rejected
    407 + Proxy-Authenticate (a proxy)       R        sipgate_auth
    408 (request not fully received)         T                                   no
    415                                      R        sipgate_unsupported_media
    429 (retry_after_s from Retry-After)     T                                   no
    other 4xx                                R        sipgate_unexpected
    5xx (retry_after_s from Retry-After)     T                                   maybe
    connect refused, DNS, connect timeout    T                                   no
    proxy unreachable, TLS cert refused      T                                   no
    read timeout; reset, drop or cut-off
      answer after sending; protocol errors  T                                   maybe
    credentials unfit for a header           R        sipgate_auth               no
    URL requests cannot use (InvalidURL...)  R        sipgate_unexpected         no
    SIPGATE_FAXLINE_ID unset (send, list)    R        sipgate_forbidden          no

Answers are read with a cap (:data:`MAX_RESPONSE_BYTES`). ``http_timeout_s`` bounds
each socket read (requests' meaning), the connect at most 10 s. One client may serve
several threads: it keeps no cookies and no state besides the connection pool.

``maybe_sent`` matters only for ``send_fax``/``resend``: True means the fax may exist,
so the caller must look it up in the history (:meth:`SipgateClient.find_faxes`) before
posting again. Error bodies are never parsed, so a non-JSON error body cannot crash us.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import http.cookiejar
import json
import math
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final

import requests
import requests.auth
import urllib3.exceptions

from faxd.config import Secret, Settings
from faxd.errors import (
    SipgateError,
    SipgateNotFound,
    SipgateRejected,
    SipgateTransient,
)

__all__ = [
    "FINAL_STATUSES",
    "MAX_BASE64_CHARS",
    "HistoryEntry",
    "SipgateClient",
    "build_fax_body",
    "parse_history_entry",
    "parse_retry_after",
]

#: sipgate's documented cap on ``base64Content`` (about 20.3 MiB of PDF).
MAX_BASE64_CHARS: Final = 28_330_000
#: ``faxStatusType`` values after which nothing changes any more.
FINAL_STATUSES: Final = frozenset({"SENT", "FAILED"})
#: ``GET /history`` refuses larger pages.
MAX_PAGE_SIZE: Final = 1000
#: Connecting takes a round trip or two; a longer wait means the host is not there.
CONNECT_TIMEOUT_CAP_S: Final = 10.0
#: Our largest answer is a 1000-entry history page (well under 2 MiB); more is wrong.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
#: Guards the paging loop against a server whose totalCount never stops growing.
MAX_PAGES: Final = 1000
USER_AGENT: Final = "faxd/0.1 (sipgate fax queue)"

# An HTTP header value must be visible ASCII; anything else makes requests raise an
# error that quotes the whole header, token included (see _Auth).
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")
_DELTA_SECONDS = re.compile(r"^\d+(\.\d+)?$")
_NUMBER_PUNCTUATION = re.compile(r"[\s\-()./]")


# --- pure parts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One fax entry of sipgate's history (``GET /history/{id}``): what faxd uses."""

    id: str
    fax_status: str  # faxStatusType; "" while absent. Unknown values are non-final.
    target: str
    source: str
    direction: str
    created: datetime | None  # aware, UTC
    last_modified: datetime | None  # aware, UTC
    page_count: int | None
    connection_ids: tuple[str, ...]
    document_url: str | None
    report_url: str | None
    scheduled: str | None

    @property
    def is_final(self) -> bool:
        """True once sipgate reports SENT or FAILED."""
        return self.fax_status in FINAL_STATUSES

    @property
    def is_sent(self) -> bool:
        """True when the fax was delivered."""
        return self.fax_status == "SENT"


def parse_history_entry(data: Mapping[str, object]) -> HistoryEntry:
    """Build a :class:`HistoryEntry` from one decoded history item.

    Raises :class:`SipgateError` (``sipgate_unexpected``) for an item that is not a fax
    or has no id: the caller asked for a fax, so anything else is sipgate's mistake.
    """
    kind = data.get("type")
    if kind != "FAX":
        shown = kind if isinstance(kind, str) else type(kind).__name__
        raise SipgateError(
            f"sipgate returned a history entry of type {shown[:20]!r} where a fax was "
            "expected: sipgate's answer is inconsistent; report it if it persists.",
            "sipgate_unexpected",
        )
    raw_id = data.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
        raise SipgateError(
            "sipgate returned a fax history entry without an id: sipgate's answer is "
            "malformed; report it if it persists.",
            "sipgate_unexpected",
        )
    connection_ids = data.get("connectionIds")
    return HistoryEntry(
        id=str(raw_id),
        fax_status=_text(data.get("faxStatusType")),
        target=_text(data.get("target")),
        source=_text(data.get("source")),
        direction=_text(data.get("direction")),
        created=_timestamp(data.get("created")),
        last_modified=_timestamp(data.get("lastModified")),
        page_count=_count(data.get("pageCount")),
        connection_ids=tuple(c for c in connection_ids if isinstance(c, str))
        if isinstance(connection_ids, list)
        else (),
        document_url=_text(data.get("documentUrl")) or None,
        report_url=_text(data.get("reportUrl")) or None,
        scheduled=_text(data.get("scheduled")) or None,
    )


def build_fax_body(
    faxline_id: str, recipient: str, filename: str, pdf: bytes
) -> dict[str, str]:
    """The JSON body of ``POST /sessions/fax``: exactly the four documented fields.

    Raises ValueError when the base64 form exceeds sipgate's 28,330,000-character cap;
    intake's size limit should have caught that earlier.
    """
    # base64.b64encode: standard alphabet, padded, no line breaks.
    content = base64.b64encode(pdf).decode("ascii")
    if len(content) > MAX_BASE64_CHARS:
        raise ValueError(
            f"the PDF is {len(pdf)} bytes, {len(content)} characters in base64; "
            f"sipgate accepts at most {MAX_BASE64_CHARS}: lower FAXD_MAX_PDF_BYTES "
            "or split the document."
        )
    return {
        "faxlineId": faxline_id,
        "recipient": recipient,
        "filename": filename,
        "base64Content": content,
    }


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date).

    None when absent or unreadable; a date in the past gives 0.0. ``now`` (aware) pins
    the clock for HTTP-dates.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one means the same
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # sipgate writes UTC with a Z; a bare time is UTC too
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _number_key(number: str) -> str:
    """A recipient reduced to its digits, with ``+`` and ``00`` treated alike."""
    cleaned = _NUMBER_PUNCTUATION.sub("", number)
    if cleaned.startswith("+"):
        cleaned = cleaned[1:]
    elif cleaned.startswith("00"):
        cleaned = cleaned[2:]
    return cleaned


def _iso_utc(moment: datetime, *, round_up: bool) -> str:
    if moment.tzinfo is None:
        raise ValueError("pass an aware datetime (UTC), not a naive one")
    moment = moment.astimezone(UTC)
    if round_up and moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the client ---------------------------------------------------------------------


class _Auth(requests.auth.AuthBase):
    """Writes the Authorization header per request; the only place a token is revealed.

    Set per request (not on the session) so that requests never swaps in ``~/.netrc``
    credentials, and so a caller's session is not modified.
    """

    def __init__(self, token_id: str, token: Secret) -> None:
        self._token_id = token_id
        self._token = token

    def __repr__(self) -> str:
        mode = "PAT" if self._token_id else ("Bearer" if self._token else "none")
        return f"<sipgate auth {mode} ***>"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._token:
            return request  # no credentials: sipgate answers 401, mapped as usual
        secret = self._token.reveal()
        # Checked here because requests' own error for a bad header quotes its value.
        if not _HEADER_SAFE.match(secret) or (
            self._token_id and not _HEADER_SAFE.match(self._token_id)
        ):
            raise _UnsafeCredentials
        if self._token_id:
            pair = f"{self._token_id}:{secret}".encode()
            request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode(
                "ascii"
            )
        else:
            request.headers["Authorization"] = "Bearer " + secret
        return request


class _UnsafeCredentials(Exception):
    """SIPGATE_TOKEN or SIPGATE_TOKEN_ID holds characters a header cannot carry."""


# The two calls that may create a fax; their errors say how to recover a lost reply.
_SEND = "sending the fax (POST /sessions/fax)"
_RESEND = "resending the fax (POST /sessions/fax/resend)"


class SipgateClient:
    """sipgate's REST API v2 for faxes: one session, typed errors, no retries.

    Use it as a context manager, or call :meth:`close`. A session passed in is used as
    is (headers, auth and adapters untouched) and left open on close.
    """

    def __init__(
        self, settings: Settings, *, session: requests.Session | None = None
    ) -> None:
        self._settings = settings
        self._base_url = settings.sipgate_base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self._base_url)
        # hostname[:port] only: a base URL may carry user:password, never shown.
        self._host = parts.hostname or "?"
        try:
            port = parts.port
        except ValueError:  # out of range: requests will refuse it, with our message
            port = None
        if port is not None:
            self._host = f"{self._host}:{port}"
        self._shown_url = f"{parts.scheme}://{self._host}{parts.path}"
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # No cookies: every call stands alone, and threads share no jar state.
            session.cookies.set_policy(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            )
        self._session = session
        self._auth = _Auth(settings.sipgate_token_id, settings.sipgate_token)
        read_s = settings.http_timeout_s
        self._timeout = (min(read_s, CONNECT_TIMEOUT_CAP_S), read_s)

    def __repr__(self) -> str:
        return f"<SipgateClient {self._shown_url!r} line={self._faxline_or_blank()!r}>"

    def __enter__(self) -> SipgateClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    # --- calls ---

    def send_fax(self, recipient: str, pdf: bytes, filename: str) -> str:
        """Queue one fax; return sipgate's ``sessionId``, the id of its history entry.

        200 means queued, not sent: follow it with :meth:`get_history_entry`. On
        :class:`SipgateTransient` with ``maybe_sent`` the fax may exist: look it up with
        :meth:`find_faxes` before posting again. ValueError when the PDF is over
        sipgate's size cap (intake should have refused it).
        """
        body = build_fax_body(self._faxline(), recipient, filename, pdf)
        answer = self._request("POST", "/sessions/fax", _SEND, json_body=body)
        session_id = answer.get("sessionId") if isinstance(answer, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise SipgateTransient(
                f"sipgate accepted the fax at {self._host} but its answer has no "
                "sessionId: the fax may exist; look it up in the history before "
                "sending again.",
                status=200,
                maybe_sent=True,
            )
        return session_id

    def get_history_entry(self, entry_id: str) -> HistoryEntry:
        """One fax's history entry; :class:`SipgateNotFound` when sipgate has none."""
        if not entry_id:
            raise ValueError("entry_id must not be empty")
        path = "/history/" + urllib.parse.quote(entry_id, safe="")
        what = f"reading history entry {entry_id[:40]} (GET /history/{{id}})"
        answer = self._request(
            "GET",
            path,
            what,
            not_found="sipgate has no such history entry (404): it may be too new to "
            "show, or deleted; the fax's outcome is unknown",
        )
        if not isinstance(answer, dict):
            raise self._malformed(what)
        return parse_history_entry(answer)

    def find_faxes(
        self,
        *,
        since: datetime,
        until: datetime | None = None,
        target: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[HistoryEntry]:
        """Outgoing faxes of our line created since ``since`` (aware), oldest first.

        Pages through ``totalCount`` by the items actually returned (``limit`` per
        page, at most 1000). ``target`` keeps only faxes to that number, compared
        after removing spaces and punctuation (``+`` and ``00`` alike). Entries of
        another type are skipped. Used to find a fax whose send outcome is unknown.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(
                f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
            )
        params: dict[str, str | int] = {
            "types": "FAX",
            "directions": "OUTGOING",
            "connectionIds": self._faxline(),
            "from": _iso_utc(since, round_up=False),
            "limit": limit,
        }
        if until is not None:
            params["to"] = _iso_utc(until, round_up=True)
        wanted = _number_key(target) if target is not None else None
        if wanted == "":
            raise ValueError("target must contain digits")
        what = "listing faxes (GET /history)"
        found: dict[str, HistoryEntry] = {}
        offset = 0
        for _ in range(MAX_PAGES):
            params["offset"] = offset
            answer = self._request("GET", "/history", what, params=params)
            items = answer.get("items") if isinstance(answer, dict) else None
            total = answer.get("totalCount") if isinstance(answer, dict) else None
            if (
                not isinstance(items, list)
                or not isinstance(total, int)
                or isinstance(total, bool)
            ):
                raise self._malformed(what)
            for item in items:
                if not isinstance(item, dict):
                    raise self._malformed(what)
                if item.get("type") != "FAX":
                    continue  # the server ignored types=FAX; not ours to judge
                entry = parse_history_entry(item)
                if wanted is None or _number_key(entry.target) == wanted:
                    # Entries may shift between pages while new faxes arrive.
                    found.setdefault(entry.id, entry)
            offset += len(items)
            if not items or offset >= total:
                break
        else:
            raise SipgateError(
                f"sipgate's history at {self._host} did not end after {MAX_PAGES} "
                "pages: its totalCount keeps growing; report it to sipgate.",
                "sipgate_unexpected",
            )
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(
            found.values(), key=lambda e: (e.created or far_future, len(e.id), e.id)
        )

    def resend(self, fax_id: str) -> None:
        """Send a fax again (billed). No id comes back: find the new try by listing."""
        if not fax_id:
            raise ValueError("fax_id must not be empty")
        body = {"faxId": fax_id, "faxlineId": self._faxline()}
        self._request(
            "POST",
            "/sessions/fax/resend",
            _RESEND,
            json_body=body,
            raw=True,
            not_found="sipgate does not know the fax to resend (404): it is unknown or "
            "deleted, or SIPGATE_BASE_URL is wrong; nothing was resent",
        )

    def userinfo(self) -> dict[str, object]:
        """``GET /authorization/userinfo``: ``sub`` (web user id), domain, locale..."""
        what = "reading the account (GET /authorization/userinfo)"
        answer = self._request("GET", "/authorization/userinfo", what)
        if not isinstance(answer, dict):
            raise self._malformed(what)
        return answer

    def faxlines(self) -> list[dict[str, object]]:
        """The account's fax lines (``id``, ``alias``, ``canSend``...), via userinfo."""
        user = self.userinfo().get("sub")
        if not isinstance(user, str) or not user:
            raise self._malformed("reading the account (GET /authorization/userinfo)")
        what = "listing fax lines (GET /{userId}/faxlines)"
        path = "/" + urllib.parse.quote(user, safe="") + "/faxlines"
        answer = self._request("GET", path, what)
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self._malformed(what)
        return items

    def balance(self) -> dict[str, object]:
        """``GET /balance``: the account balance (needs the ``balance:read`` scope)."""
        what = "reading the balance (GET /balance)"
        answer = self._request("GET", "/balance", what)
        if not isinstance(answer, dict):
            raise self._malformed(what)
        return answer

    # --- the boundary ---

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Mapping[str, str] | None = None,
        not_found: str | None = None,
        raw: bool = False,
    ) -> Any:
        """Make one call; return the decoded JSON (None with ``raw``) or raise ours.

        Every requests exception stops here. ``json=`` makes requests send
        ``Content-Type: application/json``; sipgate answers 415 to anything else.
        ``not_found`` is the sentence for a 404 meaning "no such fax" rather than
        "wrong path".
        """
        sends = what in (_SEND, _RESEND)
        # Errors are raised after the try, so no requests exception hangs on ours as
        # __context__; only a scrubbed network error is kept, as __cause__.
        failure: SipgateError | None = None
        cause: requests.RequestException | None = None
        status, content = 0, b""
        try:
            with self._session.request(
                method,
                self._base_url + path,
                params=params,
                json=json_body,
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                status = response.status_code
                if not 200 <= status < 300:
                    raise self._status_error(response, what, sends, not_found)
                content = _read_capped(response)
        except _UnsafeCredentials:
            failure = SipgateRejected(
                "SIPGATE_TOKEN_ID or SIPGATE_TOKEN contains spaces, line breaks or "
                "non-ASCII characters, which an HTTP header cannot carry; nothing was "
                "sent: check SIPGATE_TOKEN_ID and SIPGATE_TOKEN.",
                "sipgate_auth",
            )
        except _TooLarge:
            failure = SipgateError(
                f"sipgate's answer to {what} at {self._host} was larger than "
                f"{MAX_RESPONSE_BYTES} bytes: not a sipgate answer; check "
                "SIPGATE_BASE_URL.",
                "sipgate_unexpected",
                status=status,
            )
        except _UNSENDABLE as exc:  # its message may quote the URL's password
            failure = self._network_error(exc, what, sends)
        except requests.RequestException as exc:
            failure, cause = self._network_error(exc, what, sends), _scrubbed(exc)
        if failure is not None:
            raise failure from cause
        if raw:
            return None
        try:
            return json.loads(content)
        except (ValueError, RecursionError):
            pass
        if sends:
            raise SipgateTransient(
                f"sipgate accepted {what} at {self._host} ({status}) but its "
                "answer is not JSON: the fax may exist; look it up in the "
                "history before sending again.",
                status=status,
                maybe_sent=True,
            )
        raise self._malformed(what, status)

    def _status_error(
        self,
        response: requests.Response,
        what: str,
        sends: bool,
        not_found: str | None,
    ) -> SipgateError:
        status = response.status_code
        at = f"at {self._host}"
        if status in (429, 408) or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = f" (sipgate asks to wait {retry_after:g} s)" if retry_after else ""
            if status == 429:
                return SipgateTransient(
                    f"sipgate is throttling requests (429) {at} while {what}; nothing "
                    f"was done: retry later{hint}.",
                    status=status,
                    retry_after_s=retry_after,
                    maybe_sent=False,
                )
            if status == 408:
                return SipgateTransient(
                    f"sipgate timed out receiving the request (408) {at} while {what}; "
                    "nothing was done: retry later.",
                    status=status,
                    retry_after_s=retry_after,
                    maybe_sent=False,
                )
            after = (
                "the fax may exist: look it up in the history before sending again"
                if sends
                else "retry later"
            )
            return SipgateTransient(
                f"sipgate had a server error ({status}) {at} while {what}: "
                f"{after}{hint}.",
                status=status,
                retry_after_s=retry_after,
                maybe_sent=True,
            )
        if 300 <= status < 400:
            return SipgateRejected(
                f"sipgate answered with a redirect ({status}) {at} while {what}; "
                "redirects are not followed: check SIPGATE_BASE_URL "
                "(https://api.sipgate.com/v2).",
                "sipgate_unexpected",
                status=status,
            )
        if status == 400:
            return SipgateRejected(
                f"sipgate refused the request as malformed (400) {at} while {what}: a "
                "field is empty or invalid; a faxd bug or a bad filter: report it.",
                "sipgate_bad_request",
                status=status,
            )
        if status == 401:
            fix = (
                "the OAuth access token in SIPGATE_TOKEN is wrong or expired; renew it"
                if self._settings.uses_bearer
                else "check SIPGATE_TOKEN_ID and SIPGATE_TOKEN"
            )
            return SipgateRejected(
                f"sipgate refused the credentials (401) {at}: {fix}.",
                "sipgate_auth",
                status=status,
            )
        if status == 402:
            return SipgateRejected(
                f"sipgate refused {what} for lack of credit (402) {at}: top up the "
                "sipgate account balance.",
                "sipgate_payment",
                status=status,
            )
        if status == 403:
            fix = (
                "the token lacks the sessions:fax:write scope, or "
                "SIPGATE_FAXLINE_ID is not a line of this account that can send "
                "(or fax is not booked); check the token's scopes and "
                "SIPGATE_FAXLINE_ID"
                if sends
                else "the token lacks the scope for it (history:read, faxlines:read or "
                "balance:read); add it to the token"
            )
            return SipgateRejected(
                f"sipgate forbade {what} (403) {at}: {fix}.",
                "sipgate_forbidden",
                status=status,
            )
        if status == 404:
            if not_found is not None:
                return SipgateNotFound(f"{not_found} ({what} {at}).", status=status)
            return SipgateNotFound(
                f"sipgate does not know the path (404) {at} while {what}: check "
                "SIPGATE_BASE_URL (https://api.sipgate.com/v2).",
                status=status,
            )
        if status == 405:
            return SipgateRejected(
                f"sipgate does not allow this method (405) {at} while {what}: check "
                "SIPGATE_BASE_URL; otherwise this is a faxd bug, report it.",
                "sipgate_not_found",
                status=status,
            )
        if status == 407:
            # sipgate answers 407 for an invalid recipient, not for proxy auth; only a
            # Proxy-Authenticate header says a proxy on the way wants credentials.
            if "Proxy-Authenticate" in response.headers:
                return SipgateRejected(
                    f"a proxy between faxd and {self._host} asked for credentials "
                    "(407): put them in HTTPS_PROXY (http://user:password@proxy:port) "
                    "or list the host in NO_PROXY.",
                    "sipgate_auth",
                    status=status,
                )
            if sends:
                return SipgateRejected(
                    f"sipgate rejected the recipient number as invalid (407) {at}: the "
                    "caller must correct the number.",
                    "sipgate_number_rejected",
                    status=status,
                )
        if status == 415:
            return SipgateRejected(
                f"sipgate refused the request's content type (415) {at} while {what}: "
                "faxd must send JSON; this is a faxd bug, report it.",
                "sipgate_unsupported_media",
                status=status,
            )
        return SipgateRejected(
            f"sipgate answered {what} with an unexpected status ({status}) {at}: "
            "report it; retrying the same call will not help.",
            "sipgate_unexpected",
            status=status,
        )

    def _network_error(
        self, exc: requests.RequestException, what: str, sends: bool
    ) -> SipgateError:
        if _nothing_sent(exc):
            return SipgateTransient(
                f"faxd could not connect to {self._host} while {what} "
                f"({_kind(exc)}): nothing was sent; check the network or "
                "SIPGATE_BASE_URL, then retry.",
                maybe_sent=False,
            )
        if isinstance(exc, _UNSENDABLE):
            # Raised while building the request, before any byte left; their
            # messages may quote the URL (user:password) or a header, so no cause.
            return SipgateRejected(
                f"faxd could not build the request for {what} ({_kind(exc)}); "
                "nothing was sent: check SIPGATE_BASE_URL.",
                "sipgate_unexpected",
            )
        # Timeouts, resets, drops, cut-off or undecodable answers, and anything
        # unforeseen: the request may have arrived, so the fax may exist.
        after = (
            "the fax may exist: look it up in the history before sending again"
            if sends
            else "retry later"
        )
        return SipgateTransient(
            f"the connection to {self._host} failed after the request was sent "
            f"while {what} ({_kind(exc)}): {after}.",
            maybe_sent=True,
        )

    def _malformed(self, what: str, status: int | None = 200) -> SipgateError:
        return SipgateError(
            f"sipgate's answer to {what} at {self._host} is not the expected JSON: "
            "check SIPGATE_BASE_URL; if it is right, report it to sipgate.",
            "sipgate_unexpected",
            status=status,
        )

    def _faxline(self) -> str:
        line = self._faxline_or_blank()
        if not line:
            # What sipgate would answer for an unknown line, without the round trip.
            raise SipgateRejected(
                "SIPGATE_FAXLINE_ID is not set, so faxd cannot name the sending fax "
                "line; nothing was sent: set it to a line's id such as f0.",
                "sipgate_forbidden",
            )
        return line

    def _faxline_or_blank(self) -> str:
        return self._settings.sipgate_faxline_id


#: requests errors raised before anything is sent, for a URL or header it cannot use.
_UNSENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
    requests.exceptions.InvalidJSONError,
)


class _TooLarge(Exception):
    """The answer exceeded MAX_RESPONSE_BYTES."""


def _read_capped(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its wrapped reasons (MaxRetryError.reason, args) and causes."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen) or len(seen) > 20:
            continue
        seen.append(current)
        todo.extend(a for a in current.args if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def _nothing_sent(exc: requests.RequestException) -> bool:
    """True when the request provably never reached the server, so a re-post is safe."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    for link in _chain(exc):
        # NewConnectionError (refused, DNS: NameResolutionError) subclasses it.
        if isinstance(link, urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(link, ssl.SSLCertVerificationError):
            return True  # refused during the handshake, before any request byte
    return False


def _kind(exc: requests.RequestException) -> str:
    """A short, secret-free description of a network error."""
    for link in _chain(exc):
        if isinstance(link, urllib3.exceptions.NameResolutionError):
            return "host name not found"
        if isinstance(link, http.client.RemoteDisconnected):  # a ConnectionResetError
            return "connection closed without an answer"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, ConnectionResetError):
            return "connection reset"
        if isinstance(link, ssl.SSLCertVerificationError):
            return "TLS certificate rejected"
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer in time"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy failed"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "answer cut off"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "answer not decodable"
    if isinstance(exc, _UNSENDABLE):
        return "unusable URL or header"
    for link in _chain(exc):
        if isinstance(link, urllib3.exceptions.ReadTimeoutError):
            return "no answer in time"
        if isinstance(link, urllib3.exceptions.ProtocolError):
            return "connection closed without an answer"
    return type(exc).__name__


def _scrubbed(exc: requests.RequestException) -> requests.RequestException:
    """The cause to chain, without the request it carries (headers and body)."""
    exc.request = None
    exc.response = None
    return exc
