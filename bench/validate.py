"""How fast is faxd.validation, and how much memory does a 20 MB PDF cost?

Run: ``.venv/bin/python bench/validate.py`` (about 30 s). It builds its own PDFs with
``tests/pdfs.py`` and prints:

- documents validated per second, 1-page and 50-page PDFs, sequentially (one thread)
  and with 2 threads sharing one process (each validation forks its own child, so two
  threads keep two children parsing on two cores);
- the peak memory of validating a ~20 MB PDF, measured in a fresh interpreter so no
  earlier allocation hides the peak (see :func:`probe`).

Targets (from the issue): >= 50 one-page PDFs/s on 2 cores including the fork, and
validation peak memory under 3x the file size.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from faxd.config import Settings  # noqa: E402
from faxd.validation import validate_pdf  # noqa: E402
from tests import pdfs  # noqa: E402

SECONDS_PER_RUN = 3.0
MIB = 1024 * 1024


def rate(docs: list[bytes], settings: Settings, threads: int) -> float:
    """Validate ``docs`` round-robin for SECONDS_PER_RUN; return documents/second."""
    done = 0
    start = time.perf_counter()

    def worker(offset: int) -> int:
        count = 0
        while time.perf_counter() - start < SECONDS_PER_RUN:
            validate_pdf(docs[(offset + count * threads) % len(docs)], settings)
            count += 1
        return count

    if threads == 1:
        done = worker(0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            done = sum(pool.map(worker, range(threads)))
    return done / (time.perf_counter() - start)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def probe(path: str) -> None:
    """In a fresh interpreter: validate ``path`` once and print memory figures.

    The parent's peak is VmHWM from /proc/self/status, reset just before validating
    (writing 5 to /proc/self/clear_refs), so neither reading the file nor the launching
    process counts: Linux carries ``ru_maxrss`` across fork and exec, which made the
    bench's own 90 MB show up as the probe's peak. The file's bytes are loaded before
    the reset, so the parent's growth is what validation itself allocated. The child's
    peak is RUSAGE_CHILDREN ``ru_maxrss`` (the forked child is the only child); it
    includes the pages it shares copy-on-write with the parent, so its own growth is
    that peak minus the parent's RSS at fork time.
    """
    settings = Settings.from_env({})
    data = Path(path).read_bytes()
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    document = validate_pdf(data, settings)
    parent_peak = _status_bytes("VmHWM")
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(len(data), before, parent_peak, child_peak, document.pages)


def memory(label: str, pdf: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.pdf"
        path.write_bytes(pdf)
        out = subprocess.run(
            [sys.executable, __file__, "--probe", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    file_size, before, parent_peak, child_peak, pages = map(int, out)
    parent_growth = max(0, parent_peak - before)
    child_growth = max(0, child_peak - before)
    attributable = file_size + parent_growth + child_growth
    print(f"{label} ({file_size / MIB:.1f} MiB, {pages} pages):")
    print(
        f"  parent RSS before validate (interpreter + file bytes): {before / MIB:.1f}"
    )
    print(f"  parent peak (VmHWM): {parent_peak / MIB:.1f} MiB "
          f"(+{parent_growth / MIB:.1f} MiB)")  # fmt: skip
    print(f"  child peak ru_maxrss (RUSAGE_CHILDREN, incl. shared CoW pages): "
          f"{child_peak / MIB:.1f} MiB "
          f"(+{child_growth / MIB:.1f} MiB own)")  # fmt: skip
    print(f"  file bytes + parent growth + child growth: {attributable / MIB:.1f} MiB "
          f"= {attributable / file_size:.2f}x the file size (target < 3x)")  # fmt: skip
    print(f"  parent peak + child peak (double-counts shared pages and the "
          f"interpreter): {(parent_peak + child_peak) / MIB:.1f} MiB")  # fmt: skip


def main() -> None:
    settings = dataclasses.replace(Settings.from_env({}), max_pages=200)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{SECONDS_PER_RUN:g} s per figure")  # fmt: skip
    one_page = [pdfs.text_pdf(1, f"bench {i}") for i in range(64)]
    fifty = [pdfs.text_pdf(50, f"bench {i}") for i in range(8)]
    for label, docs in (("1-page", one_page), ("50-page", fifty)):
        sequential = rate(docs, settings, 1)
        threaded = rate(docs, settings, 2)
        print(f"{label:8} PDFs: {sequential:6.1f}/s sequential (1 thread), "
              f"{threaded:6.1f}/s with 2 threads (one child process each)")  # fmt: skip
    memory("20 MB PDF of 4 scanned-image pages", pdfs.big_pdf(20_000_000, pages=4))
    heavy_text = "content-heavy " * 7_000  # ~100 kB of uncompressed text per page
    memory("20 MB PDF of 200 text pages", pdfs.text_pdf(200, heavy_text))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2])
    else:
        main()
