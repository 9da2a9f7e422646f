"""Loading a checkpoint by Hugging Face id or local folder, with failures in words.

The policy every model the product loads follows (the image-text model, SAM, Whisper):
a local folder or a Hugging Face id; the local cache before the network; when the
Hub can't be reached, one message naming the setting and how to bring a folder over
(``load_failure_message``); the device from ``DEVICE`` and the CPU threads from
``TORCH_THREADS`` (``runtime.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import RetrievalError
from ..hub import hub_unreachable
from .checkpoint import local_folder
from .families import Family, family_for

log = logging.getLogger(__name__)

DEFAULT_EXAMPLE = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def load_failure_message(name: str, reason: str, setting: str = "MODEL", example: str = DEFAULT_EXAMPLE,
                         flag: str = "--model", kind: str = "model") -> str:
    """Why a model can't be had, and the way round it: the same words for every model loaded
    (``kind``: what the model is for, as in "the captioning model")."""
    folder = "./models/" + example.rsplit("/", 1)[-1].lower()
    return (
        f"Could not load the {kind} '{name}': {reason}\n"
        "If this machine is offline or the id is wrong, download the model where you have "
        f"internet (for example `hf download {example} --local-dir {folder}`), copy the "
        f"folder here and set {setting}=/path/to/that/folder" + (f" (or pass {flag})." if flag else ".")
    )


def from_cache_or_hub(name: str, load, setting: str = "MODEL", example: str = DEFAULT_EXAMPLE,
                      flag: str = "--model", advice: str = "", kind: str = "model"):
    """``load(**options)`` of a checkpoint by local folder or Hub id: a folder as it is; an id from the
    local Hugging Face cache first (no network), then from the Hub when it answers, else one message
    naming ``setting``. ``advice`` ends that message (another way round)."""
    folder = local_folder(name)
    if folder is None and name.startswith((".", "/", "~")):
        raise RetrievalError(load_failure_message(name, f"the folder {Path(name).expanduser()} does not exist."
                                                  + advice, setting, example, flag, kind))
    if folder is not None:
        return load(str(folder))
    try:
        return load(name, local_files_only=True)
    except OSError:
        unreachable = hub_unreachable()
        if unreachable:
            raise RetrievalError(load_failure_message(
                name, f"it is not in the local cache and {unreachable}.{advice}", setting, example, flag,
                kind)) from None
        return load(name)


def load_quietly(name: str, load, **words):
    """``from_cache_or_hub(name, load, **words)`` with transformers' own warnings and progress bars
    silenced (they are not for end users), and a checkpoint that won't load as one message in words."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return from_cache_or_hub(name, load, **words)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        words.pop("advice", None)
        raise RetrievalError(load_failure_message(name, reason, **words)) from None
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()


def load_checkpoint(name: str):
    """(family, model in float32 on the CPU, processor) of a checkpoint; RetrievalError if it can't be had."""
    # Imported here so that commands which never embed (stats) start fast.
    import torch
    import transformers
    from transformers import AutoConfig, AutoProcessor

    def load(source: str, **options) -> tuple[Family, object, object]:
        family = family_for(AutoConfig.from_pretrained(source, **options).model_type)
        model_class = getattr(transformers, family.model_class)
        model = model_class.from_pretrained(source, dtype=torch.float32, **options)
        # The PIL backend is the processor's reference implementation and needs no torchvision.
        return family, model, AutoProcessor.from_pretrained(source, backend="pil", **options)

    family, model, processor = load_quietly(name, load)
    model.eval()
    log.info("loaded %s model %s", family.label, name)
    return family, model, processor
