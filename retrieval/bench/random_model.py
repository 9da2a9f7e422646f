"""A full-size CLIP model with random weights, from a configuration folder.

Same architecture, same cost as the trained model, so speed and memory figures
hold; nothing it ranks means anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import RetrievalError

_PROCESSOR_FILES = ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
                    "merges.txt", "special_tokens_map.json")


def build_random_clip(config_dir: Path, target: Path, seed: int = 0) -> Path:
    """Write a random-weight model next to the config's tokenizer and processor files (once)."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.utils import logging as hf_logging

    config_dir = Path(config_dir).expanduser()
    if not (config_dir / "config.json").is_file():
        raise RetrievalError(f"{config_dir} has no config.json: give a CLIP model's configuration folder "
                             "(config, tokenizer and preprocessor files; no weights needed).")
    if (target / "model.safetensors").is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    hf_logging.disable_progress_bar()
    CLIPModel(CLIPConfig.from_pretrained(config_dir)).save_pretrained(target)
    for name in _PROCESSOR_FILES:
        if (config_dir / name).is_file():
            shutil.copyfile(config_dir / name, target / name)
    return target
