"""The intake API: a FastAPI app that translates HTTP to ``faxd.intake`` and back.

Routes (all ``/v1`` routes need ``Authorization: Bearer <token>``)::

    POST   /v1/faxes              multipart (file, to) or JSON (content base64, to);
                                  optional filename, flatten, dedupe, callback_url;
                                  202 + Location, or 422 problem for a rejected job
    GET    /v1/faxes              ?state=&limit=&cursor=  newest first
    GET    /v1/faxes/{id}         the job with its history
    DELETE /v1/faxes/{id}         cancel before submission (409 after)
    POST   /v1/faxes/{id}/retry   a failed or cancelled job's document as a new job
    GET    /healthz               the process is up
    GET    /readyz                Redis answers and a worker was seen recently
    GET    /metrics               Prometheus text, names prefixed ``faxd_``
    GET    /openapi.json

Decisions (the core decides everything else):

- Tokens come from ``FAXD_API_TOKENS`` and are compared in constant time. With none
  configured every ``/v1`` route answers 503 ``auth_unconfigured`` naming the
  variable: an open fax gateway costs money, and no client-side change could help.
- Errors are ``application/problem+json``: ``type`` (``urn:faxd:error:<code>``),
  ``title``, ``status``, ``detail``, ``code`` (a key of ``faxd.errors.CODES``) and,
  for a rejected document or number (422), ``job_id``. 400 malformed or invalid
  requests, 401 auth, 404 unknown job or path, 409 conflicts, 413 too large, 415
  wrong content type, 503 Redis down or no tokens configured.
- A repeated ``Idempotency-Key`` with the same request answers exactly as the first
  time (202, or 422 for a rejected one) with the same job in its current state; the
  same key for a different request is 409 ``idempotency_conflict``.
- Bodies are limited while they stream in (:class:`BodyLimit`), before anything is
  buffered: ``max_pdf_bytes`` x 4/3 (base64) plus :data:`BODY_MARGIN`.
- The core is synchronous (validation forks a child, the store talks to Redis): it
  runs in the threadpool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import urlsplit

import dramatiq
import redis
import structlog
import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faxd import intake, systemd
from faxd import log as faxlog
from faxd.config import Settings
from faxd.errors import CODES, FaxError, StoreError
from faxd.jobs import FaxJob, JobState, JobStore
from faxd.metrics import WORKER_SEEN_S, StoreCollector
from faxd.queue import make_broker, queue_depth, workers_seen

__all__ = ["BodyLimit", "create_app", "serve"]

log = structlog.get_logger("faxd.api")

PROBLEM_TYPE = "application/problem+json"
#: Room for multipart framing, JSON syntax and the small fields around a document.
BODY_MARGIN = 256 * 1024
#: After refusing a body, read and drop this much more of it (never buffered), so a
#: client that sends the whole body before reading hears the 413 instead of a reset.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 10.0
#: A worker whose last dramatiq heartbeat is older than this does not count as seen.
MAX_CALLBACK_URL = 2048
MAX_FILENAME = 255
FAXES = "/v1/faxes"

#: HTTP status for each core error code; anything not listed is a 500.
_STATUS_OF_CODE: Mapping[str, int] = {
    "job_not_found": 404,
    "job_not_cancellable": 409,
    "idempotency_conflict": 409,
    "document_gone": 409,
    "store_unavailable": 503,
}


# -- problem+json --------------------------------------------------------------


class Problem(Exception):
    """Raised inside the API to answer with an ``application/problem+json`` body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unregistered error code {code!r}")
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @classmethod
    def from_fax_error(cls, exc: FaxError) -> Problem:
        return cls(_STATUS_OF_CODE.get(exc.code, 500), exc.code, exc.message)


def problem_body(
    status: int, code: str, detail: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The problem document (RFC 9457) with faxd's ``code``."""
    return {
        "type": f"urn:faxd:error:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **(extra or {}),
    }


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem_body(problem.status, problem.code, problem.detail, problem.extra),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_TYPE,
    )


# -- the streaming body limit ----------------------------------------------------


class BodyLimit:
    """Pure ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    It trusts nothing: a declared ``Content-Length`` over the limit is refused before
    a byte is read, and the ``http.request`` messages are counted as they stream in
    (chunked bodies, lying lengths), so an oversized body is never held in memory.
    After refusing, the rest is read and dropped (up to :data:`DRAIN_MAX_BYTES` or
    :data:`DRAIN_MAX_S`) and the app sees a client disconnect.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        on_refused: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            expects_continue = headers.get(b"expect", b"").lower() == b"100-continue"
            # With Expect: 100-continue the client waits and sends nothing: no drain.
            await self._refuse(scope, receive, send, drain=not expects_continue)
            return
        seen = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        more = bool(message.get("more_body", False))
                        await self._refuse(scope, receive, send, drain=more)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # we answered 413 already; the app's answer goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, *, drain: bool
    ) -> None:
        if self.on_refused is not None:
            self.on_refused(scope)
        body = json.dumps(
            problem_body(
                413,
                "request_too_large",
                f"The request body is larger than {self.max_bytes} bytes; faxd "
                "accepts PDFs up to FAXD_MAX_PDF_BYTES (base64 in JSON adds a third).",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        # The answer goes out now; the response stays open while the rest of the
        # body is dropped, because the server stops reading once it is complete.
        await send({"type": "http.response.body", "body": body, "more_body": drain})
        if not drain:
            return
        try:
            async with asyncio.timeout(DRAIN_MAX_S):
                dropped = 0
                while dropped < DRAIN_MAX_BYTES:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    dropped += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            pass
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- metrics -------------------------------------------------------------------


# -- services ------------------------------------------------------------------


@dataclass
class Services:
    """What the routes use, built once per app at start-up and closed at shutdown."""

    settings: Settings
    store: JobStore
    broker: dramatiq.Broker
    registry: CollectorRegistry
    intake_requests: Counter

    def workers_seen(self) -> int:
        return workers_seen(self.store.r, WORKER_SEEN_S)

    def queue_depth(self) -> dict[str, int]:
        return queue_depth(self.store.r)

    def close(self) -> None:
        self.broker.close()
        self.store.close()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]

_bearer = HTTPBearer(auto_error=False, description="A token from FAXD_API_TOKENS.")


def _authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with one of the configured bearer tokens."""
    tokens = _services(request).settings.api_tokens
    if not tokens:
        raise Problem(
            503,
            "auth_unconfigured",
            "No API tokens are configured, so the API refuses every request; the "
            "operator must set FAXD_API_TOKENS (comma-separated bearer tokens).",
        )
    challenge = {"WWW-Authenticate": 'Bearer realm="faxd"'}
    if credentials is None:
        raise Problem(
            401,
            "auth_required",
            "Send 'Authorization: Bearer <token>' with a token from FAXD_API_TOKENS.",
            headers=challenge,
        )
    offered = credentials.credentials.encode()
    # Compare against every token, so timing says nothing about which one is close.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(offered, token.reveal().encode())
    if not matched:
        raise Problem(
            401,
            "auth_invalid",
            "The bearer token is not one of FAXD_API_TOKENS.",
            headers={**challenge, "WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


# -- request parsing -------------------------------------------------------------


@dataclass
class FaxRequest:
    """A ``POST /v1/faxes`` body, whichever way it was framed."""

    data: bytes
    to: str
    filename: str = ""
    flatten: bool | None = None
    dedupe: bool = False
    callback_url: str = ""


def _malformed(detail: str) -> Problem:
    return Problem(400, "request_malformed", detail)


def _parse_bool(name: str, value: object) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise _malformed(f"'{name}' must be true or false, got {value!r}.")


def _text(name: str, value: object, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise _malformed(f"The field '{name}' is missing.")
        return ""
    if not isinstance(value, str):
        raise _malformed(f"The field '{name}' must be a string.")
    if required and not value.strip():
        raise _malformed(f"The field '{name}' is empty.")
    return value


def _check_callback_url(url: str) -> str:
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(url) > MAX_CALLBACK_URL
        or any(c.isspace() for c in url)
    ):
        raise Problem(
            400,
            "callback_url_invalid",
            "callback_url must be an absolute http:// or https:// URL of at most "
            f"{MAX_CALLBACK_URL} characters.",
        )
    return url


def _options(fields: Mapping[str, object]) -> dict[str, Any]:
    filename = _text("filename", fields.get("filename"))[:MAX_FILENAME]
    return {
        "to": _text("to", fields.get("to"), required=True),
        "filename": filename,
        "flatten": _parse_bool("flatten", fields.get("flatten")),
        "dedupe": bool(_parse_bool("dedupe", fields.get("dedupe"))),
        "callback_url": _check_callback_url(
            _text("callback_url", fields.get("callback_url"))
        ),
    }


async def _read_multipart(request: Request) -> FaxRequest:
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (ValueError, KeyError, AssertionError, StarletteHTTPException) as exc:
        raise _malformed(f"The multipart body cannot be parsed ({exc}).") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _malformed("The multipart field 'file' (the PDF) is missing.")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        options = _options(fields)
        if not options["filename"] and upload.filename:
            options["filename"] = upload.filename[:MAX_FILENAME]
        # The part sits in a spooled temporary file; this is the one in-memory copy.
        data = await upload.read()
    finally:
        await form.close()
    return FaxRequest(data=data, **options)


async def _read_json(request: Request) -> FaxRequest:
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(f"The body is not valid JSON ({exc}).") from None
    del raw
    if not isinstance(payload, dict):
        raise _malformed("The JSON body must be an object.")
    content = _text("content", payload.pop("content", None), required=True)
    options = _options(payload)
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(
            "'content' is not valid base64 (RFC 4648, padded, no line breaks)."
        ) from None
    return FaxRequest(data=data, **options)


async def _read_fax_request(request: Request) -> FaxRequest:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _read_multipart(request)
    if media == "application/json" or media.endswith("+json"):
        return await _read_json(request)
    raise Problem(
        415,
        "unsupported_media_type",
        f"Content-Type {media or '(none)'!r} is not accepted; send multipart/form-data "
        "(fields 'file' and 'to') or application/json ('content' in base64, 'to').",
    )


# -- responses -------------------------------------------------------------------


def _job_body(job: FaxJob, history: list[dict[str, Any]] | None = None) -> Any:
    body = job.public()
    body["links"] = {"self": f"{FAXES}/{job.id}"}
    if history is not None:
        body["history"] = history
    return body


def _accepted(job: FaxJob) -> JSONResponse:
    location = f"{FAXES}/{job.id}"
    if job.state == JobState.REJECTED:
        return problem_response(
            Problem(
                422,
                job.error_code or "not_pdf",
                job.error_message,
                headers={"Location": location},
                extra={"job_id": job.id, "job": _job_body(job)},
            )
        )
    return JSONResponse(_job_body(job), status_code=202, headers={"Location": location})


_POST_FAXES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "to"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "to": {"type": "string", "example": "+4930123456"},
                        "filename": {"type": "string"},
                        "flatten": {"type": "boolean"},
                        "dedupe": {"type": "boolean"},
                        "callback_url": {"type": "string", "format": "uri"},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["content", "to"],
                    "properties": {
                        "content": {"type": "string", "format": "byte"},
                        "to": {"type": "string", "example": "+4930123456"},
                        "filename": {"type": "string"},
                        "flatten": {"type": "boolean"},
                        "dedupe": {"type": "boolean"},
                        "callback_url": {"type": "string", "format": "uri"},
                    },
                }
            },
        },
    },
    "responses": {
        "202": {"description": "Accepted: the job, queued. Location names it."},
        "400": {"description": "Malformed request (problem+json)."},
        "401": {"description": "Missing or wrong bearer token."},
        "409": {"description": "Idempotency-Key reused for another request."},
        "413": {"description": "Body over the upload limit."},
        "415": {"description": "Neither multipart/form-data nor JSON."},
        "422": {"description": "Document or number rejected; job_id names the job."},
    },
}


# -- the app ---------------------------------------------------------------------


def create_app(settings: Settings) -> FastAPI:
    """The intake API for ``settings``; Redis and the broker open at start-up."""
    registry = CollectorRegistry(auto_describe=True)
    intake_requests = Counter(
        "faxd_intake_requests",
        "POST /v1/faxes requests by outcome (accepted, rejected or an error code).",
        labelnames=["outcome"],
        registry=registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore.from_settings(settings)
        services = Services(
            settings=settings,
            store=store,
            broker=make_broker(settings),
            registry=registry,
            intake_requests=intake_requests,
        )
        registry.register(StoreCollector(store))
        app.state.services = services
        if not settings.api_tokens:
            log.warning("api_tokens_missing", hint="set FAXD_API_TOKENS")
        try:
            yield
        finally:
            systemd.notify_stopping()
            services.close()

    app = FastAPI(
        title="faxd intake API",
        version="1",
        summary="Queue PDFs for fax delivery through sipgate and follow them.",
        lifespan=lifespan,
    )

    def count(scope: Scope, outcome: str) -> None:
        if scope.get("method") == "POST" and scope.get("path") == FAXES:
            intake_requests.labels(outcome=outcome).inc()

    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_pdf_bytes * 4 // 3 + BODY_MARGIN,
        on_refused=lambda scope: count(scope, "request_too_large"),
    )

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        count(request.scope, exc.code)
        return problem_response(exc)

    @app.exception_handler(FaxError)
    async def on_fax_error(request: Request, exc: FaxError) -> Response:
        problem = Problem.from_fax_error(exc)
        count(request.scope, problem.code)
        return problem_response(problem)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        problem = Problem(400, "request_invalid", where, extra={"errors": errors})
        count(request.scope, problem.code)
        return problem_response(problem)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "route_not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "request_malformed"
        )
        problem = Problem(exc.status_code, code, str(exc.detail), headers=exc.headers)
        return problem_response(problem)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        log.exception("api_unhandled_error", path=request.url.path)
        return problem_response(
            Problem(500, "internal_error", "faxd failed; the operator has the log.")
        )

    auth = [Depends(_authorize)]

    @app.post(
        FAXES,
        status_code=202,
        dependencies=auth,
        openapi_extra=_POST_FAXES_BODY,
        summary="Queue a PDF for fax delivery",
    )
    async def post_fax(request: Request, services: ServicesDep) -> Response:
        """Validate and queue a PDF; ``Idempotency-Key`` makes repeats safe."""
        fax = await _read_fax_request(request)
        key = request.headers.get("idempotency-key", "").strip()
        job = await run_in_threadpool(
            intake.submit,
            fax.data,
            fax.to,
            settings=services.settings,
            store=services.store,
            broker=services.broker,
            source="api",
            filename=fax.filename,
            flatten=fax.flatten,
            dedupe=fax.dedupe,
            idempotency_key=key,
            callback_url=fax.callback_url,
        )
        del fax
        count(
            request.scope, "rejected" if job.state == JobState.REJECTED else "accepted"
        )
        return _accepted(job)

    @app.get(FAXES, dependencies=auth, summary="List jobs, newest first")
    def list_faxes(
        services: ServicesDep,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[float | None, Query(description="next_cursor")] = None,
    ) -> Any:
        """A page of jobs; pass ``next_cursor`` back as ``cursor`` for the next."""
        jobs = services.store.list(state, limit=limit, before=cursor)
        next_cursor = None
        if len(jobs) == limit:
            last = jobs[-1]
            next_cursor = repr(last.created_at if state is None else last.updated_at)
        return {"items": [_job_body(j) for j in jobs], "next_cursor": next_cursor}

    @app.get(FAXES + "/{job_id}", dependencies=auth, summary="One job and its history")
    def get_fax(job_id: str, services: ServicesDep) -> Any:
        """The job (state, provider status, error) with its event history."""
        job = services.store.get(job_id)
        return _job_body(job, services.store.events(job_id))

    @app.delete(FAXES + "/{job_id}", dependencies=auth, summary="Cancel a job")
    def cancel_fax(job_id: str, services: ServicesDep) -> Any:
        """Cancel a job sipgate does not have yet; 409 once it was handed over."""
        job = intake.cancel(job_id, store=services.store, broker=services.broker)
        return _job_body(job)

    @app.post(
        FAXES + "/{job_id}/retry",
        status_code=202,
        dependencies=auth,
        summary="Send a failed or cancelled job again",
    )
    def retry_fax(job_id: str, services: ServicesDep) -> Response:
        """Queue the document of a failed or cancelled job as a new job."""
        job = intake.retry(
            job_id,
            settings=services.settings,
            store=services.store,
            broker=services.broker,
        )
        return _accepted(job)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Any:
        """Always 200 while the process serves requests."""
        return {"status": "ok"}

    @app.get("/readyz", summary="Redis answers and workers are alive")
    def readyz(services: ServicesDep) -> Response:
        """200 when Redis answers and a worker was seen lately; else 503 saying why."""
        checks: dict[str, Any] = {"redis": "ok", "workers": 0}
        try:
            services.store.ping()
            checks["workers"] = services.workers_seen()
        except (StoreError, redis.RedisError) as exc:
            checks["redis"] = f"unreachable ({type(exc).__name__})"
        ready = checks["redis"] == "ok" and checks["workers"] > 0
        status = 200 if ready else 503
        return JSONResponse({"ready": ready, **checks}, status_code=status)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics(services: ServicesDep) -> Response:
        """The faxd_* metrics in Prometheus text format."""
        return Response(
            generate_latest(services.registry), media_type=CONTENT_TYPE_LATEST
        )

    return app


def serve(settings: Settings, host: str, port: int) -> int:
    """Run the API with uvicorn until SIGINT/SIGTERM; returns the exit status."""
    faxlog.configure(
        settings.log_format, settings.log_level, secrets=faxlog.secrets_of(settings)
    )
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        callback_notify=systemd.uvicorn_ready,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
