"""What a caption costs: each captioning architecture the product can load, with random weights in
its published shape (the forward passes cost the same as the trained model's; only the words
differ), on the same photos as the image embedding, one photo at a time as indexing runs it.

Every caption is held to ``CAPTION_TOKENS`` new tokens (a COCO caption's length), so the
architectures are compared on the same work; the image embedding of the benchmark's model is
timed on the same photos as the baseline.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..embedder import Embedder
from .report import Report

CAPTION_TOKENS = 12
PHOTOS = 8


def _blip_base():
    from transformers import BlipConfig, BlipForConditionalGeneration

    # Salesforce/blip-image-captioning-base: ViT-B/16 at 384 px, a 12-layer BERT-base decoder.
    return BlipForConditionalGeneration(BlipConfig()), 384


def _git_base():
    from transformers import GitConfig, GitForCausalLM

    # microsoft/git-base-coco: CLIP ViT-B/16 at 224 px, a 6-layer decoder.
    return GitForCausalLM(GitConfig()), 224


def _florence2_base():
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    # microsoft/Florence-2-base: DaViT (128-1024 wide, 1-1-9-1 deep) at 768 px, BART-base (6+6 layers).
    text = dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=51290)
    config = Florence2Config(text_config=text, vision_config={"projection_dim": 768})
    return Florence2ForConditionalGeneration(config), 768


ARCHITECTURES = {"BLIP base": _blip_base, "GIT base": _git_base, "Florence-2 base": _florence2_base}


def _pixels(photos: list[Image.Image], side: int):
    import torch

    arrays = [np.asarray(photo.convert("RGB").resize((side, side), Image.BICUBIC), dtype=np.float32) / 255.0
              for photo in photos]
    return [torch.from_numpy((a - 0.5) / 0.5).permute(2, 0, 1).unsqueeze(0) for a in arrays]


def _caption_seconds(model, pixels, florence: bool) -> float:
    import torch

    extra = {}
    if florence:  # the photo's 577 image tokens (at 768 px), then the task prompt that asks for a caption
        prompt = [model.config.image_token_id] * 577 + [0, 2264, 473, 5, 2274, 6190, 116, 2]
        extra["input_ids"] = torch.tensor([prompt])
    started = time.process_time()
    with torch.inference_mode():
        for pixel_values in pixels:
            model.generate(pixel_values=pixel_values, max_new_tokens=CAPTION_TOKENS, min_new_tokens=CAPTION_TOKENS,
                           do_sample=False, num_beams=1, **extra)
    return (time.process_time() - started) / len(pixels)


def run(report: Report, embedder: Embedder, photos: list[Path]) -> None:
    import torch

    images = [Image.open(p).convert("RGB") for p in photos[:PHOTOS]] or \
        [Image.fromarray(np.random.default_rng(n).integers(0, 255, (480, 640, 3), dtype=np.uint8)) for n in range(PHOTOS)]
    section = f"captions ({len(images)} photos, {CAPTION_TOKENS} tokens each, CPU time per photo)"
    embedder.embed_images(images[:2])  # warm
    started = time.process_time()
    for image in images:
        embedder.embed_images([image])
    embedding = (time.process_time() - started) / len(images)
    report.add(section, "image embedding (baseline)", 1000 * embedding, "ms")
    torch.manual_seed(0)
    for name, build in ARCHITECTURES.items():
        try:
            model, side = build()
        except Exception as exc:  # an architecture this transformers can't build: said, not fatal
            report.add(section, f"{name}: not measured ({type(exc).__name__}: {exc})"[:150], 0, "")
            continue
        model.eval()
        pixels = _pixels(images, side)
        try:
            _caption_seconds(model, pixels[:1], name.startswith("Florence"))  # warm
            seconds = _caption_seconds(model, pixels, name.startswith("Florence"))
        except Exception as exc:
            report.add(section, f"{name}: not measured ({type(exc).__name__}: {exc})"[:150], 0, "")
            continue
        report.add(section, name, 1000 * seconds, "ms", baseline="image embedding", ratio=seconds / embedding)
        del model
