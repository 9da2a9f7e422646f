"""Full-size image-text models with random weights, from a configuration.

Same architecture, same cost as the trained model, so speed and memory figures
hold; nothing it ranks means anything. A configuration is a folder (config,
tokenizer and preprocessor files, no weights) or the name of one built in here.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import RetrievalError

_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
                    "vocab.json", "merges.txt", "special_tokens_map.json", "spiece.model")

# google/siglip2-base-patch32-256 as published (its config.json and preprocessor_config.json):
# a ViT-B/32 image side at 256 px, a 12-layer text side over 64 tokens and Gemma's 256k vocabulary.
_SIGLIP_BASE_SIDE = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                     "num_hidden_layers": 12, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}
BUILT_IN = {
    "siglip2-base-patch32-256": {
        "config": {"model_type": "siglip",
                   "text_config": {**_SIGLIP_BASE_SIDE, "vocab_size": 256000, "max_position_embeddings": 64,
                                   "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2},
                   "vision_config": {**_SIGLIP_BASE_SIDE, "image_size": 256, "patch_size": 32}},
        "image_processor": {"size": {"height": 256, "width": 256}, "resample": 2, "image_mean": [0.5, 0.5, 0.5],
                            "image_std": [0.5, 0.5, 0.5]},
    },
}


def build_random_model(configuration: str | Path, work: Path, seed: int = 0) -> Path:
    """A random-weight model in ``work`` (built once), loadable like a downloaded one."""
    name = str(configuration)
    if name in BUILT_IN:
        return _build_built_in(name, work / f"random-{name}", seed)
    return build_random_from_folder(Path(name), work / f"random-{Path(name).name}", seed)


def build_random_from_folder(config_dir: Path, target: Path, seed: int = 0) -> Path:
    """Random weights next to a copy of the configuration's tokenizer and processor files."""
    config_dir = Path(config_dir).expanduser()
    if not (config_dir / "config.json").is_file():
        raise RetrievalError(f"{config_dir} has no config.json: give a model's configuration folder "
                             f"(config, tokenizer and preprocessor files; no weights needed) or one of "
                             f"{', '.join(BUILT_IN)}.")
    if (target / "model.safetensors").is_file():
        return target
    _save_random_weights(json.loads((config_dir / "config.json").read_text()), target, seed)
    for name in _PROCESSOR_FILES:
        if (config_dir / name).is_file():
            shutil.copyfile(config_dir / name, target / name)
    return target


def _build_built_in(name: str, target: Path, seed: int) -> Path:
    if (target / "model.safetensors").is_file():
        return target
    spec = BUILT_IN[name]
    _save_random_weights(spec["config"], target, seed)
    _stand_in_siglip_processor(spec["image_processor"]).save_pretrained(target)
    return target


def _save_random_weights(config: dict, target: Path, seed: int) -> None:
    from ..embedder import save_random_weights

    try:
        save_random_weights(config, target, seed)
    except ValueError as exc:
        raise RetrievalError(f"Can't build a random model: {exc}") from None


def _stand_in_siglip_processor(image_processor: dict):
    """The published image processor with a stand-in tokenizer: Gemma's 34 MB vocabulary is not
    on this machine. Ids stay inside the model's vocabulary, and text is padded to 64 tokens
    as with the real one, so the text side costs the same."""
    from transformers import SiglipProcessor
    from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    letters = sorted(set("abcdefghijklmnopqrstuvwxyz▁"))
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)] + letters)}
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=64)
    return SiglipProcessor(image_processor=SiglipImageProcessorPil(**image_processor), tokenizer=tokenizer)


def add_model_arguments(parser) -> None:
    """An evaluation's choice of model: --model, or --random-weights CONFIG."""
    parser.add_argument("--model", help="image-text model id or folder (default: MODEL)")
    parser.add_argument("--random-weights", metavar="CONFIG",
                        help="a full-size model with random weights from this configuration folder")


@contextlib.contextmanager
def evaluated_settings(args) -> Iterator:
    """The settings from the environment with the model ``add_model_arguments`` chose (a random-weight
    one built in a temporary folder, gone afterwards)."""
    from ..settings import Settings

    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="evaluated-model-") as models:
        if args.random_weights:
            settings = settings.with_overrides(model=str(build_random_model(args.random_weights, Path(models))))
        elif args.model:
            settings = settings.with_overrides(model=args.model)
        yield settings
