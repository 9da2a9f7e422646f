"""``PRECISION=auto`` on a CPU: bfloat16 only where it is measured to cost less here.

A CPU can compute bfloat16 natively (AVX-512 BF16) and still run a model's image
side slower in it than in float32 (without AMX: 64 against 40 ms per image on an
Intel Xeon), while on another (an AMD EPYC) it is about twice as fast. So the
answer is measured, not assumed: the image side is timed on a few pictures both
ways, once per CPU, torch version, thread count and model, and remembered
(``precision_record``).

The trial must give the same answer twice on the same machine. Wall time does not:
it follows whatever else the machine is doing during the trial's second (one run
chose float32 at 292 against 471 ms, another bfloat16 at 692 against 1,133). So the
two are compared by the CPU time they use, in interleaved rounds (float32, bfloat16,
float32, ...) so that a change of load touches both, by the median round, and
bfloat16 must win by a clear margin; otherwise float32, the exact one, stays.
"""

from __future__ import annotations

import functools
import logging
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from .precision_record import cpu_name, describe, read_all, remember

log = logging.getLogger(__name__)

TRIAL_IMAGES = 4
ROUNDS = 3
MARGIN = 0.85  # bfloat16 must use at most 85% of float32's CPU time
RUNTIME_TRIAL_IMAGES = 16  # torch against the image export (time_export)


def trial_key(model_name: str, fingerprint: str) -> str:
    return f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {model_name} {fingerprint}"


def choose(model: torch.nn.Module, pixel_shape: tuple[int, ...], key: str) -> tuple[torch.dtype, str]:
    """(the cheaper dtype, a sentence saying why) for the image side of ``model``."""
    known = read_all().get(key)
    if isinstance(known, dict) and known.get("dtype") in ("float32", "bfloat16"):
        return getattr(torch, known["dtype"]), describe(known) + ", measured before on this machine"
    result = measure(model, pixel_shape)
    remember(key, result)
    log.info("precision trial for %s: %s", key, result)
    return getattr(torch, result["dtype"]), describe(result) + ", measured now"


def measure(model: torch.nn.Module, pixel_shape: tuple[int, ...]) -> dict:
    pixels = torch.rand(TRIAL_IMAGES, *pixel_shape)
    cpu: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    for autocast in (False, True):
        _one_pass(model, pixels[:1], autocast)  # warm-up: kernels chosen, caches filled
    for _ in range(ROUNDS):
        for autocast in (False, True):
            cpu_s, wall_s = _one_pass(model, pixels, autocast)
            cpu[autocast].append(cpu_s)
            wall[autocast].append(wall_s)
    per_image = lambda seconds: round(1000 * statistics.median(seconds) / TRIAL_IMAGES, 2)  # noqa: E731
    cheaper = statistics.median(cpu[True]) < MARGIN * statistics.median(cpu[False])
    return {"dtype": "bfloat16" if cheaper else "float32",
            "float32_cpu_ms_per_image": per_image(cpu[False]), "bfloat16_cpu_ms_per_image": per_image(cpu[True]),
            "float32_ms_per_image": per_image(wall[False]), "bfloat16_ms_per_image": per_image(wall[True]),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _one_pass(model: torch.nn.Module, pixels: torch.Tensor, autocast: bool) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one forward pass of the image side."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        model.get_image_features(pixel_values=pixels)
        return time.process_time() - cpu_started, time.perf_counter() - wall_started


@functools.lru_cache(maxsize=8)
def fresh_process_cpu_s(code: str) -> float:
    """CPU seconds a fresh Python process spends running ``code`` (timed once per code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_cpu_s() -> float:
    """CPU seconds a fresh process spends importing torch and transformers."""
    return fresh_process_cpu_s("import torch, transformers")


def time_export(model: torch.nn.Module, dtype: torch.dtype, exported, torch_start_cpu_s: float,
                program=None) -> dict:
    """The image side's ONNX export (``image_export.py``) against torch in ``dtype``, by CPU time per
    image in interleaved rounds as above; the export must cost at most ``1 / MARGIN`` of torch's or
    torch wins (and is then used only for runs large enough to pay for its start). ``program``: the
    image side traced for torch (``torch_program.py``), which a run then uses instead of the model:
    it is what is timed, and its start is importing torch and loading it."""
    from .image_export import ExportedImages

    shape = (3, exported.facts.recipe.input_side, exported.facts.recipe.input_side)
    # Timed at a batch as indexing runs them: bfloat16's advantage grows with the batch (on 2 cores of an
    # AMD EPYC it costs as much as ONNX Runtime at 4 photos and 22% less at 16).
    pixels = torch.rand(RUNTIME_TRIAL_IMAGES, *shape)
    arrays = list(pixels.numpy())
    autocast = dtype == torch.bfloat16
    opening = time.process_time()
    ExportedImages(exported.folder, exported.facts, exported.threads)  # what a run pays to open it
    onnx_start = time.process_time() - opening

    def cpu_of(embed, batch) -> float:
        started = time.process_time()
        embed(batch)
        return time.process_time() - started

    if program is not None:
        torch_embed = program.embed
        # importing torch and loading the program, in a process of its own as a run does
        torch_start_cpu_s = fresh_process_cpu_s(f"import torch; torch.jit.load({str(program.path)!r})")
    else:
        torch_embed = lambda batch: _one_pass(model, torch.from_numpy(np.stack(batch)), autocast)  # noqa: E731
    cpu_of(exported.embed, arrays[:1])
    cpu_of(torch_embed, arrays[:1])
    onnx_cpu, torch_cpu = [], []
    for _ in range(ROUNDS):
        onnx_cpu.append(cpu_of(exported.embed, arrays))
        torch_cpu.append(cpu_of(torch_embed, arrays))
    per_image = lambda seconds: round(1000 * statistics.median(seconds) / RUNTIME_TRIAL_IMAGES, 2)  # noqa: E731
    torch_cheaper = statistics.median(torch_cpu) < MARGIN * statistics.median(onnx_cpu)
    return {"runtime": "torch" if torch_cheaper else "onnx", "onnx_cpu_ms_per_image": per_image(onnx_cpu),
            "torch_cpu_ms_per_image": per_image(torch_cpu), "torch_dtype": str(dtype).removeprefix("torch."),
            "torch_runs": "traced program" if program is not None else "model",
            "torch_start_cpu_s": round(torch_start_cpu_s, 2), "onnx_start_cpu_s": round(onnx_start, 3),
            "threads": torch.get_num_threads(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
