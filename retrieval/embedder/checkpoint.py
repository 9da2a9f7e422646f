"""A checkpoint's own description, read from its JSON files without loading it.

Which languages a model reads is a fact of its config and tokenizer, so voice
search and ``stats`` can answer it without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from .contract import ENGLISH, Languages
from .families import family_for


def local_folder(name: str) -> Path | None:
    """The folder ``name`` points to, or ``None`` when it is a Hugging Face id."""
    folder = Path(name).expanduser()
    return folder if folder.is_dir() else None


def read_json(name: str, filename: str) -> dict:
    """``filename`` of the checkpoint from its folder or the local Hugging Face cache; {} if absent."""
    folder = local_folder(name)
    if folder is not None:
        path: Path | None = folder / filename
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, filename)
        except Exception:  # a malformed id: nothing cached under it
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def languages_of(name: str) -> Languages:
    """The languages the checkpoint's text side reads (English when it can't be told)."""
    config = read_json(name, "config.json")
    try:
        family = family_for(config.get("model_type"))
    except ValueError:
        return ENGLISH
    return family.languages_of(config, read_json(name, "tokenizer_config.json"))
