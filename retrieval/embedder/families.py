"""The model families the product knows, told apart by the checkpoint's own ``model_type``.

Each family differs only in facts, not code: which transformers class holds it,
how its model card pads text, which modules form its text side, which weights
identify it, how to read its scores and which languages it reads. Adding a
family is adding an entry here (and its reference test).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from .contract import ENGLISH, MANY, Languages

# Tokenizers built for many languages (SigLIP 2's Gemma tokenizer, XLM-R's).
MULTILINGUAL_TOKENIZERS = ("GemmaTokenizer", "GemmaTokenizerFast", "Siglip2Tokenizer", "XLMRobertaTokenizer",
                           "XLMRobertaTokenizerFast")
MULTILINGUAL_VOCABULARY = 100_000  # an English tokenizer has 30-50k entries; multilingual ones 250k


@dataclass(frozen=True)
class Family:
    label: str
    model_class: str  # the transformers class, imported when the model loads
    text_padding: str  # as the model card tokenizes: "longest" (CLIP) or "max_length" (SigLIP)
    text_modules: tuple[str, ...]  # what a text query runs through (kept in the text precision)
    fingerprint_weights: tuple[str, ...]  # same weights here, same vectors
    dim_of: Callable[[Any], int]  # the vector size, from the config
    languages_of: Callable[[dict, dict], Languages]  # (config.json, tokenizer_config.json) -> languages
    # How a text query uses bfloat16: "weights" (a bfloat16 copy of the text side: a short
    # query is bound by reading the weights) or "autocast" (bfloat16 matrix products on float32
    # weights: 64 padded tokens are bound by arithmetic, and a bfloat16 copy drifts past the
    # reference check).
    text_bfloat16: str = "weights"
    sigmoid_scores: bool = False  # trained with a sigmoid loss: the model defines a match probability
    typical_text_match: float = 0.2  # where good text matches start, for softmax-trained families


def _tokenizer_languages(config: dict, tokenizer_config: dict) -> Languages:
    tokenizer = str(tokenizer_config.get("tokenizer_class") or "")
    vocabulary = int((config.get("text_config") or {}).get("vocab_size") or 0)
    if tokenizer in MULTILINGUAL_TOKENIZERS or vocabulary >= MULTILINGUAL_VOCABULARY:
        return MANY
    return ENGLISH


CLIP = Family(
    label="CLIP",
    model_class="CLIPModel",
    text_padding="longest",
    text_modules=("text_model", "text_projection"),
    fingerprint_weights=("text_projection.weight", "visual_projection.weight"),
    dim_of=lambda config: int(config.projection_dim),
    languages_of=lambda config, tokenizer: ENGLISH,
)

# CLIP's architecture and conventions, trained on 300+ languages with an XLM-R style tokenizer.
METACLIP_2 = replace(CLIP, label="MetaCLIP 2", model_class="MetaClip2Model",
                     languages_of=lambda config, tokenizer: MANY)

SIGLIP = Family(
    label="SigLIP",
    model_class="SiglipModel",
    text_padding="max_length",  # trained on text padded to 64 tokens: other padding changes the vectors
    text_modules=("text_model",),
    fingerprint_weights=("text_model.head.weight", "vision_model.head.mlp.fc2.weight"),
    dim_of=lambda config: int(config.vision_config.hidden_size),
    languages_of=_tokenizer_languages,  # SigLIP 2 (Gemma tokenizer) and the multilingual SigLIP read many
    text_bfloat16="autocast",
    sigmoid_scores=True,
)

FAMILIES = {"clip": CLIP, "metaclip_2": METACLIP_2, "siglip": SIGLIP}

NOT_SUPPORTED = {
    "siglip2": ("it is a SigLIP 2 NaFlex checkpoint (variable resolution), which needs per-image patch masks "
                "this product does not compute. Use a fixed-resolution SigLIP 2 checkpoint instead, such as "
                "google/siglip2-base-patch32-256 or google/siglip2-base-patch16-256."),
}


def label_of(family: Family, tokenizer_config: dict) -> str:
    """The family's name for people; SigLIP 2's fixed-resolution checkpoints share SigLIP's class
    and are told apart by their Gemma tokenizer."""
    if family is SIGLIP and str(tokenizer_config.get("tokenizer_class") or "").startswith(("Gemma", "Siglip2")):
        return "SigLIP 2"
    return family.label


def family_for(model_type: str | None) -> Family:
    """The family of a checkpoint; a ValueError says why one can't be used."""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    if model_type in NOT_SUPPORTED:
        raise ValueError(NOT_SUPPORTED[model_type])
    known = ", ".join(sorted(FAMILIES))
    raise ValueError(f"its model type '{model_type}' is not an image-text model this product reads "
                         f"(it reads {known}).")
