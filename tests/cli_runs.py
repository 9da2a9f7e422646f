"""Running ``python -m retrieval index`` as a real process, to interrupt it part-way."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def index_until_committed(folder: Path, env: dict, batches: int, timeout: float = 120) -> subprocess.Popen:
    """Start an index run with ``-v`` and return it once it has logged ``batches`` commits
    (or the time is up). Its stderr is still open for what it says afterwards."""
    return run_until_committed(["index", str(folder)], env, batches, timeout)


def run_until_committed(arguments: list[str], env: dict, batches: int, timeout: float = 120) -> subprocess.Popen:
    """``python -m retrieval ARGUMENTS -v``, returned once it has logged ``batches`` commits."""
    process = subprocess.Popen([sys.executable, "-m", "retrieval", *arguments, "-v"], cwd=REPO,
                               env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    commits = 0
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        commits += "committed" in line
        if commits >= batches or time.monotonic() > deadline:
            break
    return process
