"""Data set loading, offline, with real components: a real HTTP server on
127.0.0.1 (with failures), real archives, real Hugging Face ``datasets`` files,
and the real indexer and store."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from dataset_server import FlakyPhotoServer
from photos import jpeg_bytes, write_photos
from retrieval.cli import main
from retrieval.errors import RetrievalError
from retrieval.loaders.download import Downloader
from retrieval.loaders.load import load, prepare
from retrieval.loaders.sources import LoadOptions

pytestmark = pytest.mark.slow

PHOTO_COLUMNS = ["photo_id", "photo_url", "photo_image_url", "photo_description", "ai_description",
                 "photographer_first_name", "photographer_last_name", "photo_width", "photo_height",
                 "photo_location_name", "photo_location_country", "photo_location_city"]
KEYWORD_COLUMNS = ["photo_id", "keyword", "ai_service_1_confidence", "ai_service_2_confidence",
                   "suggested_by_user"]


def write_tsv(path: Path, columns: list[str], rows: list[dict], delimiter: str = "\t") -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def unsplash_lite(folder: Path, server: FlakyPhotoServer, count: int = 8) -> list[str]:
    """A small data set in the Unsplash Lite layout, its photos served by ``server``."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"ph{i:02d}X" for i in range(count)]
    rows = []
    for i, photo_id in enumerate(ids):
        server.files[f"/photos/{photo_id}"] = jpeg_bytes(100 + i, size=(96, 64))
        rows.append({
            "photo_id": photo_id,
            "photo_url": f"https://unsplash.com/photos/{photo_id}",
            "photo_image_url": f"{server.base_url}/photos/{photo_id}",
            "photo_description": "" if i == 1 else f"described photo {i}",
            "ai_description": f"an ai caption {i}",
            "photographer_first_name": "Ana", "photographer_last_name": f"Lima{i}",
            "photo_width": 4000, "photo_height": 3000,
            "photo_location_name": "Lisbon, Portugal" if i == 0 else "",
            "photo_location_country": "Portugal" if i == 2 else "",
            "photo_location_city": "Porto" if i == 2 else "",
        })
    write_tsv(folder / "photos.tsv000", PHOTO_COLUMNS, rows[: count // 2])  # two shards
    write_tsv(folder / "photos.tsv001", PHOTO_COLUMNS, rows[count // 2:])
    keywords = []
    for i, photo_id in enumerate(ids):
        keywords.append({"photo_id": photo_id, "keyword": "mountain" if i % 2 else "sea",
                         "ai_service_1_confidence": 90, "ai_service_2_confidence": "", "suggested_by_user": "f"})
        keywords.append({"photo_id": photo_id, "keyword": "blurry guess", "ai_service_1_confidence": 12,
                         "ai_service_2_confidence": 20, "suggested_by_user": "f"})
    keywords.append({"photo_id": ids[3], "keyword": "Grandma", "ai_service_1_confidence": "",
                     "ai_service_2_confidence": "", "suggested_by_user": "t"})
    write_tsv(folder / "keywords.tsv000", KEYWORD_COLUMNS, keywords)
    return ids


def options(tmp_path: Path, **changes) -> LoadOptions:
    downloader = Downloader(workers=4, retries=2, timeout=1.0, backoff=0.01)
    return LoadOptions(dest=tmp_path / "downloads", downloader=downloader, **changes)


def by_photo_id(engine) -> dict[str, dict]:
    return {r.metadata["photo_id"]: r.metadata for r in engine.store.iter_all()}


def test_unsplash_lite_with_retries_failures_and_metadata(engine, tmp_path):
    with FlakyPhotoServer(slow_seconds=2.5) as server:
        ids = unsplash_lite(tmp_path / "lite", server)
        server.plan[f"/photos/{ids[1]}"] = ["503", "ok"]
        server.plan[f"/photos/{ids[2]}"] = ["slow", "ok"]
        server.plan[f"/photos/{ids[3]}"] = ["truncated", "ok"]
        server.always[f"/photos/{ids[4]}"] = "404"
        server.always[f"/photos/{ids[5]}"] = "500"
        report = load(engine, f"unsplash-lite:{tmp_path / 'lite'}", options(tmp_path))

    assert (report.available, report.selected, report.downloaded) == (8, 8, 6)
    failed = {Path(f.target).stem: f.reason for f in report.failures}
    assert failed == {ids[4]: "HTTP 404", ids[5]: "HTTP 500"}
    assert server.requests[f"/photos/{ids[4]}"] == 1  # a 404 is not retried
    assert server.requests[f"/photos/{ids[5]}"] == 3  # first try + 2 retries
    assert all("w=640" in q for q in server.queries)  # bounded width through imgix parameters
    assert len(report.index.added) == 6 and engine.store.count() == 6
    assert not list((tmp_path / "downloads" / "photos").glob("*.part"))

    stored = by_photo_id(engine)
    assert stored[ids[0]]["description"] == "described photo 0"
    assert stored[ids[1]]["description"] == "an ai caption 1"  # no human description
    assert stored[ids[0]]["photographer"] == "Ana Lima0"
    assert stored[ids[0]]["url"] == f"https://unsplash.com/photos/{ids[0]}"
    assert stored[ids[0]]["location"] == "Lisbon, Portugal" and stored[ids[2]]["location"] == "Porto, Portugal"
    assert stored[ids[3]]["tags"] == ["mountain", "grandma"]  # confident or user-suggested only
    assert stored[ids[0]]["source"] == "unsplash-lite"
    mountains = engine.search_tags(["mountain"], k=10)
    assert {r.metadata["photo_id"] for r in mountains} == {ids[1], ids[3], ids[7]}


def test_an_interrupted_run_resumes_and_a_rerun_changes_nothing(engine, tmp_path):
    with FlakyPhotoServer() as server:
        ids = unsplash_lite(tmp_path / "lite", server)
        for photo_id in ids[5:]:  # the server goes down part way
            server.always[f"/photos/{photo_id}"] = "503"
        first = load(engine, f"unsplash-lite:{tmp_path / 'lite'}", options(tmp_path))
        assert first.downloaded == 5 and len(first.failures) == 3 and engine.store.count() == 5

        server.always.clear()
        server.requests.clear()
        second = load(engine, f"unsplash-lite:{tmp_path / 'lite'}", options(tmp_path))
        assert (second.downloaded, second.already_on_disk, second.failures) == (3, 5, [])
        assert set(server.requests) == {f"/photos/{i}" for i in ids[5:]}  # nothing fetched twice
        assert len(second.index.added) == 3 and second.index.unchanged == 5

        third = load(engine, f"unsplash-lite:{tmp_path / 'lite'}", options(tmp_path))
        assert third.downloaded == 0 and third.already_on_disk == 8 and third.index.added == []
    assert engine.store.count() == 8


def test_the_archive_can_come_from_a_url_or_a_file(engine, tmp_path):
    with FlakyPhotoServer() as server:
        unsplash_lite(tmp_path / "lite", server, count=4)
        archive = tmp_path / "unsplash-research-dataset-lite-latest.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            for tsv in (tmp_path / "lite").iterdir():
                bundle.write(tsv, f"unsplash-lite/{tsv.name}")
        server.files["/data/lite/latest"] = archive.read_bytes()
        server.plan["/data/lite/latest"] = ["502"]
        from_url = load(engine, f"unsplash-lite:{server.base_url}/data/lite/latest", options(tmp_path / "a"))
        from_file = prepare(f"unsplash-lite:{archive}", options(tmp_path / "b"))
    assert from_url.downloaded == 4 and engine.store.count() == 4
    assert from_file.available == 4 and from_file.downloaded == 4


def test_sampling_is_reproducible_and_happens_before_downloading(engine, tmp_path):
    with FlakyPhotoServer() as server:
        unsplash_lite(tmp_path / "lite", server, count=8)
        picked = prepare(f"unsplash-lite:{tmp_path / 'lite'}",
                         options(tmp_path / "x", limit=3, sample="random", seed=7))
        assert picked.selected == 3 and picked.downloaded == 3 and sum(server.requests.values()) == 3

    write_photos(tmp_path / "folder", 20)
    spec = f"folder:{tmp_path / 'folder'}"
    random_a = prepare(spec, options(tmp_path, limit=5, sample="random", seed=3)).files
    random_b = prepare(spec, options(tmp_path, limit=5, sample="random", seed=3)).files
    other_seed = prepare(spec, options(tmp_path, limit=5, sample="random", seed=4)).files
    first = prepare(spec, options(tmp_path, limit=5)).files
    assert random_a == random_b and random_a != other_seed and len(random_a) == 5
    assert [p.name for p in first] == [f"photo_{i:04d}.jpg" for i in range(5)]


@pytest.mark.parametrize("layout", ["csv", "tsv", "jsonl", "modaclip-json", "json-by-id"])
def test_folder_with_each_metadata_format(engine, tmp_path, layout):
    folder = tmp_path / "photos"
    paths = write_photos(folder, 3)
    ids = []
    for i, path in enumerate(paths):  # ModaCLIP names files by their Unsplash photo id
        ids.append(f"uid{i}")
        path.rename(folder / f"uid{i}.jpg")
    records = [{"photo_id": pid, "photo_description": f"record {pid}", "photographer_first_name": "Jo",
                "photographer_last_name": "Ng", "tags": "cat,sofa" if pid == "uid1" else "dog"} for pid in ids]
    table = tmp_path / {"csv": "m.csv", "tsv": "m.tsv", "jsonl": "m.jsonl", "modaclip-json": "m.json",
                        "json-by-id": "m.json"}[layout]
    if layout in ("csv", "tsv"):
        write_tsv(table, list(records[0]), records, delimiter="\t" if layout == "tsv" else ",")
    elif layout == "jsonl":
        table.write_text("\n".join(json.dumps(r) for r in records))
    elif layout == "modaclip-json":
        table.write_text(json.dumps(records))
    else:
        table.write_text(json.dumps({r["photo_id"]: {k: v for k, v in r.items() if k != "photo_id"} for r in records}))
    report = load(engine, f"folder:{folder}", options(tmp_path, metadata=table))
    assert len(report.index.added) == 3
    stored = by_photo_id(engine)
    assert stored["uid1"]["description"] == "record uid1" and stored["uid1"]["photographer"] == "Jo Ng"
    assert [r.metadata["photo_id"] for r in engine.search_tags(["sofa"])] == ["uid1"]


def test_hugging_face_parquet_imagefolder_and_saved_datasets(engine, tmp_path):
    import datasets

    images = [{"bytes": p.read_bytes(), "path": None} for p in write_photos(tmp_path / "src", 4)]
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["cat", "dog"])})
    table = datasets.Dataset.from_dict({"image": images, "caption": [f"caption {i}" for i in range(4)],
                                        "label": [0, 1, 1, 0]}, features=features)
    table.to_parquet(str(tmp_path / "set.parquet"))
    table.save_to_disk(str(tmp_path / "saved"))

    report = load(engine, f"hf:{tmp_path / 'set.parquet'}", options(tmp_path / "p", tags_column="label"))
    assert report.available == 4 and len(report.index.added) == 4
    dogs = engine.search_tags(["dog"])
    assert sorted(r.metadata["description"] for r in dogs) == ["caption 1", "caption 2"]

    saved = prepare(f"hf:{tmp_path / 'saved'}", options(tmp_path / "s", limit=2, sample="random", seed=1))
    assert saved.selected == 2 and all(p.is_file() for p in saved.files)

    folder = tmp_path / "imagefolder"
    write_photos(folder, 3, start=40)
    (folder / "metadata.csv").write_text("file_name,text\n" + "".join(
        f"photo_{i:04d}.jpg,folder caption {i}\n" for i in range(40, 43)))
    from_folder = prepare(f"hf:{folder}", options(tmp_path / "f"))
    assert sorted(m["description"] for m in from_folder.metadata.values()) == [
        "folder caption 40", "folder caption 41", "folder caption 42"]

    datasets.Dataset.from_dict({"text": ["a"]}).to_parquet(str(tmp_path / "noimage.parquet"))
    with pytest.raises(RetrievalError, match="image column"):
        prepare(f"hf:{tmp_path / 'noimage.parquet'}", options(tmp_path / "n"))


def test_kaggle_without_credentials_says_how_to_add_them(engine, tmp_path, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    with pytest.raises(RetrievalError) as caught:
        load(engine, "kaggle:someone/photos", options(tmp_path))
    message = str(caught.value)
    assert "kaggle.json" in message and "KAGGLE_USERNAME" in message and "--archive" in message


def test_kaggle_archive_is_extracted_and_indexed_with_its_table(engine, tmp_path):
    source = tmp_path / "src"
    paths = write_photos(source, 3)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in paths:
            bundle.write(path, f"images/{path.name}")
        bundle.writestr("captions.csv", "filename,description\n" + "".join(
            f"{p.name},kaggle photo {i}\n" for i, p in enumerate(paths)))
    report = load(engine, "kaggle:someone/photos", options(tmp_path, archive=archive))
    assert report.source == "kaggle:someone/photos" and len(report.index.added) == 3
    assert sorted(r.metadata["description"] for r in engine.store.iter_all()) == [
        f"kaggle photo {i}" for i in range(3)]

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../../outside.txt", "escape")
    with pytest.raises(RetrievalError, match="outside"):
        load(engine, "kaggle:someone/evil", options(tmp_path / "e", archive=evil))
    assert not (tmp_path / "outside.txt").exists()


def test_load_command_json_summary(tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("MODEL", str(tiny_model))
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "store"))
    write_photos(tmp_path / "photos", 4)
    (tmp_path / "photos" / "notes.jpg").write_text("not a photo")
    argv = ["load", f"folder:{tmp_path / 'photos'}", "--limit", "3", "--sample", "random", "--seed", "2", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["available"] == 5 and summary["selected"] == 3
    assert summary["index"]["added"] + sum(summary["index"]["skipped"]["counts"].values()) == 3
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["index"]["added"] == 0  # idempotent
    assert main(["load", "nowhere:thing"]) == 1
    assert "Unknown source" in capsys.readouterr().err
    assert main(argv[:-1]) == 0  # the words: a folder's photos are indexed where they are
    said = capsys.readouterr().out
    assert f"The photos stay in {tmp_path / 'photos'};" in said and "data/" not in said
