"""``PRECISION=auto`` on a CPU: bfloat16 only where it is measured to be faster here.

A CPU can compute bfloat16 natively (AVX-512 BF16) and still run a model's image
side slower in it than in float32 (without AMX: 64 against 40 ms per image on an
Intel Xeon), while on another (an AMD EPYC) it is about twice as fast. So the
answer is measured, not assumed: the image side is timed on a few pictures both
ways, once per CPU, torch version, thread count and model, and remembered in a
small cache file (``precision.json`` in ``CACHE_DIR``, default ``~/.cache/photo-search``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from .cache import cache_root

log = logging.getLogger(__name__)

TRIAL_IMAGES = 4
REPEATS = 2
MARGIN = 0.95  # bfloat16 must win clearly: within noise, float32 (exact) is kept


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


def trial_key(model_name: str, fingerprint: str) -> str:
    return f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {model_name} {fingerprint}"


def choose(model: torch.nn.Module, pixel_shape: tuple[int, ...], key: str) -> tuple[torch.dtype, str]:
    """(the faster dtype, a sentence saying why) for the image side of ``model``."""
    known = _read().get(key)
    if known:
        return getattr(torch, known["dtype"]), _because(known, "measured before on this machine")
    pixels = torch.rand(TRIAL_IMAGES, *pixel_shape)
    float32_s = _seconds(model, pixels, autocast=False)
    bfloat16_s = _seconds(model, pixels, autocast=True)
    result = {"dtype": "bfloat16" if bfloat16_s < MARGIN * float32_s else "float32",
              "float32_ms_per_image": round(1000 * float32_s / TRIAL_IMAGES, 2),
              "bfloat16_ms_per_image": round(1000 * bfloat16_s / TRIAL_IMAGES, 2)}
    _write(key, result)
    log.info("precision trial for %s: %s", key, result)
    return getattr(torch, result["dtype"]), _because(result, "measured now")


def _because(result: dict, when: str) -> str:
    return (f"{result['dtype']}: the image side took {result['bfloat16_ms_per_image']} ms per image in "
            f"bfloat16 and {result['float32_ms_per_image']} ms in float32 ({when})")


def _seconds(model: torch.nn.Module, pixels: torch.Tensor, autocast: bool) -> float:
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        model.get_image_features(pixel_values=pixels[:1])  # warm-up: kernels chosen, caches filled
        for _ in range(REPEATS):
            started = time.perf_counter()
            model.get_image_features(pixel_values=pixels)
            best = min(best, time.perf_counter() - started)
    return best


def _read() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write(key: str, result: dict) -> None:
    """Best effort and atomic: a read-only home only means the trial runs again next time."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = _read()
        known[key] = result
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
            json.dump(known, handle, indent=1)
        os.replace(handle.name, path)
    except OSError as exc:
        log.debug("could not remember the precision trial: %s", exc)
