"""Settings read from the environment: checked once when made, in groups for the parts that use them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from cli_runs import REPO
from retrieval import RetrievalError, Settings
from retrieval.settings import DEFAULT_MODEL, AppSettings


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


@pytest.mark.parametrize("variable, value, allowed", [
    ("DEVICE", "tpu", "auto, cpu, cuda, mps"),
    ("PRECISION", "half", "auto, float32, bfloat16, float16"),
    ("ASR_BACKEND", "nope", "faster-whisper, openai-whisper"),
    ("STORE", "postgres", "chroma, milvus:FOLDER"),
    ("REGIONS_PER_PHOTO", "500", "at most 64"),
])
def test_a_wrong_setting_stops_every_command_at_once_naming_what_it_may_be(monkeypatch, variable, value, allowed):
    monkeypatch.setenv(variable, value)
    with pytest.raises(RetrievalError, match=f"{variable}.*{re.escape(allowed)}"):
        Settings.from_env()
    with pytest.raises(RetrievalError, match=variable):
        Settings(**{{"DEVICE": "device", "PRECISION": "precision", "ASR_BACKEND": "asr_backend", "STORE": "store",
                     "REGIONS_PER_PHOTO": "regions_per_photo"}[variable]: int(value) if value.isdigit() else value})


@pytest.mark.slow
def test_stats_with_a_wrong_device_fails_before_touching_anything(tmp_path):
    env = dict(os.environ, DEVICE="tpu", CHROMA_PATH=str(tmp_path / "store"))
    done = subprocess.run([sys.executable, "-m", "retrieval", "stats"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: DEVICE='tpu': use one of auto, cpu, cuda, mps (or cuda:N for one GPU)."
    assert not (tmp_path / "store").exists()


def test_each_part_gets_its_own_group_and_media_lies_beside_the_store(tmp_path):
    settings = Settings(chroma_path=tmp_path / "chroma", collection="mine", asr_model="tiny.en")
    assert settings.chroma.collection == "mine" and settings.chroma.path == tmp_path / "chroma"
    assert settings.speech.model == "tiny.en" and settings.app.port == 7860
    assert settings.media_folder == (tmp_path / "chroma" / "media").resolve()
    milvus = settings.with_overrides(store=f"milvus:{tmp_path / 'lite'}")
    assert milvus.media_folder == (tmp_path / "lite" / "media").resolve()
    assert milvus.with_overrides(media_path=tmp_path / "m").media_folder == (tmp_path / "m").resolve()


def test_the_app_listens_where_the_settings_say(monkeypatch):
    for name in ("APP_HOST", "APP_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "APP_SHARE"):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().app == AppSettings("127.0.0.1", 7860, False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    assert Settings.from_env().app == AppSettings("0.0.0.0", 7861, False)
    monkeypatch.setenv("APP_PORT", "9000")
    monkeypatch.setenv("APP_SHARE", "1")
    assert Settings.from_env().app == AppSettings("0.0.0.0", 9000, True)
