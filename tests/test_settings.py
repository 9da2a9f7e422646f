"""Settings read from the environment: the model's setting and its earlier name."""

from __future__ import annotations

from retrieval import Settings
from retrieval.settings import DEFAULT_MODEL


def test_model_is_the_setting_and_clip_model_still_works(monkeypatch):
    monkeypatch.delenv("MODEL", raising=False)
    monkeypatch.delenv("CLIP_MODEL", raising=False)
    assert Settings.from_env().model == DEFAULT_MODEL
    monkeypatch.setenv("CLIP_MODEL", "old/name")
    assert Settings.from_env().model == "old/name"
    monkeypatch.setenv("MODEL", "google/siglip2-base-patch32-256")
    assert Settings.from_env().model == "google/siglip2-base-patch32-256"  # the new name wins


def test_device_setting(monkeypatch):
    monkeypatch.delenv("DEVICE", raising=False)
    assert Settings.from_env().device == "auto"
    monkeypatch.setenv("DEVICE", " CUDA ")
    assert Settings.from_env().device == "cuda"
