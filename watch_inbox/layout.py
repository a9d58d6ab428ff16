"""The hot folder on disk: its directories, which files count, and who the fax is for.

This module owns the folder's shape (``inbox/``, ``sent/``, ``failed/``,
``rejected/`` and the private ``.work/``), the rules that decide whether a name in the
inbox is a document to take, the recipient rules (sidecar, subfolder, file name, in
that order) and the one no-overwrite move used for every result. It touches only the
file system; Redis and intake belong to :mod:`watch_inbox.ledger` and
:mod:`watch_inbox.watcher`.

Which files are taken
    Only ``*.pdf`` (any case) directly in ``inbox/`` or in one level of subfolder
    ``inbox/<number>/``. Hidden names (a leading ``.``, which covers ``.~lock``
    files), Office owner files (``~$*``) and partial downloads (``*.part``,
    ``*.tmp``, ``*.crdownload``, ``*.partial``, ``*.swp``) are skipped silently. A
    sidecar ``NAME.json`` is never a document. Any other file (``.docx``, ``.tif``...)
    is left where it is with one ``file_ignored`` log line: faxd cannot turn it into
    a fax, and moving it to ``rejected/`` would take away a file the sender may be
    about to rename to ``.pdf``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faxd.errors import ValidationError

__all__ = [
    "FAILED",
    "INBOX",
    "REJECTED",
    "SENT",
    "WORK",
    "Folder",
    "Recipient",
    "is_candidate",
    "link_no_clobber",
    "recipient_for",
    "sidecar_name",
]

INBOX = "inbox"
SENT = "sent"
FAILED = "failed"
REJECTED = "rejected"
WORK = ".work"
#: A file in ``.work/`` naming this folder for the ledger (see ``Folder.identity``).
IDENTITY_FILE = "folder-id"

_TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".swp", ".download")
#: What a number typed into a file or folder name may look like before ``to_e164``
#: judges it: digits with the separators people use, optionally a leading ``+``.
_NUMBER_LIKE = re.compile(r"^\+?[0-9][0-9 ().-]*$")
#: More than one clash suffix per name in a folder means something is looping.
_MAX_SUFFIX = 10_000


@dataclass(frozen=True, slots=True)
class Folder:
    """The directories of one hot folder."""

    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / INBOX

    @property
    def work(self) -> Path:
        return self.root / WORK

    def outcome(self, name: str) -> Path:
        return self.root / name

    def create(self) -> None:
        """Create the folder and its directories if missing."""
        for sub in (INBOX, SENT, FAILED, REJECTED, WORK):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def identity(self) -> str:
        """A stable id for this folder, shared by every watcher that mounts it.

        Kept in ``.work/folder-id`` (created once, exclusively), so watchers on
        several hosts agree on the ledger even when they mount the folder at
        different paths.
        """
        path = self.work / IDENTITY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            text = path.read_text().strip()
            if text:
                return text
            # A watcher died between creating and writing it: nobody used it yet.
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as out:
            ident = uuid.uuid4().hex
            out.write(ident + "\n")
        return path.read_text().strip()

    def claim_dir(self, claim_id: str) -> Path:
        return self.work / claim_id


def sidecar_name(pdf_name: str) -> str:
    """``invoice.pdf`` -> ``invoice.json``."""
    return Path(pdf_name).stem + ".json"


def is_temporary(name: str) -> bool:
    """Hidden, lock, Office owner and partial-download names: never looked at."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(_TEMP_SUFFIXES)


def is_candidate(rel: Path) -> bool | None:
    """True for a document to take, False to skip silently, None to skip and log.

    ``rel`` is relative to ``inbox/``: ``x.pdf`` or ``<number>/x.pdf``.
    """
    parts = rel.parts
    if not parts or any(is_temporary(p) for p in parts):
        return False
    if len(parts) > 2:
        return None  # deeper than inbox/<number>/: not a layout we know
    suffix = rel.suffix.lower()
    if suffix == ".pdf":
        return True
    if suffix == ".json":
        return False  # a sidecar (or its orphan): read with its PDF
    return None


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where a number came from, and what the sidecar asked for besides."""

    to: str
    source: str  # "sidecar", "subfolder" or "filename"
    flatten: bool | None = None
    callback_url: str = ""


def _number_in(text: str) -> str | None:
    text = text.strip()
    return text if _NUMBER_LIKE.match(text) and any(c.isdigit() for c in text) else None


def recipient_for(rel: Path, sidecar: dict[str, Any] | None) -> Recipient | None:
    """The recipient of ``inbox/rel``: sidecar ``to``, subfolder, then file name.

    Returns None when none of them names a number. Only the number's *shape* is
    checked here; :func:`faxd.intake.submit` decides whether it is a valid one.
    """
    flatten: bool | None = None
    callback_url = ""
    if sidecar is not None:
        raw_flatten = sidecar.get("flatten")
        flatten = raw_flatten if isinstance(raw_flatten, bool) else None
        raw_cb = sidecar.get("callback_url")
        callback_url = raw_cb if isinstance(raw_cb, str) else ""
        to = sidecar.get("to")
        if isinstance(to, str) and to.strip():
            return Recipient(to.strip(), "sidecar", flatten, callback_url)
    if len(rel.parts) == 2:
        number = _number_in(rel.parts[0])
        if number:
            return Recipient(number, "subfolder", flatten, callback_url)
    stem = Path(rel.name).stem
    number = _number_in(stem.split("_", 1)[0])  # the whole stem when there is no _
    if number:
        return Recipient(number, "filename", flatten, callback_url)
    return None


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's JSON object, None when there is none; ValidationError if bad."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(
            f"The sidecar {path.name} is not valid JSON ({exc.__class__.__name__}); "
            'write it as {"to": "+49..."} before the PDF.',
            "sidecar_invalid",
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(
            f"The sidecar {path.name} must hold a JSON object such as "
            '{"to": "+49..."}.',
            "sidecar_invalid",
        )
    return data


def link_no_clobber(src: Path, directory: Path, name: str) -> Path:
    """Give ``src`` a second name in ``directory``: ``name``, or ``name-1``... if taken.

    Never overwrites: a hard link fails when the target exists. The companions of a
    PDF (``.receipt.json``, ``.error.json``, ``.json``) must be free under the chosen
    stem too, so a receipt never lands beside someone else's PDF. A target that
    already *is* ``src`` (a crash after linking) is reused, so a repeated call is
    harmless. The caller unlinks ``src`` once it has recorded the target. On file
    systems without hard links it falls back to check-then-rename (``src`` is then
    gone already).
    """
    stem, suffix = os.path.splitext(name)
    for n in range(_MAX_SUFFIX):
        candidate_stem = stem if n == 0 else f"{stem}-{n}"
        target = directory / (candidate_stem + suffix)
        if _same_file(src, target):
            return target
        if any(
            (directory / (candidate_stem + extra)).exists()
            for extra in (".receipt.json", ".error.json", ".json")
        ):
            continue
        try:
            os.link(src, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            if target.exists():
                continue
            os.rename(src, target)
        return target
    raise OSError(errno.EEXIST, f"no free name for {name} in {directory}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_json_beside(pdf: Path, suffix: str, data: dict[str, Any]) -> Path:
    """Write ``data`` as ``<pdf stem><suffix>`` next to ``pdf``, atomically."""
    target = pdf.with_name(pdf.stem + suffix)
    tmp = pdf.with_name(f".{pdf.stem}{suffix}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return target
