"""A tiny CLIP model built from a config, saved like a real one.

The weights are random, so tests assert only what holds for any weights. The
tokenizer's vocabulary is hand-made: every byte, plus a few merges.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

MERGES = ["t h", "th e</w>", "a n", "an d</w>", "o n</w>", "i n", "c a", "ca t</w>", "d o", "do g</w>"]


def build_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(bytes_to_unicode().values())
    tokens = (
        byte_chars
        + [c + "</w>" for c in byte_chars]
        + ["".join(m.split()) for m in MERGES]
        + ["<|startoftext|>", "<|endoftext|>"]
    )
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                              model_max_length=77)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)

    torch.manual_seed(seed)
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=image_size, patch_size=8),
        projection_dim=projection_dim,
    )
    CLIPModel(config).save_pretrained(folder)
    return folder
