"""The hot-folder watcher end to end: real folder, real Redis, real workers, sandbox.

These pin the folder's promise: every completely written PDF becomes exactly one job
and ends in ``sent/`` with its receipt (or ``rejected/`` with its reason), a file
still being written is never taken, and neither a SIGKILLed watcher nor two watchers
on one folder lose a file or send one twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis as redis_lib
from structlog.testing import capture_logs

from faxd.config import Settings
from faxd.demo import text_pdf
from faxd.errors import ConfigError
from faxd.intake import submit
from faxd.jobs import JobState, JobStore
from faxd.queue import make_broker
from tests import pdfs
from tests.workers.test_actors import ROOT, Rig
from watch_inbox import Watcher, WatchOptions, main_run
from watch_inbox.layout import Folder, is_candidate, link_no_clobber, recipient_for
from watch_inbox.ledger import Ledger

pytestmark = pytest.mark.slow

FAST = WatchOptions(
    settle_s=0.3, poll_interval_s=0.1, rescan_s=0.5, check_s=0.5, lease_s=2.0
)


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Re-check ``cond`` every 50 ms until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.05)


def pdf_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() == ".pdf")


def pdf_names(directory: Path) -> list[str]:
    return [p.name for p in pdf_files(directory)]


class WatcherProc:
    """``python -m watch_inbox`` in its own process group, to be stopped or killed."""

    def __init__(self, env: dict[str, str], folder: Path, log_dir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.folder = folder
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        log = (self.log_dir / f"watcher-{self.runs}.log").open("wb")
        self.runs += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watch_inbox", "--folder", str(self.folder),
             "--settle", "0.3", "--rescan", "0.5", "--check", "0.5", "--lease", "2"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0 if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=30)


@contextmanager
def watcher_thread(
    settings: Settings, folder: Path, options: WatchOptions = FAST
) -> Iterator[Watcher]:
    """A watcher running in a thread until the block ends."""
    watcher = Watcher(settings, folder, options)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watcher.run(stop, ready)
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="watcher")
    thread.start()
    ready.wait(30)
    try:
        assert not errors, errors
        yield watcher
    finally:
        stop.set()
        thread.join(30)
        assert not errors, errors


@pytest.fixture
def rig(redis_url: str, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(redis_url, tmp_path)
    yield r
    r.close()


@pytest.fixture
def watcher(rig: Rig, tmp_path: Path) -> Iterator[WatcherProc]:
    """A watcher process on ``tmp_path/hot``, stopped even when the test fails."""
    proc = WatcherProc(rig.env, tmp_path / "hot", tmp_path)
    yield proc
    proc.stop()


def write_slowly(path: Path, data: bytes, chunks: int, pause_s: float) -> None:
    """Write ``data`` through one open file in ``chunks`` pieces, pausing between."""
    step = -(-len(data) // chunks)
    gap = threading.Event()
    with path.open("wb") as out:
        for i in range(0, len(data), step):
            out.write(data[i : i + step])
            out.flush()
            os.fsync(out.fileno())
            gap.wait(pause_s)


def drop_batch(
    inbox: Path, outside: Path, tag: str
) -> tuple[dict[str, bytes], dict[str, str]]:
    """Drop good files every supported way and bad ones; return (good, bad codes).

    ``good`` maps the inbox-relative path to the PDF bytes, ``bad`` to the code.
    """
    good: dict[str, bytes] = {}
    bad: dict[str, str] = {}
    writers: list[threading.Thread] = []

    def doc(name: str, pages: int = 1) -> bytes:
        return text_pdf(f"{tag} {name}", pages=pages)

    for i in range(10):  # number in the file name
        rel = f"+49301234{i:03d}_invoice-{tag}.pdf"
        good[rel] = doc(rel)
        (inbox / rel).write_bytes(good[rel])
    for i in range(10):  # per-recipient subfolder (also a clash of names across them)
        sub = inbox / f"+49302000{i:03d}"
        sub.mkdir(exist_ok=True)
        rel = f"{sub.name}/letter-{tag}.pdf"
        good[rel] = doc(rel, pages=2)
        (inbox / rel).write_bytes(good[rel])
    for i in range(10):  # sidecar first, then the PDF
        rel = f"order {i} {tag}.PDF"
        good[rel] = doc(rel)
        sidecar = {"to": f"030 3000 1{i:03d}", "note": "sidecar"}
        (inbox / f"order {i} {tag}.json").write_text(json.dumps(sidecar))
        (inbox / rel).write_bytes(good[rel])
    for i in range(10):  # written under a temporary name, renamed in
        rel = f"+49304000{i:03d}_renamed-{tag}.pdf"
        good[rel] = doc(rel)
        part = inbox / f".{rel}.part"
        part.write_bytes(good[rel])
        os.rename(part, inbox / rel)
    for i in range(5):  # moved in from a directory outside the inbox
        rel = f"+49305000{i:03d}_moved-{tag}.pdf"
        good[rel] = doc(rel)
        (outside / rel).write_bytes(good[rel])
        shutil.move(outside / rel, inbox / rel)
    for i in range(6):  # slow writers, one open file each, pauses longer than settle
        rel = f"+49306000{i:03d}_slow-{tag}.pdf"
        good[rel] = pdfs.big_pdf(300_000, text=f"{tag} slow {i}")
        t = threading.Thread(
            target=write_slowly, args=(inbox / rel, good[rel], 5, 0.4), daemon=True
        )
        t.start()
        writers.append(t)
    # bad ones
    bad[f"invoice-{tag}.pdf"] = "no_recipient"
    (inbox / f"invoice-{tag}.pdf").write_bytes(doc("no number"))
    bad[f"+49301_short-{tag}.pdf"] = "number_too_short"
    (inbox / f"+49301_short-{tag}.pdf").write_bytes(doc("short"))
    bad[f"+4930777000_notpdf-{tag}.pdf"] = "not_pdf"
    (inbox / f"+4930777000_notpdf-{tag}.pdf").write_text("just text, not a PDF\n" * 20)
    bad[f"+4930777001_cut-{tag}.pdf"] = "pdf_corrupt"
    (inbox / f"+4930777001_cut-{tag}.pdf").write_bytes(pdfs.truncated_pdf())
    bad[f"broken-sidecar-{tag}.pdf"] = "sidecar_invalid"
    (inbox / f"broken-sidecar-{tag}.json").write_text("{to: nope")
    (inbox / f"broken-sidecar-{tag}.pdf").write_bytes(doc("sidecar"))
    for t in writers:
        t.join()
    return good, bad


def test_every_way_in_ends_in_sent_once_with_receipts(
    rig: Rig, watcher: WatcherProc, tmp_path: Path
) -> None:
    """51 PDFs dropped every way: sent once, with receipts; bad ones rejected."""
    folder = watcher.folder
    outside = tmp_path / "outside"
    outside.mkdir()
    rig.workers.start()
    watcher.start()
    inbox = folder / "inbox"
    wait_until(lambda: (folder / ".work" / "folder-id").exists(), 30, "watcher start")
    # ignored: other extensions and temporary names stay where they are
    (inbox / "+4930123_notes.docx").write_bytes(b"PK\x03\x04")
    (inbox / "~$draft.pdf").write_bytes(b"owner file")
    (inbox / ".~lock.letter.pdf#").write_bytes(b"lock")
    good, bad = drop_batch(inbox, outside, "a")
    sent, rejected = folder / "sent", folder / "rejected"
    wait_until(
        lambda: (
            len(pdf_names(sent)) >= len(good) and len(pdf_names(rejected)) >= len(bad)
        ),
        90,
        "all files filed",
    )
    assert watcher.stop() == 0

    assert len(pdf_names(sent)) == len(good) == 51
    by_sha = {hashlib.sha256(d).hexdigest(): rel for rel, d in good.items()}
    job_ids: list[str] = []
    for pdf in pdf_files(sent):
        receipt = json.loads(pdf.with_name(pdf.stem + ".receipt.json").read_text())
        sha = hashlib.sha256(pdf.read_bytes()).hexdigest()
        rel = by_sha.pop(sha)  # each good file once, byte for byte
        assert receipt["file"]["path"] == rel
        assert receipt["sha256"] == sha and receipt["state"] == "sent"
        assert receipt["provider_status"] == "SENT" and receipt["session_id"]
        assert receipt["pages"] == (2 if rel.startswith("+49302") else 1)
        states = [e["state"] for e in receipt["events"]]
        assert states[0] == "accepted" and states[-1] == "sent"
        assert all(e["at"] for e in receipt["events"])
        job = rig.store.get(receipt["job_id"])
        assert (job.source, job.filename, job.meta["path"]) == (
            "folder",
            Path(rel).name,
            rel,
        )
        job_ids.append(job.id)
    assert by_sha == {}
    # sidecars moved along; names clashing across subfolders got suffixes
    for i in range(10):
        assert json.loads((sent / f"order {i} a.json").read_text())["note"] == "sidecar"
    letters = [n for n in pdf_names(sent) if n.startswith("letter-a")]
    assert (
        len(letters) == 10 and "letter-a.pdf" in letters and "letter-a-9.pdf" in letters
    )
    # nothing sent twice
    posts = rig.posts_per_job()
    assert set(posts) == {f"faxd-{j}.pdf" for j in job_ids}
    assert set(posts.values()) == {1}
    # rejections with reasons; the rejected file is kept unchanged
    codes = {}
    for pdf in pdf_files(rejected):
        err = json.loads(pdf.with_name(pdf.stem + ".error.json").read_text())
        codes[pdf.name] = err["code"]
        assert err["message"]
        assert (err["job_id"] is None) == (
            err["code"] in ("no_recipient", "sidecar_invalid")
        )
    assert codes == bad
    assert (rejected / "broken-sidecar-a.json").read_text() == "{to: nope"
    # ignored files stay; inbox and claim area are empty otherwise; ledger is clean
    left = sorted(p.name for p in inbox.rglob("*") if p.is_file())
    assert left == sorted(["+4930123_notes.docx", "~$draft.pdf", ".~lock.letter.pdf#"])
    assert [p.name for p in (folder / ".work").iterdir()] == ["folder-id"]
    client = redis_lib.Redis.from_url(rig.settings.redis_url)
    assert client.keys("faxd:watch:*:claim:*") == []
    client.close()


def test_watcher_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    rig: Rig, watcher: WatcherProc
) -> None:
    """A SIGKILLed watcher mid-batch: its successor files every PDF, each sent once."""
    folder = watcher.folder
    inbox = folder / "inbox"
    rig.workers.start()
    watcher.start()
    wait_until(lambda: (folder / ".work" / "folder-id").exists(), 30, "watcher start")
    docs = {f"+4930700{i:04d}_batch.pdf": text_pdf(f"batch {i}") for i in range(40)}
    for rel, data in list(docs.items())[:30]:
        (inbox / rel).write_bytes(data)
    wait_until(lambda: len(rig.store.list(limit=500)) >= 5, 30, "some jobs")
    watcher.kill()  # somewhere between claims, submits and filing
    for rel, data in list(docs.items())[30:]:
        (inbox / rel).write_bytes(data)  # arrive while no watcher runs
    watcher.start()
    sent = folder / "sent"
    wait_until(lambda: len(pdf_names(sent)) >= len(docs), 60, "all 40 filed")
    assert watcher.stop() == 0
    assert pdf_names(sent) == sorted(docs)
    jobs = rig.store.list(limit=500)
    assert len(jobs) == 40  # one job per file, even for files claimed before the kill
    posts = rig.posts_per_job()
    assert set(posts) == {f"faxd-{j.id}.pdf" for j in jobs}
    assert set(posts.values()) == {1}
    assert [p.name for p in (folder / ".work").iterdir()] == ["folder-id"]


def test_crash_after_submit_before_ledger_resubmits_to_the_same_job(
    redis_url: str, tmp_path: Path
) -> None:
    """A claim left 'claimed' by a dead watcher whose submit went through: same job."""
    settings = Settings.from_env({"REDIS_URL": redis_url})
    folder = Folder(tmp_path / "hot")
    folder.create()
    fid = folder.identity()
    client = redis_lib.Redis.from_url(redis_url)
    dead = Ledger(client, fid, "deadwatcher", lease_s=60)
    cid = "c" * 32
    rel = Path("+4930123456_crash.pdf")
    data = text_pdf("crash")
    dead.begin(cid, str(rel))
    (folder.claim_dir(cid)).mkdir()
    (folder.claim_dir(cid) / rel).write_bytes(data)
    dead.update(cid, {"state": "claimed"})
    store = JobStore.from_settings(settings)
    broker = make_broker(settings)
    first = submit(
        data,
        "+4930123456",
        settings=settings,
        store=store,
        broker=broker,
        source="folder",
        filename=rel.name,
        idempotency_key=f"watch:{fid}:{cid}",
        meta={"path": rel.as_posix(), "recipient_from": "filename"},
    )
    # the dead watcher never held a lease: it is dead at once
    with capture_logs() as logs, watcher_thread(settings, folder.root) as w:
        wait_until(lambda: cid in w._jobs.values(), 20, "claim adopted")
    assert [j.id for j in store.list(limit=10)] == [first.id]
    record = dead.get(cid)
    assert record is not None and record["job_id"] == first.id
    submitted = [e for e in logs if e["event"] == "file_submitted"]
    assert submitted and submitted[0]["recipient"] == "+49******56"
    assert any(e["event"] == "claim_adopted" for e in logs)
    broker.close()
    store.close()
    client.close()


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_slow_large_copy_is_never_taken_truncated(
    redis_url: str, tmp_path: Path, poll: bool
) -> None:
    """A ~19 MB PDF written slowly, started before the watcher: one job, whole file."""
    settings = Settings.from_env({"REDIS_URL": redis_url})
    inbox = tmp_path / "hot" / "inbox"
    inbox.mkdir(parents=True)
    data = pdfs.big_pdf(19_000_000, text="large")
    target = inbox / "+4930123456_large.pdf"
    # inotify: pauses longer than settle (the close decides); poll: shorter pauses
    pause = 0.2 if poll else 0.6
    writer = threading.Thread(target=write_slowly, args=(target, data, 8, pause))
    writer.start()
    options = WatchOptions(poll=poll, settle_s=0.5, poll_interval_s=0.1, rescan_s=0.3)
    store = JobStore.from_settings(settings)
    with watcher_thread(settings, tmp_path / "hot", options):
        writer.join()
        wait_until(lambda: len(store.list(limit=10)) == 1, 30, "the job")
    [job] = store.list(limit=10)
    assert job.state == JobState.ACCEPTED, job.error_code
    assert job.source_sha256 == hashlib.sha256(data).hexdigest()
    store.close()


def test_files_racing_a_new_subfolders_watch_are_taken_by_events_alone(
    redis_url: str, tmp_path: Path
) -> None:
    """mkdir inbox/<number>/ then write at once: every file taken whole, no rescan."""
    settings = Settings.from_env({"REDIS_URL": redis_url})
    root = tmp_path / "hot"
    inbox = root / "inbox"
    # No rescan and no stale-writer backstop: only events and the new folder's listing
    options = dataclasses.replace(FAST, rescan_s=3600.0, stale_writer_s=3600.0)
    store = JobStore.from_settings(settings)
    docs: dict[str, bytes] = {}
    with watcher_thread(settings, root, options):
        slow_sub = inbox / "+49309000999"
        slow_sub.mkdir()
        slow_rel = f"{slow_sub.name}/slow.pdf"
        docs[slow_rel] = pdfs.big_pdf(300_000, text="slow in a new folder")
        writer = threading.Thread(
            target=write_slowly, args=(inbox / slow_rel, docs[slow_rel], 5, 0.4)
        )
        writer.start()
        for i in range(12):
            sub = inbox / f"+4930900{i:04d}"
            sub.mkdir()  # files land before, during or after its watch is added
            for name in ("a.pdf", "b.pdf"):
                docs[f"{sub.name}/{name}"] = text_pdf(f"new folder {i} {name}")
                (sub / name).write_bytes(docs[f"{sub.name}/{name}"])
        writer.join()
        wait_until(lambda: len(store.list(limit=100)) >= len(docs), 30, "all jobs")
    jobs = store.list(limit=100)
    assert len(jobs) == len(docs) == 25
    for job in jobs:  # each file once, byte for byte, none truncated
        assert job.state == JobState.ACCEPTED, job.error_code
        assert job.source_sha256 == hashlib.sha256(docs[job.meta["path"]]).hexdigest()
    assert sorted(j.meta["path"] for j in jobs) == sorted(docs)
    store.close()


def test_a_pdf_that_is_not_a_regular_file_stays_with_a_reason(
    redis_url: str, tmp_path: Path
) -> None:
    """A FIFO named *.pdf (a read would block) stays in inbox/; logged once, why."""
    settings = Settings.from_env({"REDIS_URL": redis_url})
    root = tmp_path / "hot"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    fifo = inbox / "+4930123456_pipe.pdf"
    os.mkfifo(fifo)
    (inbox / "+4930123457_fine.pdf").write_bytes(text_pdf("fine"))
    store = JobStore.from_settings(settings)
    with capture_logs() as logs, watcher_thread(settings, root):
        wait_until(lambda: len(store.list(limit=10)) == 1, 30, "the good file's job")
        late = inbox / "+49301234"
        late.mkdir()  # also when met in a new subfolder
        os.mkfifo(late / "late.pdf")
        wait_until(
            lambda: sum(e["event"] == "file_unreadable" for e in logs) >= 2,
            30,
            "both FIFOs noted",
        )
    # the inbox was scanned several times while the good file settled: one line each
    unreadable = [e for e in logs if e["event"] == "file_unreadable"]
    assert sorted((e["path"], e["reason"]) for e in unreadable) == [
        ("+49301234/late.pdf", "not a regular file"),
        ("+4930123456_pipe.pdf", "not a regular file"),
    ]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert stat.S_ISFIFO((late / "late.pdf").stat().st_mode)
    [job] = store.list(limit=10)
    assert job.meta["path"] == "+4930123457_fine.pdf"
    store.close()


def test_two_watchers_on_one_folder_take_each_file_once(
    redis_url: str, tmp_path: Path
) -> None:
    """Two watchers racing on one inbox: 40 files, 40 jobs, none twice."""
    settings = Settings.from_env({"REDIS_URL": redis_url})
    root = tmp_path / "hot"
    store = JobStore.from_settings(settings)
    with watcher_thread(settings, root), watcher_thread(settings, root):
        for i in range(40):
            (root / "inbox" / f"+4930800{i:04d}_twice.pdf").write_bytes(
                text_pdf(f"twice {i}")
            )
        wait_until(lambda: len(store.list(limit=100)) >= 40, 30, "40 jobs")
    jobs = store.list(limit=100)
    assert len(jobs) == 40
    assert len({j.meta["path"] for j in jobs}) == 40
    store.close()


def test_no_folder_configured_is_a_config_error() -> None:
    """Without --folder or FAXD_HOTFOLDER, main_run names FAXD_HOTFOLDER."""
    with pytest.raises(ConfigError, match="FAXD_HOTFOLDER"):
        main_run(Settings.from_env({}), None, False)


def test_recipient_rules_and_candidates() -> None:
    """Sidecar beats subfolder beats file name; temp files and non-PDFs are skipped."""
    sub = Path("+4930111111/+4930222222_x.pdf")

    def who(rel: Path, sidecar: dict[str, str] | None) -> tuple[str, str] | None:
        found = recipient_for(rel, sidecar)
        return None if found is None else (found.to, found.source)

    assert who(sub, {"to": "+4930333333"}) == ("+4930333333", "sidecar")
    assert who(sub, None) == ("+4930111111", "subfolder")
    assert who(sub, {"note": "no to"}) == ("+4930111111", "subfolder")
    assert who(Path("+49 30 222222_x.pdf"), None) == ("+49 30 222222", "filename")
    assert who(Path("archive/invoice_2024.pdf"), None) is None
    assert who(Path("invoice.pdf"), None) is None
    assert is_candidate(Path("a.PDF")) is True
    for skipped in (".hidden.pdf", "~$a.pdf", "a.pdf.part", "a.tmp", "a.json"):
        assert is_candidate(Path(skipped)) is False
    assert is_candidate(Path("a.docx")) is None
    assert is_candidate(Path("a/b/c.pdf")) is None


def test_link_no_clobber_never_overwrites(tmp_path: Path) -> None:
    """A clash gets a suffix; a name whose receipt exists is skipped; repeats reuse."""
    out = tmp_path / "sent"
    out.mkdir()
    (out / "a.pdf").write_bytes(b"first")
    (out / "a-1.receipt.json").write_text("{}")
    src = tmp_path / "a.pdf"
    src.write_bytes(b"second")
    target = link_no_clobber(src, out, "a.pdf")
    assert target.name == "a-2.pdf"
    assert link_no_clobber(src, out, "a.pdf") == target  # crash after link: same name
    assert (out / "a.pdf").read_bytes() == b"first"
