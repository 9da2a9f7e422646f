"""Running ``python -m retrieval`` commands: as a real process (to interrupt it part-way) or in this one."""

from __future__ import annotations

import signal
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
    # Ctrl-C as from a terminal: a suite started in the background (`pytest &` in a script) ignores
    # SIGINT, and a child would inherit that.
    process = subprocess.Popen([sys.executable, "-m", "retrieval", *arguments, "-v"], cwd=REPO,
                               env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    commits = 0
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        commits += "committed" in line
        if commits >= batches or time.monotonic() > deadline:
            break
    return process


def run_in_process(settings, *arguments: str, env: dict | None = None) -> tuple[int, str, str]:
    """``python -m retrieval ARGUMENTS`` in this process, on ``settings``' model and store (and
    ``env``'s other variables): the exit status, what it printed and what it wrote to stderr."""
    import contextlib
    import io
    import os

    from retrieval.cli import main

    out, err = io.StringIO(), io.StringIO()
    env = {"MODEL": settings.model, "CHROMA_PATH": str(settings.chroma_path), **(env or {})}
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(arguments))
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return code, out.getvalue(), err.getvalue()
