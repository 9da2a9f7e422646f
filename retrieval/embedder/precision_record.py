"""What the precision trial measured, remembered per machine; readable without torch.

``precision.json`` in ``CACHE_DIR`` holds one entry per CPU, torch version, thread
count and model (``precision_trial.trial_key``). ``stats`` shows the entry of the
collection's model; ``precision --retime`` forgets it so the trial runs again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from pathlib import Path

from .cache import cache_root

log = logging.getLogger(__name__)


def cache_file() -> Path:
    return cache_root() / "precision.json"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_all() -> dict:
    try:
        known = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_all(known: dict) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    path = cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(known, handle, indent=1)
    os.replace(handle.name, path)


def remember(key: str, result: dict) -> None:
    """Best effort: a read-only home only means the trial runs again next time."""
    try:
        _write_all({**read_all(), key: result})
    except OSError as exc:
        log.debug("could not remember the precision trial: %s", exc)


def _of_model(key: str, model_name: str) -> bool:
    """Whether ``key`` (``cpu | torch version | threads | model fingerprint``) is this CPU's trial of the model."""
    parts = key.split(" | ")
    return len(parts) >= 4 and parts[0] == cpu_name() and " | ".join(parts[3:]).rsplit(" ", 1)[0] == model_name


def forget(model_name: str) -> int:
    """Drop this machine's trials of ``model_name`` (every thread count); how many there were."""
    known = read_all()
    gone = [key for key in known if _of_model(key, model_name)]
    if gone:
        _write_all({key: result for key, result in known.items() if key not in gone})
    return len(gone)


def describe(result: dict) -> str:
    """One line: the choice and the figures it was made on."""
    if "float32_cpu_ms_per_image" not in result:  # measured by an older version, on wall time
        return (f"{result.get('dtype')}: {result.get('bfloat16_ms_per_image')} ms per image in bfloat16 against "
                f"{result.get('float32_ms_per_image')} in float32 (wall time; `precision --retime` measures CPU time)")
    return (f"{result['dtype']}: the image side used {result['bfloat16_cpu_ms_per_image']} ms of CPU per image in "
            f"bfloat16 against {result['float32_cpu_ms_per_image']} in float32 (wall "
            f"{result['bfloat16_ms_per_image']} against {result['float32_ms_per_image']} ms; "
            f"measured {result.get('measured_at', '?')})")


def recorded_choice(model_name: str, precision_setting: str) -> str:
    """What ``stats`` says about the arithmetic the model's image side runs in on this machine."""
    if precision_setting != "auto":
        return f"{precision_setting} (PRECISION={precision_setting})"
    entries = [result for key, result in read_all().items() if _of_model(key, model_name) and isinstance(result, dict)]
    if not entries:
        return "auto: measured when the model first loads on this CPU (`python -m retrieval precision`)"
    latest = max(entries, key=lambda result: str(result.get("measured_at", "")))
    return describe(latest)
