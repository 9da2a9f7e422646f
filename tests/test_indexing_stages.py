"""The indexing pipeline's stages are isolated: an optional stage failing on a photo never costs
the photo; the failure is recorded on it, and the next run gives it that stage only."""

from __future__ import annotations

import json

import pytest

from cli_runs import run_in_process
from photos import scene_photo
from retrieval.engine import Engine
from retrieval.indexing.photo import FAILED_STAGES_FIELD
from retrieval.indexing.regions import RegionCuts
from retrieval.indexing.stages import PerceptualHash, PhotoFacts
from retrieval.photos.facts import MARKER
from retrieval.photos.near_duplicates import HASH_FIELD
from retrieval.regions.records import REGION_COUNT_FIELD
from retrieval.store.contract import REGION_PHOTO_FIELD

UNLUCKY = "p1.jpg"


def write_three(folder):
    folder.mkdir()
    for seed in range(3):
        scene_photo(seed, size=(320, 240)).save(folder / f"p{seed}.jpg", quality=90)


def failing_on_one_photo(monkeypatch, stage_class) -> None:
    """The stage raises on one photo of three, as an analysis with a bug for one odd file does."""
    works = stage_class.run

    def run(self, photo):
        if photo.path is not None and photo.path.name == UNLUCKY:
            raise ValueError("odd photo")
        works(self, photo)

    monkeypatch.setattr(stage_class, "run", run)


def by_name(engine: Engine) -> dict[str, dict]:
    return {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}


@pytest.mark.parametrize("stage_class, field", [(PhotoFacts, MARKER), (PerceptualHash, HASH_FIELD)],
                         ids=["facts", "phash"])
def test_a_failing_analysis_costs_no_photo_and_the_next_run_completes_it(settings, tmp_path, monkeypatch,
                                                                         stage_class, field):
    folder = tmp_path / "photos"
    write_three(folder)
    failing_on_one_photo(monkeypatch, stage_class)
    report = Engine(settings).index([folder])

    assert len(report.added) == 3 and report.skipped == []
    assert [(f.path, f.stage, f.reason) for f in report.stage_failures] == [
        (str(folder / UNLUCKY), stage_class.name, "ValueError: odd photo")]
    assert report.to_dict()["failed_stages"][0]["stage"] == stage_class.name
    assert report.stages[stage_class.name] == {**report.stages[stage_class.name], "photos": 3, "failed": 1}
    stored = by_name(Engine(settings))
    assert stored[UNLUCKY][FAILED_STAGES_FIELD] == [f"{stage_class.name}: ValueError: odd photo"]
    assert field not in stored[UNLUCKY]
    assert all(field in stored[name] and FAILED_STAGES_FIELD not in stored[name] for name in ("p0.jpg", "p2.jpg"))

    monkeypatch.undo()
    later = Engine(settings)
    again = later.index([folder])
    assert again.added == [] and again.facts_read == 1 and again.stage_failures == []
    assert again.stages[stage_class.name]["photos"] == 1 and "embed" not in again.stages
    assert later._embedder is None, "only the failed stage ran again: no model was needed"
    stored = by_name(later)
    assert field in stored[UNLUCKY] and FAILED_STAGES_FIELD not in stored[UNLUCKY]
    assert Engine(settings).index([folder]).facts_read == 0  # nothing owed any more


def test_regions_failing_on_one_photo_leave_it_indexed_and_are_given_next_run(settings, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    write_three(folder)
    failing_on_one_photo(monkeypatch, RegionCuts)
    engine = Engine(settings)
    report = engine.index([folder], regions=True)

    assert len(report.added) == 3 and report.photos_given_regions == 2
    assert [(f.path, f.stage) for f in report.stage_failures] == [(str(folder / UNLUCKY), "regions")]
    stored = by_name(engine)
    assert REGION_COUNT_FIELD not in stored[UNLUCKY]
    assert stored[UNLUCKY][FAILED_STAGES_FIELD] == ["regions: ValueError: odd photo"]
    assert all(REGION_COUNT_FIELD in stored[name] for name in ("p0.jpg", "p2.jpg"))

    monkeypatch.undo()
    again = engine.index([folder], regions=True)
    assert again.added == [] and again.photos_given_regions == 1 and again.stage_failures == []
    stored = by_name(engine)
    assert REGION_COUNT_FIELD in stored[UNLUCKY] and FAILED_STAGES_FIELD not in stored[UNLUCKY]
    owners = {r.metadata[REGION_PHOTO_FIELD] for r in engine.store.regions.iter_all()}
    assert len(owners) == 3


def test_index_json_shows_each_stage_and_what_it_cost(settings, tmp_path):
    folder = tmp_path / "photos"
    write_three(folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a photo")
    code, out, err = run_in_process(settings, "index", str(folder), "--json")
    assert code == 0, err
    stages = json.loads(out)["stages"]
    assert list(stages)[:5] == ["read", "decode", "preprocess", "facts", "phash"]
    assert stages["read"]["photos"] == 4 and stages["decode"] == {**stages["decode"], "photos": 4, "failed": 1}
    assert stages["embed"]["photos"] == 3 and stages["write"]["photos"] == 3
    assert all(entry["seconds"] >= 0 for entry in stages.values())
    assert sum(entry["share"] for entry in stages.values()) == pytest.approx(1.0, abs=0.01)
