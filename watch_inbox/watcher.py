"""The hot-folder watcher: notice finished files, claim them, submit them, file results.

This module owns the watcher's threads and the claim protocol. Layout and recipient
rules live in :mod:`watch_inbox.layout`, the Redis ledger in
:mod:`watch_inbox.ledger`, receipts in :mod:`watch_inbox.receipts`; documents enter
faxd only through :func:`faxd.intake.submit`.

Noticing a finished file
    Event mode (Linux inotify through watchdog): ``IN_CLOSE_WRITE`` or a rename
    into ``inbox/`` (``IN_MOVED_TO``) means the file is complete. ``IN_MODIFY``
    marks a file as being written. ``IN_CREATE`` marks nothing: for a new subfolder
    watchdog also reports a create for every file already in it, so a create is no
    sign of an open writer. Files found by a scan (at start-up, then every
    ``rescan_s``, which catches events lost to a queue overflow) are taken by the
    settle rule: size, mtime and inode unchanged for a while. In event mode that
    while is ``settle_s`` (at least :data:`EVENT_LAG_S`) only for files that were
    already there when a watch began, and only if no write event arrived for them
    since; a file that appeared later must close (its ``IN_CLOSE_WRITE`` comes for
    sure), so a scan takes it only after ``stale_writer_s`` of silence, the
    backstop for lost events. watchdog delivers events about half a second late,
    so a shorter settle on every scanned file would take a slow writer's file
    between two chunks. Poll mode (``--poll``, for network file systems where
    inotify sees only local writes) uses ``settle_s`` for everything. An empty
    file is never taken on its close alone: many programs create, close and then
    reopen.

    New subfolders race their watch: ``mkdir inbox/<number>; cp x.pdf
    inbox/<number>/`` may finish before watchdog adds the watch, and then no event
    ever comes for ``x.pdf``. So when a subfolder appears (its ``IN_CREATE``, or a
    scan meeting a subfolder it has not seen), it is listed at once, after its
    watch exists, and each non-empty PDF in it is treated like a file found at
    start-up: taken once it has settled with no write event since. A file still
    being written there sends ``IN_MODIFY`` (the watch exists by then) and is taken
    on its close; an empty one waits for its close like any new file.

Claim protocol (one claim id ``cid`` per file, a uuid)
    1. ``claiming``: the ledger records ``cid -> inbox path, owner`` first.
    2. ``rename(inbox/REL, .work/<cid>/REL)``: atomic; of two watchers exactly one
       succeeds, the other gets ENOENT and drops its ledger entry. The sidecar
       follows. The file is read from the claim directory only.
    3. ``claimed``: the file's sha256 is recorded; the recipient is found.
    4. ``submit(..., idempotency_key="watch:<fid>:<cid>")``, then ``submitted`` with
       the job id. A crash between 3 and 4 is repaired by submitting again with the
       same key, which returns the same job: nothing is sent twice.
    5. When the job ends (``faxd:events`` followed with :meth:`JobStore.follow`, plus
       a periodic check of every ledger job), ``finishing``: the file is hard-linked
       into ``sent/``, ``failed/`` or ``rejected/`` under a free name (``NAME-1.pdf``
       on a clash, never overwriting), the chosen name is recorded, the claim copy is
       unlinked, the receipt and the sidecar are written beside it, the claim
       directory and then the ledger entry are deleted. Every step can be repeated
       after a crash with the same result.

    At start-up, and every ``check_s``, a watcher adopts the claims of dead
    watchers (ledger owner whose lease expired or whose process on this host is
    gone) and advances each from the state the ledger records; a claim directory
    with no ledger entry (Redis lost it) is re-entered as ``claimed``. A file whose
    job is running stays in ``.work/`` until the job ends; only the watcher that owns
    its claim moves it, so workers never touch the folder.

Errors
    A file that cannot be read stays in ``inbox/`` with one ``file_unreadable`` log
    line; so does a ``*.pdf`` that is not a regular file (a FIFO, socket or device,
    which a read would block on or never finish). When Redis is unreachable nothing
    is claimed; claims in flight wait in ``.work/`` and are advanced once it answers
    again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import redis
import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

from faxd.config import Settings
from faxd.errors import (
    ConfigError,
    ConflictError,
    FaxError,
    StoreError,
    ValidationError,
)
from faxd.intake import submit
from faxd.jobs import EVENTS_STREAM, TERMINAL, FaxJob, JobState, JobStore
from faxd.numbers import mask
from faxd.queue import make_broker
from watch_inbox import layout, receipts
from watch_inbox.ledger import Ledger

__all__ = ["WatchOptions", "Watcher"]

log = structlog.get_logger("watch_inbox")

SOURCE = "folder"
#: watchdog holds inotify events back 0.5 s (to pair renames); settle on more than that.
EVENT_LAG_S = 1.5


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """How the watcher notices files; defaults suit a local disk."""

    poll: bool = False
    settle_s: float = 2.0  # size and mtime unchanged this long: the file is complete
    poll_interval_s: float = 1.0  # poll mode: how often the inbox is listed
    rescan_s: float = 30.0  # event mode: the safety-net listing
    check_s: float = 10.0  # ledger jobs' states checked, dead watchers' claims adopted
    lease_s: float = 15.0  # a watcher silent this long is dead
    stale_writer_s: float = 60.0  # an open write with no activity this long: closed
    intake_threads: int = 4  # each validation forks a child: 2 per core keeps up


@dataclass(slots=True)
class _Sighting:
    signature: tuple[int, int, int]  # size, mtime_ns, inode
    since: float  # monotonic time the signature was first seen


class _Events(FileSystemEventHandler):
    """Translates watchdog events into the watcher's two calls."""

    def __init__(self, watcher: Watcher) -> None:
        self.w = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if isinstance(event, FileClosedEvent):
                self.w.on_complete(_path(event.src_path))
            elif isinstance(event, FileMovedEvent):
                if event.dest_path:
                    self.w.on_complete(_path(event.dest_path))
            elif isinstance(event, DirMovedEvent):
                if event.dest_path:
                    self.w.on_dir_moved_in(_path(event.dest_path))
            elif isinstance(event, FileModifiedEvent):
                self.w.on_writing(_path(event.src_path))
            elif isinstance(event, DirCreatedEvent):
                self.w.on_dir_created(_path(event.src_path))
        except Exception:  # the observer thread must survive anything
            log.exception("watch_event_failed", event_type=event.event_type)


def _path(raw: bytes | str) -> Path:
    return Path(os.fsdecode(raw))


class Watcher:
    """One watcher of one hot folder. :meth:`run` blocks until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        options: WatchOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.folder = layout.Folder(root.resolve())
        self.options = options or WatchOptions()
        self.clock = clock
        self.wid = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # inbox paths being claimed by this process
        self._sightings: dict[str, _Sighting] = {}  # scanned files waiting to settle
        self._writing: dict[str, float] = {}  # inbox paths with an open write
        self._noted: set[str] = set()  # paths already logged as ignored/unreadable
        self._jobs: dict[str, str] = {}  # job id -> claim id, for claims we own
        self._active: set[str] = set()  # claim ids being advanced right now
        self._stop = threading.Event()
        self._events_on = False  # inotify events arrive (not poll mode)
        # (path, inode) of files there when a watch began: at start, in new subfolders
        self._preexisting: set[tuple[str, int]] = set()
        self._subfolders: set[str] = set()  # inbox subfolders already listed
        # set in run()
        self.store: JobStore
        self.broker: dramatiq.Broker
        self.ledger: Ledger
        self.fid = ""
        self._pool: ThreadPoolExecutor

    # -- lifecycle -------------------------------------------------------------

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Watch until ``stop`` is set; ``ready`` is set once events are followed."""
        self._stop = stop
        try:
            self.folder.create()
            self.fid = self.folder.identity()
        except OSError as exc:
            raise ConfigError(
                f"Cannot create the hot folder {self.folder.root} or its directories "
                f"({exc.strerror}); check FAXD_HOTFOLDER and its permissions."
            ) from exc
        client = redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=30, socket_connect_timeout=5
        )
        self.ledger = Ledger(client, self.fid, self.wid, self.options.lease_s)
        self.store = JobStore.from_settings(self.settings)
        self.broker = make_broker(self.settings)
        self._pool = ThreadPoolExecutor(
            self.options.intake_threads, thread_name_prefix="watch-intake"
        )
        observer: BaseObserver | None = None
        follower: threading.Thread | None = None
        structlog.contextvars.bind_contextvars(watcher_id=self.wid)
        try:
            self.store.ping()
            self.ledger.hold_lease()
            tail = self._stream_tail()
            poll = self.options.poll
            if not poll:
                observer = self._start_observer()
                poll = observer is None
                self._events_on = not poll
                # Listed after the watch exists: a file written later sends events;
                # listed before, one landing in between would wait stale_writer_s.
                self._note_preexisting()
            log.info(
                "watch_started",
                folder=str(self.folder.root),
                mode="poll" if poll else "inotify",
            )
            follower = threading.Thread(
                target=self._follow, args=(tail,), name="watch-follow", daemon=True
            )
            follower.start()
            self._reconcile()
            self._scan()
            if ready is not None:
                ready.set()
            self._loop(poll)
        finally:
            self._stop.set()
            if follower is not None:
                follower.join(timeout=10)
            if observer is not None:
                observer.stop()
                observer.join(timeout=10)
            self._pool.shutdown(wait=True, cancel_futures=False)
            with contextlib.suppress(StoreError):
                self.ledger.release_lease()
            log.info("watch_stopped", folder=str(self.folder.root))
            structlog.contextvars.unbind_contextvars("watcher_id")
            self.broker.close()
            self.store.close()
            client.close()

    def _start_observer(self) -> BaseObserver | None:
        try:
            from watchdog.observers.inotify import InotifyObserver

            observer = InotifyObserver(generate_full_events=True)
            observer.schedule(
                _Events(self),
                str(self.folder.inbox),
                recursive=True,
                event_filter=[
                    FileClosedEvent,
                    FileMovedEvent,
                    DirMovedEvent,
                    DirCreatedEvent,
                    FileModifiedEvent,
                ],
            )
            observer.start()
        except (ImportError, OSError) as exc:
            # No inotify (not Linux) or the watch limit is reached: polling still works.
            log.warning("inotify_unavailable", reason=str(exc), fallback="poll")
            return None
        return observer

    def _loop(self, poll: bool) -> None:
        opts = self.options
        scan_every = opts.poll_interval_s if poll else opts.rescan_s
        tick = min(opts.settle_s / 4, opts.poll_interval_s, 0.5)
        now = self.clock()
        next_scan = now + scan_every
        next_check = now + opts.check_s
        next_lease = now + opts.lease_s / 3
        while not self._stop.wait(tick):
            now = self.clock()
            try:
                if now >= next_lease:
                    self.ledger.hold_lease()
                    next_lease = now + opts.lease_s / 3
                if now >= next_scan:
                    self._scan()
                    next_scan = now + scan_every
                else:
                    self._resettle()
                if now >= next_check:
                    self._reconcile()
                    next_check = now + opts.check_s
            except StoreError as exc:
                log.warning("watch_redis_unavailable", reason=exc.message)

    # -- noticing files --------------------------------------------------------

    def _rel(self, path: Path) -> Path | None:
        try:
            return path.relative_to(self.folder.inbox)
        except ValueError:
            return None

    def _accepts(self, rel: Path) -> bool:
        verdict = layout.is_candidate(rel)
        if verdict is None:
            self._note(
                str(rel),
                "file_ignored",
                reason="not a *.pdf in inbox/ or inbox/<number>/",
            )
        return bool(verdict)

    def _note(self, key: str, event: str, **kw: Any) -> None:
        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
        log.info(event, path=key, **kw)

    def on_writing(self, path: Path) -> None:
        rel = self._rel(path)
        if rel is not None and layout.is_candidate(rel):
            with self._lock:
                self._writing[str(rel)] = self.clock()

    def on_complete(self, path: Path) -> None:
        """A file was closed after writing or renamed into the inbox."""
        rel = self._rel(path)
        if rel is None or not self._accepts(rel):
            return
        with self._lock:
            self._writing.pop(str(rel), None)
        try:
            st = (self.folder.inbox / rel).stat()
        except OSError:
            return
        if st.st_size == 0:
            self._sight(rel, st)  # empty on close: let it settle (see module doc)
            return
        self._dispatch(rel)

    def on_dir_created(self, path: Path) -> None:
        """A new subfolder: list it now, its watch exists (see module doc)."""
        rel = self._rel(path)
        if rel is not None and len(rel.parts) == 1:
            self._new_subfolder(rel.name)

    def _new_subfolder(self, name: str) -> None:
        """Sight the files of a subfolder met for the first time, as at start-up.

        watchdog adds the watch before it reports the directory, so whatever is
        written there from now on sends events; what was written before sent none
        and is taken by the settle rule, unless a write event says otherwise.
        """
        with self._lock:
            self._subfolders.add(name)
        try:
            children = list(os.scandir(self.folder.inbox / name))
        except OSError:
            return  # gone again, or unreadable: the next scan says which
        for child in children:
            rel = Path(name, child.name)
            if not self._is_document(rel, child):
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_size > 0:  # an empty file may be open for its first write
                with self._lock:
                    self._preexisting.add((str(rel), st.st_ino))
            self._sight(rel, st)

    def on_dir_moved_in(self, path: Path) -> None:
        """A directory renamed into the inbox: its files are complete."""
        rel = self._rel(path)
        if rel is not None and len(rel.parts) == 1:
            with self._lock:
                self._subfolders.add(rel.name)
        for child in sorted(path.rglob("*")):
            if child.is_file():
                self.on_complete(child)

    def _note_preexisting(self) -> None:
        """Record (path, inode) of every candidate file in the inbox, and subfolders.

        Subfolders are recorded so the first scan does not take them for new ones.
        """
        files: set[tuple[str, int]] = set()
        dirs: set[str] = set()
        for path in self.folder.inbox.rglob("*"):
            rel = path.relative_to(self.folder.inbox)
            try:
                if len(rel.parts) == 1 and path.is_dir():
                    dirs.add(rel.name)
                elif layout.is_candidate(rel) and path.is_file():
                    files.add((str(rel), path.stat().st_ino))
            except OSError:
                continue
        with self._lock:  # the observer may be adding new subfolders already
            self._preexisting |= files
            self._subfolders |= dirs

    def _scan(self) -> None:
        """List the inbox; files not yet seen, or changed, start to settle."""
        inbox = self.folder.inbox
        try:
            top = list(os.scandir(inbox))
        except OSError as exc:
            log.warning("inbox_unreadable", reason=exc.strerror)
            return
        found: set[str] = set()
        subfolders: set[str] = set()
        for entry in top:
            if entry.name.startswith(".") or layout.is_temporary(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.add(entry.name)
                with self._lock:
                    new = self._events_on and entry.name not in self._subfolders
                if new:  # its create event was lost or is still on its way
                    self._new_subfolder(entry.name)
                try:
                    children = list(os.scandir(entry.path))
                except OSError:
                    continue
                for child in children:
                    self._scanned(Path(entry.name, child.name), child, found)
            else:
                self._scanned(Path(entry.name), entry, found)
        with self._lock:
            for gone in set(self._sightings) - found:
                del self._sightings[gone]
            for gone in set(self._writing) - found:
                del self._writing[gone]
            unseen = [p for p in self._preexisting if p[0] not in found]
            unseen_dirs = self._subfolders - subfolders
        # Forget what is gone (taken, deleted) but not what a subfolder's create
        # event added while this scan was listing.
        for key, ino in unseen:
            try:
                vanished = (inbox / key).stat().st_ino != ino
            except OSError:
                vanished = True
            if vanished:
                with self._lock:
                    self._preexisting.discard((key, ino))
        for name in unseen_dirs:
            if not (inbox / name).is_dir():
                with self._lock:
                    self._subfolders.discard(name)
        self._resettle()

    def _is_document(self, rel: Path, entry: os.DirEntry[str]) -> bool:
        """A candidate name on a regular file; a FIFO or device is noted and left."""
        if entry.is_file(follow_symlinks=False):
            return self._accepts(rel)
        if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
            return False
        if layout.is_candidate(rel):
            # A FIFO blocks a reader until someone writes; a device never ends.
            self._note(str(rel), "file_unreadable", reason="not a regular file")
        return False

    def _scanned(self, rel: Path, entry: os.DirEntry[str], found: set[str]) -> None:
        if not self._is_document(rel, entry):
            return
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return
        found.add(str(rel))
        self._sight(rel, st)

    def _sight(self, rel: Path, st: os.stat_result) -> None:
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            seen = self._sightings.get(str(rel))
            if seen is None or seen.signature != sig:
                self._sightings[str(rel)] = _Sighting(sig, self.clock())

    def _resettle(self) -> None:
        """Dispatch the scanned files that have settled; re-stat the others."""
        now = self.clock()
        opts = self.options
        with self._lock:
            waiting = list(self._sightings.items())
        for key, seen in waiting:
            rel = Path(key)
            try:
                st = (self.folder.inbox / rel).stat()
            except OSError:
                with self._lock:
                    self._sightings.pop(key, None)
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            if sig != seen.signature:
                self._sight(rel, st)
                continue
            if not self._events_on:
                need = opts.settle_s
            elif (key, st.st_ino) in self._preexisting:
                need = max(opts.settle_s, EVENT_LAG_S)
                with self._lock:
                    writing_since = self._writing.get(key)
                if writing_since is not None:
                    need = max(need, writing_since - seen.since + opts.stale_writer_s)
            else:
                need = opts.stale_writer_s  # its close event will come first
            if now - seen.since < need:
                continue
            with self._lock:
                self._sightings.pop(key, None)
                self._writing.pop(key, None)
            self._dispatch(rel)

    def _dispatch(self, rel: Path) -> None:
        key = str(rel)
        with self._lock:
            if key in self._busy or self._stop.is_set():
                return
            self._busy.add(key)
            self._sightings.pop(key, None)
        try:
            self._pool.submit(self._take_guarded, rel)
        except RuntimeError:  # shutting down: the next start-up scan takes it
            with self._lock:
                self._busy.discard(key)

    # -- claiming --------------------------------------------------------------

    def _take_guarded(self, rel: Path) -> None:
        try:
            self._take(rel)
        except StoreError as exc:
            log.warning("claim_postponed", path=str(rel), reason=exc.message)
        except Exception:  # a process edge: keep the thread, log the traceback
            log.exception("claim_failed", path=str(rel))
        finally:
            with self._lock:
                self._busy.discard(str(rel))

    def _take(self, rel: Path) -> None:
        src = self.folder.inbox / rel
        try:
            # O_NONBLOCK: opening a FIFO for reading would wait for a writer
            fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return  # another watcher took it
        except OSError as exc:
            self._note(str(rel), "file_unreadable", reason=exc.strerror)
            return
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if not regular:
            self._note(str(rel), "file_unreadable", reason="not a regular file")
            return
        cid = uuid.uuid4().hex
        with self._lock:
            self._active.add(cid)  # keeps _reconcile off this claim while it starts
        try:
            self.ledger.begin(cid, str(rel))
            dest = self.folder.claim_dir(cid) / rel
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dest)
            except FileNotFoundError:
                self._drop_claim(cid)
                return
            except OSError as exc:
                self._drop_claim(cid)
                self._note(str(rel), "file_unreadable", reason=exc.strerror)
                return
            with self._lock:
                self._writing.pop(str(rel), None)
            self._move_sidecar_in(rel, cid)
            log.info("file_claimed", path=str(rel), claim_id=cid)
            self.ledger.update(cid, {"state": "claimed"})
            self._advance(cid, held=True)
        finally:
            with self._lock:
                self._active.discard(cid)

    def _drop_claim(self, cid: str) -> None:
        shutil.rmtree(self.folder.claim_dir(cid), ignore_errors=True)
        self.ledger.forget(cid)

    def _move_sidecar_in(self, rel: Path, cid: str) -> None:
        side = rel.with_name(layout.sidecar_name(rel.name))
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.folder.inbox / side, self.folder.claim_dir(cid) / side)

    # -- the claim state machine -----------------------------------------------

    def _advance(self, cid: str, *, held: bool = False) -> None:
        """Move claim ``cid`` on from the state the ledger records (repeatable).

        ``held``: the caller already marked ``cid`` active (it is claiming it).
        """
        if not held:
            with self._lock:
                if cid in self._active:
                    return
                self._active.add(cid)
        try:
            record = self.ledger.get(cid)
            if record is None or record.get("owner") != self.wid:
                return
            state = record.get("state", "")
            if state == "claiming":
                state = self._after_claiming(cid, record)
            if state == "claimed":
                self._submit(cid, record)
            elif state in ("submitted", "finishing"):
                self._check_job(cid, record)
        finally:
            if not held:
                with self._lock:
                    self._active.discard(cid)

    def _after_claiming(self, cid: str, record: dict[str, str]) -> str:
        rel = Path(record["rel"])
        if (self.folder.claim_dir(cid) / rel).exists():
            self._move_sidecar_in(rel, cid)
            self.ledger.update(cid, {"state": "claimed"})
            return "claimed"
        self._drop_claim(cid)  # the rename never happened: the file is still in inbox
        return ""

    def _facts(self, record: dict[str, str]) -> receipts.FileFacts:
        rel = Path(record["rel"])
        return {
            "name": rel.name,
            "path": rel.as_posix(),
            "sha256": record.get("sha256", ""),
        }

    def _submit(self, cid: str, record: dict[str, str]) -> None:
        rel = Path(record["rel"])
        work = self.folder.claim_dir(cid)
        try:
            data = (work / rel).read_bytes()
        except FileNotFoundError:
            log.error("claim_file_missing", claim_id=cid, path=str(rel))
            self._drop_claim(cid)
            return
        sha256 = hashlib.sha256(data).hexdigest()
        if record.get("sha256") != sha256:
            record["sha256"] = sha256
            self.ledger.update(cid, {"sha256": sha256})
        facts = self._facts(record)
        try:
            sidecar = layout.read_sidecar(
                work / rel.with_name(layout.sidecar_name(rel.name))
            )
        except ValidationError as exc:
            self._reject(cid, record, exc.code, exc.message)
            return
        recipient = layout.recipient_for(rel, sidecar)
        if recipient is None:
            self._reject(
                cid,
                record,
                "no_recipient",
                "No recipient: name the number in a sidecar NAME.json "
                '({"to": "+49..."}), a subfolder inbox/<number>/ or the file name '
                "(+4930123456_invoice.pdf).",
            )
            return
        try:
            job = submit(
                data,
                recipient.to,
                settings=self.settings,
                store=self.store,
                broker=self.broker,
                source=SOURCE,
                filename=rel.name,
                flatten=recipient.flatten,
                idempotency_key=f"watch:{self.fid}:{cid}",
                callback_url=recipient.callback_url,
                meta={"path": rel.as_posix(), "recipient_from": recipient.source},
            )
        except ConflictError as exc:  # the claimed bytes or sidecar changed: a bug
            log.error("claim_conflict", claim_id=cid, reason=exc.message)
            return
        with structlog.contextvars.bound_contextvars(job_id=job.id):
            log.info(
                "file_submitted",
                path=facts["path"],
                state=str(job.state),
                recipient=mask(job.recipient),
                recipient_from=recipient.source,
            )
        self.ledger.update(cid, {"state": "submitted", "job_id": job.id})
        record.update(state="submitted", job_id=job.id)
        if job.is_final:
            self._finish(cid, record, job)
            return
        with self._lock:
            self._jobs[job.id] = cid
        # The job may have ended before it was registered: look once more.
        self._check_job(cid, record)

    def _check_job(self, cid: str, record: dict[str, str]) -> None:
        job_id = record.get("job_id", "")
        job = self.store.find(job_id) if job_id else None
        if job is None:
            if record.get("state") == "finishing" and record.get("dest"):
                self._finish(cid, record, None)  # the record expired; file it anyway
                return
            # The job store lost the job (so nothing can send it): submit again.
            self.ledger.update(cid, {"state": "claimed"})
            record["state"] = "claimed"
            self._submit(cid, record)
            return
        if job.is_final:
            self._finish(cid, record, job)
        else:
            with self._lock:
                self._jobs[job.id] = cid

    def _reject(
        self, cid: str, record: dict[str, str], code: str, message: str
    ) -> None:
        self._file_result(
            cid,
            record,
            layout.REJECTED,
            ".error.json",
            lambda facts: receipts.error_record(code, message, facts, at=time.time()),
        )
        log.info("file_rejected", path=record["rel"], code=code)

    def _finish(self, cid: str, record: dict[str, str], job: FaxJob | None) -> None:
        """File a claim whose job has ended."""
        if job is None:
            outcome = record.get("outcome", layout.FAILED)
            self._file_result(
                cid,
                record,
                outcome,
                ".receipt.json" if outcome != layout.REJECTED else ".error.json",
                lambda facts: {
                    "job_id": record.get("job_id"),
                    "file": facts,
                    "code": "job_not_found",
                    "message": "The job record expired before the watcher filed it.",
                },
            )
            return
        events = self.store.events(job.id)
        if job.state == JobState.REJECTED:
            outcome, suffix = layout.REJECTED, ".error.json"

            def build(facts: receipts.FileFacts) -> dict[str, Any]:
                return receipts.error_record(
                    job.error_code,
                    job.error_message,
                    facts,
                    job=job,
                    events=events,
                    at=job.finished_at or job.updated_at,
                )
        else:
            outcome = layout.SENT if job.state == JobState.SENT else layout.FAILED
            suffix = ".receipt.json"

            def build(facts: receipts.FileFacts) -> dict[str, Any]:
                return receipts.receipt(job, events, facts)

        with structlog.contextvars.bound_contextvars(job_id=job.id):
            self._file_result(cid, record, outcome, suffix, build)
            log.info(
                "file_done", path=record["rel"], outcome=outcome, state=str(job.state)
            )
        with self._lock:
            self._jobs.pop(job.id, None)

    def _file_result(
        self,
        cid: str,
        record: dict[str, str],
        outcome: str,
        suffix: str,
        build: Callable[[receipts.FileFacts], dict[str, Any]],
    ) -> None:
        """Move the claimed file to ``outcome/`` with its receipt; forget the claim."""
        rel = Path(record["rel"])
        work = self.folder.claim_dir(cid)
        outdir = self.folder.outcome(outcome)
        if record.get("state") != "finishing" or record.get("outcome") != outcome:
            self.ledger.update(cid, {"state": "finishing", "outcome": outcome})
            record.update(state="finishing", outcome=outcome)
        src = work / rel
        if src.exists():
            target = layout.link_no_clobber(src, outdir, rel.name)
            self.ledger.update(cid, {"dest": target.name})
            record["dest"] = target.name
            src.unlink(missing_ok=True)
        elif record.get("dest"):
            target = outdir / record["dest"]
        else:
            log.error("claim_file_missing", claim_id=cid, path=str(rel))
            self._drop_claim(cid)
            return
        layout.write_json_beside(target, suffix, build(self._facts(record)))
        side = work / rel.with_name(layout.sidecar_name(rel.name))
        if side.exists():
            os.replace(side, target.with_name(target.stem + ".json"))
        self._drop_claim(cid)

    # -- following jobs and reconciling ----------------------------------------

    def _stream_tail(self) -> str:
        """The id of the newest job event, read before the ledger is reconciled."""
        try:
            newest: list[tuple[bytes, Any]] = self.store.r.xrevrange(  # type: ignore[assignment]
                EVENTS_STREAM, count=1
            )
        except redis.RedisError as exc:
            raise StoreError("Redis is unreachable; check REDIS_URL.") from exc
        return newest[0][0].decode() if newest else "0-0"

    def _follow(self, last: str) -> None:
        while not self._stop.is_set():
            try:
                # jobs.py's method named `list` hides the builtin in its annotation
                entries: Any = self.store.follow(last, block_ms=500, count=500)
            except StoreError as exc:
                log.warning("watch_redis_unavailable", reason=exc.message)
                self._stop.wait(1.0)
                continue
            for entry_id, fields in entries:
                last = entry_id
                if fields.get("state") not in TERMINAL:
                    continue
                with self._lock:
                    cid = self._jobs.get(fields.get("job_id", ""))
                if cid is not None:
                    self._advance_guarded(cid)

    def _advance_guarded(self, cid: str) -> None:
        try:
            self._advance(cid)
        except FaxError as exc:
            log.warning("claim_postponed", claim_id=cid, reason=exc.message)
        except Exception:
            log.exception("claim_failed", claim_id=cid)

    def _reconcile(self) -> None:
        """Adopt dead watchers' claims, re-enter orphaned claim dirs, check our jobs."""
        try:
            on_disk = {
                e.name
                for e in os.scandir(self.folder.work)
                if e.is_dir(follow_symlinks=False)
            }
        except OSError:
            on_disk = set()
        ids = set(self.ledger.claim_ids())
        for cid in sorted(on_disk - ids):
            self._readopt_orphan(cid)
        owners: dict[str, bool] = {}
        mine: list[str] = []
        for cid in sorted(ids):
            record = self.ledger.get(cid)
            if record is None:
                continue
            owner = record.get("owner", "")
            if owner == self.wid:
                mine.append(cid)
                continue
            if owner not in owners:
                owners[owner] = self.ledger.is_alive(owner)
            if not owners[owner] and self.ledger.adopt(cid, owner):
                log.info("claim_adopted", claim_id=cid, previous_owner=owner)
                mine.append(cid)
        for cid in mine:
            with self._lock:
                if cid in self._active:
                    continue
            if self._stop.is_set():
                return
            self._pool.submit(self._advance_guarded, cid)

    def _readopt_orphan(self, cid: str) -> None:
        """A claim directory without a ledger entry: Redis lost it. Claim it again."""
        work = self.folder.claim_dir(cid)
        pdfs = [
            p for p in work.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf"
        ]
        if not pdfs:
            shutil.rmtree(work, ignore_errors=True)
            return
        rel = pdfs[0].relative_to(work)
        self.ledger.begin(cid, str(rel))
        self.ledger.update(cid, {"state": "claimed"})
        log.warning("claim_orphan_readopted", claim_id=cid, path=str(rel))
