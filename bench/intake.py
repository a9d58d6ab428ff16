"""Intake figures, as issue 5 names them: the API and the hot folder in one run.

Run: ``.venv/bin/python bench/intake.py``. It runs ``bench/intake_api.py`` (documents
accepted per second through the API; the API's peak RSS during ten concurrent
20 MB uploads) and ``bench/intake_folder.py`` (documents accepted per second through
the folder; time from a file's close to its job existing, p50/p95) one after the
other, each with its own redis-server. Prints figures; asserts nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    codes = [
        subprocess.call([sys.executable, str(HERE / name)])
        for name in ("intake_api.py", "intake_folder.py")
    ]
    raise SystemExit(max(codes))
