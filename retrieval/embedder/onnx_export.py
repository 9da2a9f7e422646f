"""What the text side's and the image side's ONNX exports share: where an export lives, how it
is optimised and published whole, and how a refusal is remembered.

An export is keyed by the checkpoint folder and the size and change time of every
file in it, so new weights or a new tokenizer make a new export, never a stale one.
It is made in a scratch folder and renamed into place, so a reader sees a whole
export or none. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

from .cache import cache_root
from .checkpoint import local_folder

log = logging.getLogger(__name__)


def checkpoint_folder(name: str) -> Path | None:
    """The folder holding the checkpoint's files: a local folder, or its snapshot in the Hugging Face cache."""
    folder = local_folder(name)
    if folder is not None:
        return folder.resolve()
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # a malformed id: nothing cached under it
        return None
    return Path(cached).resolve().parent if isinstance(cached, str) else None


def export_folder(name: str, side: str, export_format: int) -> Path | None:
    """Where the ``side`` ("text", "image") export of this checkpoint, as its files are now, lives
    (None: it can't be told)."""
    folder = checkpoint_folder(name)
    if folder is None:
        return None
    digest = hashlib.sha256(f"{export_format}|{folder}".encode())
    try:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file():  # follows the Hub cache's links to the real files
                stat = entry.stat()
                digest.update(f"|{entry.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    except OSError:
        return None
    return cache_root() / f"{side}-export" / digest.hexdigest()[:24]


def read_facts(folder: Path, export_format: int) -> dict | None:
    """The facts an export was written with (``facts.json``), if it is of this format."""
    try:
        raw = json.loads((folder / "facts.json").read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) and raw.pop("format", None) == export_format else None


def write_facts(folder: Path, export_format: int, facts: dict) -> None:
    (folder / "facts.json").write_text(json.dumps({"format": export_format, **facts}, indent=1))


def refusal_of(target: Path) -> Path:
    """The note left where an export was tried and failed: not tried again for the same files."""
    return target.with_name(target.name + ".refused")


def remember_refusal(target: Path, why: str, side: str) -> None:
    """An export takes seconds: it is not tried again for the same files; deleting the note retries."""
    path = refusal_of(target)
    with contextlib.suppress(OSError):
        path.write_text(why + "\n")
        log.info("the %s side of this model keeps going through torch; delete %s to try the export again",
                 side, path)


def publish(scratch: Path, target: Path) -> None:
    """Atomic: a reader sees a whole export or none."""
    try:
        scratch.rename(target)
    except OSError:  # another process exported it at the same time
        pass


def save_optimised(traced: Path, folder: Path, model_file: str, weights_file: str) -> None:
    """The graph as ONNX Runtime optimises it (portable optimisations only: no layouts of this CPU),
    with the weights in a file of their own."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(folder / model_file)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", weights_file)
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    onnxruntime.InferenceSession(str(traced), options, providers=["CPUExecutionProvider"])


def open_session(path: Path, threads: int | None, optimised: bool = True, prepack: bool = True):
    """An ONNX Runtime session on the CPU. ``optimised``: the graph was optimised when it was
    exported, so opening it is reading its weights, not rebuilding it (a third of the time).
    ``prepack``: lay the matrix weights out for the CPU's kernels as the session opens. That costs
    0.2 s for a ViT-B/32's text side and 0.35 s for its image side, and saves about 8 ms per text
    query and 5 ms per photo (2 cores of an AMD EPYC): worth it for a process that embeds a lot (the
    app, a large index), not for one query."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings are about graph details, not for users
    if optimised:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
