"""The ``faxd`` command: thin adapters from argv to the core, and back to text or JSON.

Exit codes follow sysexits: 0 all good, 64 usage error, 65 a document or number
was rejected (or a job failed), 69 a service (Redis, sipgate) is unavailable,
78 a configuration error. With ``--json`` stdout carries only JSON objects, one per
line; logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from faxd import log as faxlog
from faxd.config import Settings
from faxd.errors import ConfigError, FaxError, StoreError, ValidationError

__all__ = ["main"]

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_CONFIG = 78


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    print(text, file=sys.stderr)


# -- validate ---------------------------------------------------------------


def _resolve_region(settings: Settings, region: str | None) -> str | None:
    if region is None:
        return settings.default_region
    merged = Settings.from_env({"FAXD_DEFAULT_REGION": region})
    return merged.default_region


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.numbers import to_e164
    from faxd.validation import validate_pdf

    region = _resolve_region(settings, args.region)
    flatten = True if args.flatten else None
    worst = EX_OK
    recipient: str | None = None
    number_error: ValidationError | None = None
    try:
        recipient = to_e164(args.to, region)
    except ValidationError as exc:
        number_error = exc
        worst = EX_DATAERR

    def report(result: dict[str, Any]) -> None:
        if args.json:
            _emit(result)
            return
        where = f"{result['file']}: " if "file" in result else ""
        if result["ok"]:
            pages = f", {result['pages']} page(s)" if result.get("pages") else ""
            flat = ", flattened" if result.get("flattened") else ""
            print(f"{where}ok: {result['recipient']}{pages}{flat}")
        else:
            print(f"{where}rejected [{result['code']}]: {result['message']}")

    base: dict[str, Any] = {
        "ok": number_error is None,
        "code": number_error.code if number_error else None,
        "message": number_error.message if number_error else "The number is valid.",
        "recipient": recipient,
        "pages": None,
        "sha256": None,
        "flattened": False,
    }
    if not args.files:
        report(base)
        return worst
    for name in args.files:
        result = dict(base, file=name)
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            result.update(
                ok=False,
                code="file_unreadable",
                message=f"Cannot read the file ({exc.strerror}); check the path.",
            )
            report(result)
            worst = max(worst, EX_USAGE) if worst != EX_DATAERR else worst
            continue
        try:
            doc = validate_pdf(data, settings, flatten=flatten)
        except ValidationError as exc:
            if number_error is None:
                result.update(ok=False, code=exc.code, message=exc.message)
            worst = EX_DATAERR
        else:
            result.update(pages=doc.pages, sha256=doc.sha256, flattened=doc.flattened)
            if number_error is None:
                result["message"] = "The document can be faxed."
        report(result)
    return worst


# -- jobs ---------------------------------------------------------------------


@contextmanager
def _services(settings: Settings) -> Iterator[tuple[Any, Any]]:
    from faxd.jobs import JobStore
    from faxd.queue import make_broker

    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    try:
        store.ping()
        yield store, broker
    finally:
        broker.close()
        store.close()


def _job_line(job: Any) -> str:
    parts = [job.id, str(job.state)]
    if job.provider_status:
        parts.append(job.provider_status)
    if job.error_code:
        parts.append(f"[{job.error_code}] {job.error_message}")
    return "  ".join(parts)


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.intake import submit

    region = _resolve_region(settings, args.region)
    worst = EX_OK
    with _services(settings) as (store, broker):
        for name in args.files:
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                out = {
                    "file": name,
                    "id": None,
                    "state": None,
                    "code": "file_unreadable",
                    "message": f"Cannot read the file ({exc.strerror}).",
                }
                _emit(out) if args.json else _err(f"{name}: {out['message']}")
                worst = max(worst, EX_USAGE)
                continue
            job = submit(
                data,
                args.to,
                settings=settings,
                store=store,
                broker=broker,
                source="cli",
                filename=Path(name).name,
                region=region,
                flatten=True if args.flatten else None,
                dedupe=args.dedupe,
                idempotency_key=args.idempotency_key or "",
            )
            if str(job.state) == "rejected":
                worst = EX_DATAERR
            if args.json:
                _emit({"file": name, **_status_obj(job, None)})
            else:
                print(f"{name}: {_job_line(job)}")
    return worst


def _status_obj(job: Any, events: list[dict[str, Any]] | None) -> dict[str, Any]:
    data = job.public()
    out = {
        "id": job.id,
        "state": str(job.state),
        "provider_status": job.provider_status or None,
        "code": job.error_code or None,
        "message": job.error_message or None,
        "recipient": job.recipient,
        "pages": job.pages,
        "sha256": job.sha256,
        "session_id": job.session_id or None,
        "created": data["created"],
        "updated": data["updated"],
    }
    if events is not None:
        out["events"] = events
    return out


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with _services(settings) as (store, _broker):
        printed: dict[str, str] = {}
        while True:
            jobs = []
            for job_id in args.ids:
                try:
                    jobs.append(store.get(job_id))
                except StoreError as exc:
                    if exc.code != "job_not_found":
                        raise
                    if printed.get(job_id) != "missing":
                        out = {"id": job_id, "state": None, "code": exc.code}
                        out["message"] = exc.message
                        _emit(out) if args.json else _err(exc.message)
                        printed[job_id] = "missing"
            for job in jobs:
                key = f"{job.state}/{job.provider_status}/{job.updated_at}"
                if printed.get(job.id) == key:
                    continue
                printed[job.id] = key
                if args.json:
                    _emit(_status_obj(job, store.events(job.id)))
                else:
                    print(_job_line(job))
                    if not args.watch:
                        for e in store.events(job.id):
                            print(f"    {e['at']}  {e['event']}  -> {e['state']}")
            if not args.watch or all(j.is_final for j in jobs):
                missing = any(v == "missing" for v in printed.values())
                failed = any(str(j.state) in ("failed", "rejected") for j in jobs)
                return EX_DATAERR if (missing or failed) else EX_OK
            store.follow("$", block_ms=1000)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.jobs import JobState

    state = JobState(args.state) if args.state else None
    with _services(settings) as (store, _broker):
        for job in store.list(state, limit=args.limit):
            _emit(_status_obj(job, None)) if args.json else print(_job_line(job))
    return EX_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.intake import cancel

    with _services(settings) as (store, broker):
        job = cancel(args.id, store=store, broker=broker)
        _emit(_status_obj(job, None)) if args.json else print(_job_line(job))
    return EX_OK


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.intake import retry

    with _services(settings) as (store, broker):
        job = retry(args.id, settings=settings, store=store, broker=broker)
        _emit(_status_obj(job, None)) if args.json else print(_job_line(job))
    return EX_OK


# -- processes ----------------------------------------------------------------


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.supervisor import run_workers

    return run_workers(args)


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.api import serve

    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    return serve(settings, host, port)


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from watch_inbox import main_run

    return main_run(settings, Path(args.folder) if args.folder else None, args.poll)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.doctor import main as doctor_main

    return doctor_main(settings, json=args.json)


def cmd_sandbox(argv: list[str]) -> int:
    from faxd import sandbox

    return sandbox.main(argv)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from faxd.supervisor import run

    return run(settings, args)


# -- wiring -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="faxd", description="Fax delivery queue for sipgate.")
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="log lines on stderr: JSON (default when not a terminal) or console "
        "(FAXD_LOG_FORMAT)",
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="FAXD_LOG_LEVEL, default INFO",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("validate", help="check documents and a recipient number")
    v.add_argument("--to", required=True, help="recipient fax number")
    v.add_argument("--region", help="default region such as DE, or 'none'")
    v.add_argument("--flatten", action="store_true", help="flatten AcroForm forms")
    v.add_argument("--json", action="store_true", help="one JSON object per line")
    v.add_argument("files", nargs="*", metavar="FILE")

    s = sub.add_parser("send", help="validate and queue PDFs for a number")
    s.add_argument("--to", required=True)
    s.add_argument("--region")
    s.add_argument("--flatten", action="store_true")
    s.add_argument("--dedupe", action="store_true", help="reuse an unfinished job")
    s.add_argument("--idempotency-key", help="the same key returns the same job")
    s.add_argument("--json", action="store_true")
    s.add_argument("files", nargs="+", metavar="FILE")

    st = sub.add_parser("status", help="show jobs and their history")
    st.add_argument("--json", action="store_true")
    st.add_argument("--watch", action="store_true", help="follow until all are final")
    st.add_argument("ids", nargs="+", metavar="ID")

    ls = sub.add_parser("list", help="list jobs, newest first")
    ls.add_argument("--state")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")

    c = sub.add_parser("cancel", help="cancel a job not yet handed to sipgate")
    c.add_argument("--json", action="store_true")
    c.add_argument("id", metavar="ID")

    r = sub.add_parser("retry", help="send a failed job's document again")
    r.add_argument("--json", action="store_true")
    r.add_argument("id", metavar="ID")

    w = sub.add_parser("worker", help="run the dramatiq workers")
    w.add_argument("--processes", type=int, default=1)
    w.add_argument("--threads", type=int, default=8)
    w.add_argument("--shutdown-timeout", type=float, default=30.0)

    a = sub.add_parser("api", help="serve the HTTP intake API (uvicorn)")
    a.add_argument("--host", help="FAXD_API_HOST, default 127.0.0.1")
    a.add_argument("--port", type=int, help="FAXD_API_PORT, default 8025")

    wa = sub.add_parser("watch", help="watch a hot folder and send what is dropped")
    wa.add_argument("--folder", help="FAXD_HOTFOLDER")
    wa.add_argument("--poll", action="store_true", help="poll (network filesystems)")

    d = sub.add_parser("doctor", help="check the configuration end to end")
    d.add_argument("--json", action="store_true")

    sub.add_parser("sandbox", help="run the sipgate-compatible sandbox", add_help=False)

    run = sub.add_parser("run", help="run everything on this box")
    run.add_argument("--demo", action="store_true", help="send a demo fax at start")
    run.add_argument("--processes", type=int, default=1)
    run.add_argument("--threads", type=int, default=8)
    return p


COMMANDS = {
    "validate": cmd_validate,
    "send": cmd_send,
    "status": cmd_status,
    "list": cmd_list,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "worker": cmd_worker,
    "api": cmd_api,
    "watch": cmd_watch,
    "doctor": cmd_doctor,
    "run": cmd_run,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `faxd sandbox ...` owns its own flags.
    rest = [a for a in argv if not a.startswith("--log")]
    if rest and rest[0] == "sandbox":
        return cmd_sandbox(rest[1:])
    args = build_parser().parse_args(argv)
    # Flags win over the environment, here and in the processes faxd starts.
    if args.log_format:
        os.environ["FAXD_LOG_FORMAT"] = args.log_format
    if args.log_level:
        os.environ["FAXD_LOG_LEVEL"] = args.log_level
    try:
        settings = Settings.from_env()
        faxlog.configure(
            settings.log_format, settings.log_level, secrets=faxlog.secrets_of(settings)
        )
        if getattr(args, "region", None) is not None:
            _resolve_region(settings, args.region)
        return COMMANDS[args.command](args, settings)
    except ConfigError as exc:
        faxlog.configure()
        _err(f"faxd: configuration error: {exc.message}")
        return EX_USAGE if getattr(args, "region", None) else EX_CONFIG
    except StoreError as exc:
        _err(f"faxd: {exc.message}")
        return EX_DATAERR if exc.code == "job_not_found" else EX_UNAVAILABLE
    except FaxError as exc:
        if getattr(args, "json", False):
            _emit({"code": exc.code, "message": exc.message})
        _err(f"faxd: [{exc.code}] {exc.message}")
        return EX_DATAERR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
