"""Pure PDF checks: is this upload a document faxd may send, and how many pages is it?

This module owns :func:`validate_pdf`, the one verdict on a document's bytes, and the
:class:`Document` it returns. It reads bytes and nothing else: no Redis, no HTTP, no
file writes, and it never modifies its input (:func:`validate_file` only reads).

How a verdict is reached, cheapest check first, stopping at the first refusal:

1. In the calling process: empty file, size over ``settings.max_pdf_bytes``, then the
   MIME type libmagic finds in the first :data:`MAGIC_PROBE_BYTES` bytes (only that
   slice is copied). A file whose ``%PDF-`` header sits after leading junk, or where
   libmagic and the header disagree, is ``pdf_corrupt`` (viewers tolerate junk, fax
   converters need not); any other non-``application/pdf`` type is ``not_pdf``.
2. In a forked child with ``RLIMIT_CPU``, ``RLIMIT_AS`` and a wall-clock deadline
   (``validate_cpu_s``, ``validate_memory_bytes``, ``validate_timeout_s``): pypdf in
   strict mode opens the file; then encryption, the page count (walking the page tree),
   the decoding of every page's content streams, damage warnings, signatures, XFA and
   form fields are checked in that order. The bytes reach the child by fork inheritance
   (copy-on-write, never pickled) and the verdict comes back over a pipe as JSON, so a
   decompression bomb, a runaway parser or a crash costs one rejected file, never the
   service. The memory limit is a budget on top of what the child inherited from its
   parent (a threaded service maps a lot of address space it will never touch). The
   child only parses and leaves with ``os._exit``; nothing it does can reach the
   parent's state. Each call forks its own child, so callers may validate from several
   threads at once.

Decisions:

- **Parser errors.** Any exception pypdf raises (not only ``PdfReadError``: also
  ``UnicodeDecodeError``, ``KeyError``, ``ValueError``...) is ``pdf_corrupt`` with the
  parser's reason, shortened and scrubbed of document bytes. pypdf's own resource
  limits (``LimitReachedError``), ``RecursionError``, ``MemoryError`` and a child killed
  by the CPU, memory or wall-clock limit are ``pdf_too_complex``. A page-tree loop is
  detected by pypdf ("cyclic page references") and reported as ``pdf_corrupt``.
- **Warnings that mean damage.** pypdf logs some repairs even in strict mode. A warning
  matching :data:`DAMAGE_WARNINGS` (broken or rebuilt xref, truncation, missing
  ``%%EOF``, objects not found, early end of data) makes the file ``pdf_corrupt``.
  Others (e.g. "Xref table not zero-indexed", written by pdfTeX and Acrobat for good
  files) are cosmetic and ignored. All warnings stay inside the child.
- **Encryption.** A file that does not open with the empty password is
  ``pdf_encrypted``, as is one using a security handler pypdf cannot open (e.g.
  certificate encryption). A file that opens without a password (owner password only,
  or both empty) but whose permissions forbid printing is ``pdf_print_restricted``.
  One that opens without a password and allows printing is **accepted** and faxed
  unchanged: anyone can open and print it, and a fax is a print.
- **Signed files.** A digitally signed PDF (a signature field with a value, or
  ``/SigFlags`` saying signatures exist) is refused as ``pdf_signed``, before any form
  check and even with flattening on: a fax cannot carry the signature, so the recipient
  would get an unverifiable copy without the sender noticing, and flattening would break
  the signature. Sending an unsigned (printed-to-PDF) copy is the sender's conscious
  choice. Empty signature fields alone are not a form.
- **Forms.** A form is an ``/AcroForm`` with at least one real field in its field tree
  (an empty ``/Fields`` overlay is not a form). Dynamic XFA (``NeedsRendering`` or XFA
  without AcroForm fields) is always ``pdf_has_xfa``. Otherwise a form is
  ``pdf_has_form`` unless flattening is on: then the field values are burnt into the
  page content with pypdf, the widgets, ``/AcroForm`` and XFA are removed, and the
  flattened copy is parsed again in the same child before it is returned.
- **Pages** are counted by walking the page tree, never from ``/Count``.

:func:`validate_pdf` raises :class:`~faxd.errors.ValidationError` for every refusal.
``OSError`` from ``fork``/``pipe`` and ``RuntimeError`` (the child could not set its
limits) escape: those are our host's failures, not the caller's.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import resource
import select
import signal
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import magic
import pypdf
import pypdf.filters  # imported in the parent so forked children never import
from pypdf import PdfReader, PdfWriter
from pypdf.constants import UserAccessPermissions
from pypdf.errors import DependencyError, LimitReachedError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    EncodedStreamObject,
    IndirectObject,
    StreamObject,
)

from faxd.config import Settings
from faxd.errors import ValidationError

__all__ = [
    "DAMAGE_WARNINGS",
    "MAGIC_PROBE_BYTES",
    "Document",
    "validate_file",
    "validate_pdf",
]

#: libmagic sees only this prefix: enough for every format it tells apart here, and a
#: 20 MB upload is never copied for it.
MAGIC_PROBE_BYTES = 8192
#: Where viewers still look for a late ``%PDF-`` header (after leading junk).
HEADER_SEARCH_BYTES = 1024
#: pypdf warnings that mean the file is damaged, even though strict mode went on.
DAMAGE_WARNINGS = re.compile(
    r"xref(?!.*zero-indexed)|startxref|EOF marker (not found|seems truncated)"
    r"|truncat|repair|rebuil|not defined|wrong pointing|invalid (object number|stream"
    r"|/N|root|parent)|root found|trailer cannot|stream length not defined|\bEOD\b"
    r"|might be wrong|not a stream or an array|page tree entry|cannot find page"
    r"|ended unexpectedly",
    re.IGNORECASE,
)
#: Longest parser reason quoted in a message.
REASON_MAX_CHARS = 120
#: Field-tree nodes visited at most (pypdf bounds arrays too; this bounds the walk).
FIELD_WALK_LIMIT = 100_000
_SIG_FLAGS_SIGNATURES_EXIST = 1
_CHILD_FAILED = 70  # exit status of a child that could not even report
_FRAME = struct.Struct("!QQ")  # header length, payload length
_QUOTED = re.compile(r"b?(['\"])(.*?)\1")
_PDF_KEYWORDS = frozenset(
    {
        "%PDF-",
        "%%EOF",
        "endobj",
        "endstream",
        "obj",
        "startxref",
        "stream",
        "trailer",
        "xref",
    }
)
_READ_CHUNK = 1 << 16  # a pipe's capacity


@dataclass(frozen=True, slots=True)
class Document:
    """A PDF that passed validation: the bytes to fax and what faxd knows about them."""

    pdf: bytes = field(repr=False)  # the bytes to fax (flattened copy if flattened)
    pages: int  # real pages, counted by walking the page tree
    size: int  # len(pdf)
    sha256: str  # hex sha256 of `pdf`, the bytes that will be faxed
    source_sha256: str  # hex sha256 of the input bytes (equals sha256 unless flattened)
    flattened: bool


def validate_file(
    path: str | os.PathLike[str], settings: Settings, flatten: bool | None = None
) -> Document:
    """Read ``path`` (read-only, never moved or changed) and :func:`validate_pdf` it."""
    size = os.stat(path).st_size
    if size > settings.max_pdf_bytes:
        raise _too_large(size, settings)
    return validate_pdf(Path(path).read_bytes(), settings, flatten=flatten)


def validate_pdf(
    data: bytes, settings: Settings, *, flatten: bool | None = None
) -> Document:
    """Check ``data`` and return the :class:`Document` to fax, or raise ValidationError.

    ``flatten=None`` follows ``settings.flatten_forms``.
    """
    do_flatten = settings.flatten_forms if flatten is None else flatten
    _check_envelope(data, settings)
    header, payload = _run_in_child(data, do_flatten, settings)
    if "code" in header:
        raise ValidationError(str(header["message"]), str(header["code"]))
    source_sha256 = hashlib.sha256(data).hexdigest()
    if header["flattened"]:
        pdf = payload
        sha256 = hashlib.sha256(pdf).hexdigest()
    else:
        pdf, sha256 = data, source_sha256
    return Document(
        pdf=pdf,
        pages=int(header["pages"]),
        size=len(pdf),
        sha256=sha256,
        source_sha256=source_sha256,
        flattened=bool(header["flattened"]),
    )


# --- checks in the calling process ---------------------------------------------------


def _too_large(size: int, settings: Settings) -> ValidationError:
    return ValidationError(
        f"The file is {size} bytes, more than the {settings.max_pdf_bytes} bytes faxd "
        "accepts; send a smaller PDF.",
        "pdf_too_large",
    )


def _check_envelope(data: bytes, settings: Settings) -> None:
    if not data:
        raise ValidationError(
            "The file is empty; send the PDF again once it is completely written.",
            "empty_file",
        )
    if len(data) > settings.max_pdf_bytes:
        raise _too_large(len(data), settings)
    head = data[:MAGIC_PROBE_BYTES]  # slicing copies the prefix only
    mime = magic.from_buffer(head, mime=True)
    starts_as_pdf = head.startswith(b"%PDF-")
    if mime == "application/pdf" and starts_as_pdf:
        return
    offset = head.find(b"%PDF-", 0, HEADER_SEARCH_BYTES)
    if offset > 0:
        raise ValidationError(
            f"The file has {offset} bytes of junk before its %PDF header; send the PDF "
            "exactly as the program that made it wrote it.",
            "pdf_corrupt",
        )
    if mime == "application/pdf" or starts_as_pdf:  # libmagic and header disagree
        raise ValidationError(
            f"The file looks like a PDF but its header is damaged (libmagic says "
            f"{mime}); send an intact copy, e.g. export or print it to PDF again.",
            "pdf_corrupt",
        )
    raise ValidationError(
        f"The file is not a PDF (libmagic says {mime}); convert it to PDF and send it "
        "again.",
        "not_pdf",
    )


# --- the child process ---------------------------------------------------------------


def _run_in_child(
    data: bytes, flatten: bool, settings: Settings
) -> tuple[dict[str, Any], bytes]:
    """Fork, inspect ``data`` under limits in the child, return (header, payload)."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: parse, report, leave without running any parent code
        status = _CHILD_FAILED
        try:
            os.close(read_fd)
            try:
                _limit_child(settings)
            except OSError as exc:  # our host's fault, not the document's
                _send(write_fd, {"internal": f"setting limits failed: {exc}"}, b"")
            else:
                header, payload = _inspect_guarded(data, flatten, settings.max_pages)
                _send(write_fd, header, payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        answer = _receive(read_fd, time.monotonic() + settings.validate_timeout_s)
    except BaseException:  # interrupted: leave no child behind
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    if answer is None:
        _kill(pid)
        raise ValidationError(
            f"Checking the PDF took longer than {settings.validate_timeout_s:g} s, "
            "faxd's limit; send a simpler PDF (e.g. printed to PDF again).",
            "pdf_too_complex",
        )
    exit_status = _reap(pid)
    if not answer:
        raise ValidationError(_death_message(exit_status, settings), "pdf_too_complex")
    header, payload = answer
    if "internal" in header:
        raise RuntimeError(f"PDF validation child failed: {header['internal']}")
    return header, payload


def _limit_child(settings: Settings) -> None:
    cpu = max(1, math.ceil(settings.validate_cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write files
    # The budget comes on top of the address space inherited from the parent: a
    # threaded service maps far more than it touches (thread stacks, malloc arenas).
    with open("/proc/self/statm", "rb") as statm:
        inherited = int(statm.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = inherited + settings.validate_memory_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)


def _send(fd: int, header: dict[str, Any], payload: bytes) -> None:
    encoded = json.dumps(header).encode()
    _write_all(fd, _FRAME.pack(len(encoded), len(payload)) + encoded)
    _write_all(fd, payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(
    fd: int, deadline: float
) -> tuple[dict[str, Any], bytes] | tuple[()] | None:
    """Read the child's framed answer: (header, payload); () if the child died first;
    None when the wall-clock deadline passed.

    The frame says how long the answer is, so a sibling child forked by another thread
    (which inherits our pipe's write end) cannot keep us waiting for EOF.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    received = bytearray()
    expected: int | None = None
    while expected is None or len(received) < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            return None
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            return ()  # the child died before finishing its answer
        received += chunk
        if expected is None and len(received) >= _FRAME.size:
            header_len, payload_len = _FRAME.unpack_from(received)
            expected = _FRAME.size + header_len + payload_len
    start = _FRAME.size + header_len
    view = memoryview(received)
    header = json.loads(bytes(view[_FRAME.size : start]))
    payload = bytes(view[start:expected])
    view.release()
    return header, payload


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> int | None:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:  # someone else reaped it (SIGCHLD ignored)
        return None


def _death_message(status: int | None, settings: Settings) -> str:
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return (
                f"Checking the PDF needed more than {settings.validate_cpu_s:g} s of "
                "CPU, faxd's limit; send a simpler PDF (e.g. printed to PDF again)."
            )
        if sig == signal.SIGKILL:  # the hard CPU limit or the kernel's OOM killer
            return (
                "Checking the PDF needed more CPU or memory than faxd allows; send a "
                "simpler PDF (e.g. printed to PDF again)."
            )
    return (
        "The PDF parser gave up on this file (it ran out of memory or crashed); send "
        "a simpler PDF (e.g. printed to PDF again)."
    )


# --- inside the child ----------------------------------------------------------------


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _WarningLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _inspect_guarded(
    data: bytes, flatten: bool, max_pages: int
) -> tuple[dict[str, Any], bytes]:
    """Run :func:`_inspect`, turning every failure into a refusal header."""
    log = _WarningLog()
    pypdf_logger = logging.getLogger("pypdf")
    pypdf_logger.handlers = [log]  # we are a forked copy: the parent keeps its own
    pypdf_logger.propagate = False
    pypdf_logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                pages, flattened, payload = _inspect(data, flatten, max_pages, log)
            finally:
                log.messages.extend(str(w.message) for w in caught)
            _refuse_damage(log)
    except _Refusal as refusal:
        return {"code": refusal.code, "message": refusal.message}, b""
    except (LimitReachedError, RecursionError, MemoryError) as exc:
        return {
            "code": "pdf_too_complex",
            "message": f"The PDF is too complex to check safely ({_reason(exc)}); "
            "send a simpler PDF (e.g. printed to PDF again).",
        }, b""
    except Exception as exc:  # the parser boundary: any failure means a bad file
        return {"code": "pdf_corrupt", "message": _corrupt_message(_reason(exc))}, b""
    return {"pages": pages, "flattened": flattened}, payload


def _inspect(
    data: bytes, flatten: bool, max_pages: int, log: _WarningLog
) -> tuple[int, bool, bytes]:
    reader = PdfReader(io.BytesIO(data), strict=True)
    _check_encryption(reader)
    pages = _count_pages(reader, max_pages)
    for page in reader.pages:
        _decode_contents(page)
    _refuse_damage(log)  # before form checks: a damaged form is damaged first
    acro_form = _resolve(reader.root_object.get("/AcroForm"))
    if not isinstance(acro_form, DictionaryObject):
        return pages, False, b""
    fields, signed = _walk_fields(acro_form)
    sig_flags = acro_form.get("/SigFlags", 0)
    if signed or (
        isinstance(sig_flags, int) and sig_flags & _SIG_FLAGS_SIGNATURES_EXIST
    ):
        raise _Refusal(
            "pdf_signed",
            "The PDF is digitally signed and a fax cannot carry the signature; send an "
            "unsigned copy (e.g. printed to PDF) if a paper copy is what you mean.",
        )
    has_xfa = "/XFA" in acro_form
    needs_rendering = reader.root_object.get("/NeedsRendering", False) is True
    if has_xfa and (needs_rendering or fields == 0):
        raise _Refusal(
            "pdf_has_xfa",
            "The PDF is a dynamic XFA form that only Adobe software can render; open "
            "it there, print it to PDF and send that.",
        )
    if fields == 0 and not has_xfa:
        return pages, False, b""  # an empty /Fields overlay is not a form
    if not flatten:
        raise _Refusal(
            "pdf_has_form",
            f"The PDF is a fillable form ({fields} fields) that would be faxed "
            "unfilled or cut off; print it to PDF to flatten it and send that.",
        )
    return pages, True, _flatten_form(reader, pages)


def _check_encryption(reader: PdfReader) -> None:
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")
    except (NotImplementedError, DependencyError) as exc:  # e.g. certificate security
        raise _Refusal(
            "pdf_encrypted",
            f"The file is encrypted in a way faxd cannot open ({_reason(exc)}); send "
            "an unprotected PDF.",
        ) from exc
    if not opened:
        raise _Refusal(
            "pdf_encrypted",
            "The file is encrypted with a password; send an unprotected PDF.",
        )
    permissions = reader.user_access_permissions
    if permissions is not None and UserAccessPermissions.PRINT not in permissions:
        raise _Refusal(
            "pdf_print_restricted",
            "The PDF's owner forbids printing it, so it cannot be faxed; send a copy "
            "without that restriction.",
        )


def _count_pages(reader: PdfReader, max_pages: int) -> int:
    pages = len(reader.pages)  # walks the page tree once decrypted; never /Count
    if pages == 0:
        raise _Refusal(
            "pdf_no_pages", "The PDF has no pages; send a PDF with at least one page."
        )
    if pages > max_pages:
        raise _Refusal(
            "too_many_pages",
            f"The PDF has {pages} pages, more than the {max_pages} faxd sends in one "
            "fax; split it into smaller PDFs.",
        )
    return pages


def _decode_contents(page: pypdf.PageObject) -> None:
    page.mediabox  # noqa: B018 -- a page without a usable media box is damaged
    contents = _resolve(page.get("/Contents"))
    if contents is None:
        return  # a blank page is allowed
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    for item in streams:
        stream = _resolve(item)
        if not isinstance(stream, StreamObject):
            raise _Refusal(
                "pdf_corrupt",
                _corrupt_message("a page's content is not a stream"),
            )
        if isinstance(stream, EncodedStreamObject):  # not get_data(): that caches
            pypdf.filters.decode_stream_data(stream)


def _walk_fields(acro_form: DictionaryObject) -> tuple[int, bool]:
    """Count terminal non-signature fields; say whether a signature field is filled."""
    fields_entry = _resolve(acro_form.get("/Fields"))
    if not isinstance(fields_entry, ArrayObject):
        return 0, False
    stack: list[tuple[Any, Any]] = [(item, None) for item in fields_entry]
    seen: set[int] = set()
    count, signed, visited = 0, False, 0
    while stack:
        visited += 1
        if visited > FIELD_WALK_LIMIT:
            raise LimitReachedError("form field tree too large")
        item, inherited_type = stack.pop()
        if isinstance(item, IndirectObject):
            if item.idnum in seen:
                continue  # a loop in the field tree
            seen.add(item.idnum)
        node = _resolve(item)
        if not isinstance(node, DictionaryObject):
            continue
        field_type = node.get("/FT", inherited_type)
        kids = _resolve(node.get("/Kids"))
        child_fields = (
            [k for k in kids if "/T" in _as_dict(k)]
            if isinstance(kids, ArrayObject)
            else []
        )
        if child_fields:
            stack.extend((kid, field_type) for kid in child_fields)
        elif field_type == "/Sig":
            signed = signed or "/V" in node
        else:
            count += 1
    return count, signed


def _flatten_form(reader: PdfReader, pages: int) -> bytes:
    """Burn field values into the pages, drop widgets and the form, check the copy."""
    writer = PdfWriter(clone_from=reader)
    values: dict[str, str | list[str] | tuple[str, str, float]] = {}
    for name, info in (reader.get_fields() or {}).items():
        if info.get("/FT") == "/Btn":
            values[name] = str(info.get("/V") or "/Off")
        else:
            values[name] = None  # type: ignore[assignment]  # None keeps the value
    for page in writer.pages:
        if "/Annots" in page:
            writer.update_page_form_field_values(
                page, values, auto_regenerate=False, flatten=True
            )
    writer.remove_annotations(subtypes="/Widget")
    root = writer.root_object
    for key in ("/AcroForm", "/NeedsRendering"):
        if key in root:
            del root[key]
    out = io.BytesIO()
    writer.write(out)
    flat = out.getvalue()
    again = PdfReader(io.BytesIO(flat), strict=True)
    if len(again.pages) != pages or "/AcroForm" in again.root_object:
        raise _Refusal(
            "pdf_has_form",
            "The PDF is a fillable form faxd could not flatten; print it to PDF to "
            "flatten it and send that.",
        )
    for page in again.pages:
        _decode_contents(page)
    return flat


def _refuse_damage(log: _WarningLog) -> None:
    for message in log.messages:
        if DAMAGE_WARNINGS.search(message):
            raise _Refusal("pdf_corrupt", _corrupt_message(_scrub(message)))


def _resolve(obj: Any) -> Any:
    return obj.get_object() if isinstance(obj, IndirectObject) else obj


def _as_dict(obj: Any) -> DictionaryObject:
    resolved = _resolve(obj)
    return resolved if isinstance(resolved, DictionaryObject) else DictionaryObject()


def _corrupt_message(reason: str) -> str:
    return (
        f"The PDF is damaged ({reason}); send an intact copy, e.g. export or print it "
        "to PDF again."
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "it needs more memory than faxd allows"
    if isinstance(exc, RecursionError):
        return "its objects nest too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"undecodable bytes at offset {exc.start}"
    text = str(exc)
    if text.startswith("PDF starts with"):
        return "the file does not start with %PDF-"
    return _scrub(text) or type(exc).__name__


def _scrub(text: str) -> str:
    """One short line of the parser's reason, without document content.

    Parser messages put details after " (" or ": " and quote bytes of the file; the
    details are cut and quotes other than PDF keywords are blanked.
    """
    stripped = text.strip()
    line = stripped.splitlines()[0] if stripped else ""
    line = re.split(r"\s\(|:\s", line, maxsplit=1)[0]
    line = _QUOTED.sub(
        lambda m: m.group(0) if m.group(2) in _PDF_KEYWORDS else "'…'", line
    )
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    if len(line) > REASON_MAX_CHARS:
        line = line[: REASON_MAX_CHARS - 1] + "…"
    return line.rstrip(".")
