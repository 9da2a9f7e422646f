"""Where and in which arithmetic the model runs: ``DEVICE`` and ``PRECISION``."""

from __future__ import annotations

import torch

from ..errors import RetrievalError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def use_threads(threads: int | None) -> None:
    """``TORCH_THREADS``: the CPU threads torch computes with (every model this process loads)."""
    if threads:
        torch.set_num_threads(threads)


def resolve_device(setting: str) -> str:
    """auto: a CUDA GPU, else Apple's MPS, else the CPU. A named device must exist."""
    setting = (setting or "auto").strip().lower()
    if setting not in DEVICES and not setting.startswith("cuda:"):
        raise RetrievalError(f"DEVICE={setting!r}: use one of {', '.join(DEVICES)} (or cuda:N).")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if setting == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if setting.startswith("cuda") and not cuda:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise RetrievalError(
            f"DEVICE={setting} but PyTorch sees no CUDA GPU here (torch {torch.__version__} is {build}). "
            "Set DEVICE=auto or DEVICE=cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU.")
    if setting.startswith("cuda:") and int(setting.split(":", 1)[1] or 0) >= torch.cuda.device_count():
        raise RetrievalError(f"DEVICE={setting}: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
    if setting == "mps" and not mps:
        raise RetrievalError("DEVICE=mps but Apple's Metal (MPS) backend is not available here. "
                             "Set DEVICE=auto or DEVICE=cpu.")
    return setting


def compute_dtype(precision: str, device: str) -> tuple[torch.dtype | None, str]:
    """(dtype, why). auto: half precision on a GPU; on a CPU float32 unless it computes bfloat16
    natively, and then ``None``: a timed trial decides (``precision_trial.py``)."""
    if precision not in PRECISIONS:
        raise RetrievalError(f"PRECISION={precision!r}: use one of {', '.join(PRECISIONS)}.")
    if precision != "auto":
        if precision == "float16" and device == "cpu":
            raise RetrievalError("PRECISION=float16 is for GPUs; on a CPU use auto, float32 or bfloat16.")
        return getattr(torch, precision), f"{precision}: PRECISION={precision}"
    if device != "cpu":
        return torch.float16, f"float16: half precision on the GPU ({device})"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    if not native:
        return torch.float32, "float32: this CPU has no native bfloat16"
    return None, "to be measured"
