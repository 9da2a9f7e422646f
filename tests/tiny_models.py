"""Tiny image-text models of each family, built from configs and saved like real ones.

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


def build_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32, projection_dim: int = 16,
                    patch_size: int = 8) -> Path:
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
                           num_attention_heads=4, image_size=image_size, patch_size=patch_size),
        projection_dim=projection_dim,
    )
    CLIPModel(config).save_pretrained(folder)
    return folder


# -- the other families -------------------------------------------------------------

TINY_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
WORDS = "a the dog cat and on in ein hund katze le chien gato perro 狗 猫 beach sunset photo of".split()


def _byte_level_bpe_vocab(special: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A Gemma-style vocabulary: special tokens, every byte (byte fallback), letters and a few merges."""
    letters = sorted(set("abcdefghijklmnopqrstuvwxyz▁"))
    merges = [("▁", "a"), ("d", "o"), ("do", "g"), ("c", "a"), ("ca", "t"), ("▁", "dog"), ("▁", "cat"),
              ("h", "u"), ("hu", "n"), ("hun", "d"), ("▁", "hund")]
    tokens = special + [f"<0x{b:02X}>" for b in range(256)] + letters + ["".join(m) for m in merges]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tiny_siglip2(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A SigLIP 2 fixed-resolution checkpoint in miniature: ``SiglipModel`` with a Gemma-style
    byte-fallback tokenizer (multilingual by construction), as google/siglip2-base-patch32-256."""
    from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _byte_level_bpe_vocab(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=merges, model_max_length=64)
    return _save_siglip(folder, tokenizer, len(vocab), seed, image_size, bos_token_id=2)


def _save_siglip(folder: Path, tokenizer, vocab_size: int, seed: int, image_size: int, **token_ids) -> Path:
    """A tiny ``SiglipModel`` and its processor around ``tokenizer`` (pad 0, end 1, 64 tokens)."""
    from transformers import SiglipConfig, SiglipModel, SiglipProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(vocab_size=vocab_size, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                         **token_ids, **TINY_TOWER),
        vision_config=dict(image_size=image_size, patch_size=8, **TINY_TOWER),
    )
    SiglipModel(config).save_pretrained(folder)
    return folder


def build_tiny_siglip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A first-generation SigLIP checkpoint in miniature: its SentencePiece tokenizer is trained here."""
    import sentencepiece
    from transformers import SiglipTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=40, model_type="unigram",
        hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=False, minloglevel=2)
    corpus.unlink()
    (folder / "spiece.vocab").unlink()
    tokenizer = SiglipTokenizer(vocab_file=str(folder / "spiece.model"), model_max_length=64)
    return _save_siglip(folder, tokenizer, tokenizer.vocab_size, seed, image_size)


def build_tiny_metaclip2(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A MetaCLIP 2 checkpoint in miniature: CLIP towers with an XLM-R style (Unigram) tokenizer."""
    from transformers import CLIPProcessor, MetaClip2Config, MetaClip2Model, XLMRobertaTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [(f"▁{w}", -2.0) for w in WORDS] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzäöüé狗猫"]
    vocab = special + pieces + [("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab, model_max_length=77)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(seed)
    config = MetaClip2Config(
        text_config=dict(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, pad_token_id=1,
                         eos_token_id=2, **TINY_TOWER),
        vision_config=dict(image_size=image_size, patch_size=8, **TINY_TOWER),
        projection_dim=16,
    )
    MetaClip2Model(config).save_pretrained(folder)
    return folder


BUILDERS = {"clip": build_tiny_clip, "siglip": build_tiny_siglip, "siglip2": build_tiny_siglip2,
            "metaclip2": build_tiny_metaclip2}


def build_tiny_sam(folder: Path, seed: int = 0) -> Path:
    """A Segment Anything model a few kilobytes big, reading photos at 64 px. Random weights give
    mask logits near 0 and middling quality predictions, which SAM's own filters would drop;
    the mask and quality heads' last layers are scaled so that masks come out crisp and
    confident, and the proposer's whole path (filters, boxes, suppression) runs."""
    from transformers import SamConfig, SamImageProcessorPil, SamModel

    folder = Path(folder)
    config = SamConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=8, output_channels=16, window_size=2, global_attn_indexes=[1],
                           mlp_dim=64, num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
    )
    torch.manual_seed(seed)
    model = SamModel(config)
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(5e7)
        model.mask_decoder.iou_prediction_head.proj_out.bias.fill_(4.0)
    model.save_pretrained(folder)
    SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


CAPTION_WORDS = "a photo of dog cat red blue street sign car tree beach".split()


def build_tiny_blip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A BLIP captioner (vision encoder, text decoder) with a word-level BERT vocabulary, saved as
    Salesforce/blip-image-captioning-base is."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CAPTION_WORDS]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, model_max_length=64)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokens), max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                         eos_token_id=3, pad_token_id=0, **TINY_TOWER),
        vision_config=dict(image_size=image_size, patch_size=8, **TINY_TOWER),
        projection_dim=16,
    )
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():  # random weights end a caption at once; these write words (and stop at 30 tokens)
        model.text_decoder.cls.predictions.bias[:5] = -20.0
    model.save_pretrained(folder)
    return folder


def build_tiny_git(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """A GIT captioner (CLIP image encoder, a causal text decoder) with the same word vocabulary,
    saved as microsoft/git-base-coco is."""
    from transformers import BertTokenizer, GitConfig, GitForCausalLM, GitProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CAPTION_WORDS]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, model_max_length=64)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size})
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(seed)
    config = GitConfig(vision_config=dict(image_size=image_size, patch_size=8, **TINY_TOWER), vocab_size=len(tokens),
                       max_position_embeddings=64, bos_token_id=2, eos_token_id=3, pad_token_id=0, **TINY_TOWER)
    model = GitForCausalLM(config)
    with torch.no_grad():  # as for the tiny BLIP: words, not an immediate end
        model.output.bias[:5] = -20.0
    model.save_pretrained(folder)
    return folder
