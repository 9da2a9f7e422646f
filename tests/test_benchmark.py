"""The benchmark's and the evaluator's arithmetic, and a smoke run of each script.

No timing is asserted: the figures are for people, on the machine they care about.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from photos import write_photos
from retrieval.bench.report import Report
from retrieval.bench.stats import latency_summary, percentile, recall_at_k, recall_from_ranks
from retrieval.embedder import ModelSignature
from retrieval.errors import RetrievalError
from retrieval.bench.evaluation import ranks_image_to_text, ranks_text_to_image, read_captions
from retrieval.settings import Settings
from retrieval.store import open_store


def test_percentiles_interpolate_like_numpy():
    values = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 1.5]
    for q in (0, 5, 50, 90, 95, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([4.0], 95) == 4.0
    with pytest.raises(ValueError):
        percentile([], 50)
    summary = latency_summary([0.010, 0.020, 0.030, 0.040])
    assert summary == {"p50_ms": 25.0, "p95_ms": 38.5, "mean_ms": 25.0, "n": 4}


def test_recall_arithmetic():
    assert recall_at_k(["a", "b", "x", "y"], ["a", "b", "c", "d"], k=4) == 0.5
    assert recall_at_k(["d", "c", "b", "a"], ["a", "b", "c", "d"], k=4) == 1.0  # order inside k is free
    assert recall_at_k(["a", "b", "c"], ["c", "a", "b"], k=2) == 0.5  # only the true top-2 counts
    ranks = [1, 3, None, 7, 2]
    assert recall_from_ranks(ranks, [1, 5, 10]) == {1: 0.2, 5: 0.6, 10: 0.8}


@pytest.fixture
def planted_store(tmp_path):
    """Six photos at known directions; each caption is planted next to its photo."""
    store = open_store(Settings(chroma_path=tmp_path / "store"))
    store.bind(ModelSignature("planted", 6, "00"))
    photos = np.eye(6, dtype=np.float32)
    store.upsert([f"img{i}" for i in range(6)], photos, [{"path": f"/p/{i}.jpg"} for i in range(6)])
    return store, photos


def test_text_to_image_ranks_through_a_real_store(planted_store):
    store, photos = planted_store
    planted = {
        "exactly photo 0": photos[0],
        "mostly photo 1, a bit of 2": photos[1] * 0.9 + photos[2] * 0.1,
        "more photo 3 than photo 4": photos[3] * 0.6 + photos[4] * 0.4,  # right answer ranks second
        "nothing like photo 5": photos[0] + photos[1] - photos[5],
    }
    truth = [("exactly photo 0", "img0"), ("mostly photo 1, a bit of 2", "img1"),
             ("more photo 3 than photo 4", "img4"), ("nothing like photo 5", "img5")]

    def search(caption):
        vector = planted[caption] / np.linalg.norm(planted[caption])
        return [m.id for m in store.query(vector, 3)]

    ranks = ranks_text_to_image(search, truth)
    assert ranks == [1, 1, 2, None]
    assert recall_from_ranks(ranks, [1, 5]) == {1: 0.5, 5: 0.75}


def test_image_to_text_ranks_use_any_of_the_images_captions():
    images = np.eye(3, dtype=np.float32)
    captions = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.7, 0.0, 0.3], [0.0, 0.0, 1.0], [0.6, 0, 0.4]],
                        dtype=np.float32)
    owners = [0, 1, 1, 2, 2]
    ranks = ranks_image_to_text(images, captions, owners, depth=5)
    # image 0: its caption 0 is best. image 1: caption 1 (0.8) is first. image 2: caption 3 first.
    assert ranks == [1, 1, 1]
    ranks = ranks_image_to_text(images, captions, [1, 0, 0, 2, 2], depth=2)
    assert ranks == [2, 2, 1]  # image 0 now owns captions 1 and 2: caption 2 is its second best
    assert ranks_image_to_text(images, captions, [1, 0, 0, 2, 2], depth=1) == [None, None, 1]


def test_reading_flickr_coco_and_json_caption_files(tmp_path):
    flickr = tmp_path / "results.csv"
    flickr.write_text("image_name| comment_number| comment\n1.jpg| 0| A dog runs.\n1.jpg| 1| A brown dog.\n"
                      "2.jpg| 0| Two kids.\n")
    assert read_captions(flickr) == {"1.jpg": ["A dog runs.", "A brown dog."], "2.jpg": ["Two kids."]}
    coco = tmp_path / "captions_val.json"
    coco.write_text(json.dumps({"images": [{"id": 7, "file_name": "7.jpg"}],
                                "annotations": [{"image_id": 7, "caption": "a cat "}, {"image_id": 7, "caption": "cat"}]}))
    assert read_captions(coco) == {"7.jpg": ["a cat", "cat"]}
    tsv = tmp_path / "captions.tsv"
    tsv.write_text("image_path\tcoco_image_id\tcaption\nval/1.jpg\t1\tA bus.\n")
    assert read_captions(tsv) == {"val/1.jpg": ["A bus."]}


@pytest.mark.slow
def test_evaluate_script_smoke_run(tmp_path, tiny_model, monkeypatch, capsys):
    from retrieval.cli import main

    monkeypatch.setenv("MODEL", str(tiny_model))
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "store"))
    paths = write_photos(tmp_path / "images", 6)
    table = tmp_path / "captions.csv"
    table.write_text("image,caption\n" + "".join(f"{p.name},photo {i} caption {j}\n"
                                                for i, p in enumerate(paths) for j in range(2))
                     + "absent.jpg,not there\n")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(tmp_path / "images"), str(table), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "text -> image" in printed and "image -> text" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 6 and result["captions"] == 12 and result["missing_images"] == 1
    for direction in ("text_to_image", "image_to_text"):
        values = [result[direction][k] for k in ("R@1", "R@5", "R@10")]
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
        assert values[-1] == 1.0  # 6 images: the right one is always in the top 10
    assert main(["evaluate", str(tmp_path / "nowhere"), str(table)]) == 1


@pytest.mark.slow
def test_benchmark_script_smoke_run(tmp_path, clip_model, monkeypatch, capsys):
    from conftest import bundled_whisper
    from retrieval.cli import main

    monkeypatch.setenv("ASR_MODEL", bundled_whisper())
    photos = write_photos(tmp_path / "photos", 6, size=(320, 240))
    out = tmp_path / "bench.json"
    argv = ["benchmark", "--model", str(clip_model), "--photos", str(photos[0].parent), "--large-count", "2",
            "--naive-count", "2", "--sizes", "300", "--repeats", "4", "--batch-size", "4", "--rounds", "1",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "encoder ceiling" in table and "ANN recall@10" in table and "launch to app ready" in table
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    sections = {row["section"] for row in result["rows"]}
    assert {"indexing photos (6 files)", "indexing 12mp (2 files)", "queries at 300 photos", "start-up",
            "concurrency", "why this matched (heat map)"} <= sections
    assert any(s.startswith("speech") for s in sections)
    for row in result["rows"]:
        assert row["value"] >= 0
        if row["ratio"] is not None and row["unit"] != "":
            assert row["ratio"] > 0
    recall = next(r for r in result["rows"] if r["measure"] == "ANN recall@10")
    assert 0.0 < recall["value"] <= 1.0
    assert main(["benchmark", "--sections", "nonsense"]) == 1


def test_the_query_section_runs_on_each_backend_side_by_side(tmp_path, clip_model, capsys):
    from retrieval.cli import main

    out = tmp_path / "bench.json"
    assert main(["benchmark", "--model", str(clip_model), "--sections", "queries", "--sizes", "300",
                 "--repeats", "3", "--backends", "chroma,milvus-lite", "--work", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    for backend in ("chroma", "milvus-lite"):
        section = [r for r in rows if r["section"] == f"queries at 300 photos ({backend})"]
        measures = {r["measure"]: r["value"] for r in section}
        assert {"text p50", "text, filtered (year >= 2020) p50", "tags p50", "insert through the store",
                "memory the store added", "text, with meaning p50",
                "text p50: picture, words and meaning / picture only"} <= measures.keys()
        assert measures["ANN recall@10"] >= 0.9  # 300 vectors: the index is all but exact
    assert main(["benchmark", "--sections", "queries", "--backends", "sqlite"]) == 1


def test_report_table_and_json(tmp_path):
    report = Report()
    report.add("indexing", "product pipeline", 10.04, "img/s", baseline="ceiling", ratio=0.9, target=">= 0.85", met=True)
    report.add("queries", "text p50", 30.0, "ms", target="<= 25", met=False)
    table = report.table()
    assert "product pipeline" in table and "0.90" in table and "NO" in table
    written = json.loads(report.write(tmp_path / "r.json").read_text())
    assert written["rows"][0]["ratio"] == 0.9 and written["machine"]["python"]


def test_two_models_are_measured_side_by_side_in_one_run(tmp_path, tiny_model, other_tiny_model, capsys):
    from retrieval.cli import main

    out = tmp_path / "bench.json"
    argv = ["benchmark", "--model", str(tiny_model), "--model", str(other_tiny_model), "--sections", "queries",
            "--sizes", "200", "--repeats", "3", "--work", str(tmp_path / "work"), "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    sections = {row["section"] for row in result["rows"]}
    assert {f"{tiny_model.name}: queries at 200 photos", f"{other_tiny_model.name}: queries at 200 photos"} <= sections
    assert set(result["details"]["per_model"]) == {str(tiny_model), str(other_tiny_model)}
    for details in result["details"]["per_model"].values():
        assert details["model"]["family"] and details["queries_200"]["latency"]["text"]["p50_ms"] > 0


def test_a_random_model_is_built_from_a_configuration_folder(tmp_path, tiny_model):
    from retrieval.bench.random_model import build_random_model
    from retrieval.embedder import load_embedder

    config = tmp_path / "config-only"
    config.mkdir()
    for file in tiny_model.iterdir():
        if file.suffix != ".safetensors":
            (config / file.name).write_bytes(file.read_bytes())
    built = build_random_model(config, tmp_path / "work", seed=5)  # the tiny model used seed 0
    random, trained = load_embedder(str(built)), load_embedder(str(tiny_model))
    assert (random.family, random.dim) == (trained.family, trained.dim)
    assert random.signature.fingerprint != trained.signature.fingerprint  # new weights, same shape
    with pytest.raises(RetrievalError, match="no config.json"):
        build_random_model(tmp_path / "nothing", tmp_path / "work")


# -- the peer section: rclip's model files, made from the benchmark's configuration ------------

def test_rclips_model_files_are_in_its_layout_and_embed_as_the_model_they_come_from(tmp_path):
    import gzip
    import json

    import onnxruntime
    import torch

    from retrieval.bench import peer
    from tiny_models import build_tiny_clip

    config = build_tiny_clip(tmp_path / "tiny")
    datadir = peer.export_rclip_model(config, tmp_path / "rclip-data")
    folder = datadir / peer.RCLIP_MODEL_SUBDIR
    model = peer._random_clip(json.loads((config / "config.json").read_text()), seed=0)  # same seed: same weights
    tokens = np.zeros((2, peer.CONTEXT_LENGTH), dtype=np.int64)
    tokens[0, :3], tokens[1, :5] = [1, 2, 3], [4, 5, 6, 7, 8]
    pixels = np.random.default_rng(0).random((2, 3, peer.RCLIP_IMAGE_SIZE, peer.RCLIP_IMAGE_SIZE), dtype=np.float32)
    with torch.inference_mode():
        expected_text = model.get_text_features(input_ids=torch.from_numpy(tokens)).pooler_output.numpy()
        expected_image = model.get_image_features(pixel_values=torch.from_numpy(pixels)).pooler_output.numpy()
    for name, batch, expected in (("textual.onnx", tokens, expected_text), ("visual.onnx", pixels, expected_image)):
        session = onnxruntime.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": batch})  # the input name rclip feeds
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    with gzip.open(datadir / peer.RCLIP_VOCABULARY) as vocabulary:  # rclip's tokenizer reads merges from here
        assert vocabulary.read() == (config / "merges.txt").read_bytes()


def test_peer_goals_are_medians_of_pairwise_ratios_in_the_right_direction():
    from retrieval.bench import peer
    from retrieval.bench.report import Report

    assert peer._median_ratio([1.0, 2.0, 9.0], [2.0, 2.0, 3.0]) == 1.0  # 0.5, 1, 3
    report = Report()
    peer._add(report, "vs rclip", "cold search", "1 / 2 s", 0.5, "wall time vs rclip")
    peer._add(report, "vs rclip", "full index, photos", "10 / 10 photos/s", 1.0, "photos/s vs rclip")
    assert [row.met for row in report.rows] == [True, False]


def test_the_peer_section_without_rclip_says_how_to_install_it(monkeypatch, tmp_path):
    from retrieval.bench import peer

    monkeypatch.setenv("PATH", str(tmp_path))
    real_find_spec = peer.importlib.util.find_spec
    monkeypatch.setattr(peer.importlib.util, "find_spec",
                        lambda name, *rest: None if name == "rclip" else real_find_spec(name, *rest))
    with pytest.raises(RetrievalError, match="pip install rclip==3.3.0"):
        peer.find_rclip(None)
    with pytest.raises(RetrievalError, match="is not a file"):
        peer.find_rclip(str(tmp_path / "nowhere"))


@pytest.mark.slow  # UMAP's first call compiles for half a minute
def test_the_map_section_times_both_layouts(tmp_path, clip_model):
    from retrieval.cli import main

    out = tmp_path / "bench.json"
    assert main(["benchmark", "--model", str(clip_model), "--sections", "map", "--map-photos", "2500",
                 "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    measures = {r["measure"]: r for r in json.loads(out.read_text())["rows"] if r["section"] == "map of 2,500 photos"}
    assert {"PCA layout", "UMAP layout (what the map uses)", "peak memory, UMAP"} <= measures.keys()
    assert measures["UMAP layout (what the map uses)"]["ratio"] > 0


def test_the_regions_section_compares_with_whole_photos_only(tmp_path, clip_model):
    from retrieval.cli import main

    out = tmp_path / "bench.json"
    assert main(["benchmark", "--model", str(clip_model), "--sections", "regions", "--region-sizes", "300",
                 "--regions-per-photo", "4", "--no-sam", "--repeats", "3", "--work", str(tmp_path / "work"),
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {(r["section"], r["measure"]): r for r in result["rows"]}
    assert rows[("text queries at 300 photos with 4 regions each", "text p50, photos and regions")]["ratio"] > 0
    details = next(iter(result["details"]["per_model"].values()))
    assert details["region_queries_300"]["regions_stored"] == 1200
    indexing = next(r for (section, measure), r in rows.items() if measure == "with regions")
    assert 0 < indexing["ratio"] < 1  # the crops are embedded too
    assert {"segments", "grid"} <= {measure for section, measure in rows if section.startswith("region proposals")}


def test_duplicate_evaluation_smoke_run(tmp_path, capsys):
    from photos import scene_photo
    from retrieval.bench.duplicates_eval import main, pair_scores

    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(6):
        scene_photo(seed).save(folder / f"p{seed}.jpg", quality=95)
    out = tmp_path / "dups.json"
    assert main([str(folder), "--out", str(out)]) == 0
    assert "phash (DCT)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["photos"] == 6 and report["pictures"] == 6 * 9  # each photo, 6 copies, 2 other shots
    for row in report["signals"].values():
        assert 0 <= row["held_out"]["precision"] <= 1 and 0 <= row["held_out"]["recall"] <= 1
        assert len(row["sweep"]) == 25
    # The arithmetic, on hand-made groups: one true pair found, one false pair found, one true pair missed.
    assert pair_scores([[0, 1], [2, 3]], truth=[0, 0, 1, 2, 3, 3]) == (0.5, 0.5)
    assert main([str(tmp_path / "nothing-here")]) == 1


# With CRAFT it is slow: its INT8 model is made first (about 11 s).
@pytest.mark.parametrize("craft", ["", pytest.param("1", marks=pytest.mark.slow)])
def test_ocr_and_description_evaluations_smoke_run(tiny_model, tmp_path, capsys, craft):
    from photos import scene_photo
    from retrieval.bench import ocr_eval, text_eval
    from retrieval.text.ocr import MODEL_FILES, bundled_models

    folder = tmp_path / "photos"
    folder.mkdir()
    captions = ["A bakery with fresh bread", "Bread on a shelf of the bakery", "A red door in a wall",
                "Someone painting a red door", "Boats moored in a harbour", "Fishing boats in the harbour"]
    lines = ["image_path\tcaption"]
    for seed in range(3):
        scene_photo(seed, size=(320, 240)).save(folder / f"p{seed}.jpg", quality=92)
        lines += [f"photos/p{seed}.jpg\t{captions[2 * seed]}", f"photos/p{seed}.jpg\t{captions[2 * seed + 1]}"]
    table = tmp_path / "captions.tsv"
    table.write_text("\n".join(lines) + "\n")

    out = tmp_path / "ocr.json"
    detector = tmp_path / "my-detector.onnx"  # another detector by path: here the bundled one, copied
    shutil.copyfile(bundled_models() / MODEL_FILES["det"], detector)
    assert ocr_eval.main([str(folder), "--captions", str(table), "--with-words", "2", "--model", str(tiny_model),
                          "--passes", "2", "--craft", craft, "--detector", str(detector), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| all | 2 |" in printed and "2 PP-OCR look(s) with " in printed and "CPU per photo, each alone" in printed
    assert ("my-detector.onnx, and CRAFT" if craft else "my-detector.onnx;") in printed
    figures = json.loads(out.read_text())
    assert figures["with_words"] == 2 and figures["without_words"] == 1 and len(figures["rows"]) == 2
    assert figures["ms_per_photo"]["ocr"] > 0 and figures["all"]["hybrid_recall@5"] >= figures["all"]["read"]
    assert figures["ocr_passes"] == 2 and figures["ocr_craft"] == bool(craft) and figures["ocr_detector"] == str(detector)
    assert figures["cpu_ms_per_photo"]["ocr"] > 0 and figures["cpu_ms_per_photo"]["embed"] > 0
    if craft:
        return  # the description evaluation does not depend on the reader

    out = tmp_path / "text.json"
    assert text_eval.main([str(table), "--model", str(tiny_model), "--out", str(out)]) == 0
    recall = json.loads(out.read_text())["recall"]
    assert recall["words"]["recall@1"] == 1.0  # each held-out caption shares a rare word with the other
    assert recall["fused"]["recall@5"] == 1.0 and set(recall) == {"words", "picture", "fused"}

    # With the real all-MiniLM-L6-v2 (its PyPI package): the other caption, by meaning, finds its photo.
    # The searches are the product's: index (meaning on), then search with and without the meaning.
    assert text_eval.main([str(table), "--model", str(tiny_model), "--descriptions", "1", "--sentence-model",
                           "--under", "photos", "--out", str(out)]) == 0
    recall = json.loads(out.read_text())["recall"]
    assert recall["meaning"]["recall@1"] == 1.0 and recall["fused with meaning"]["recall@1"] == 1.0


def test_the_int8_section_compares_quantised_vectors_with_float32(tmp_path, clip_model, monkeypatch):
    from retrieval.cli import main

    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    photos = write_photos(tmp_path / "photos", 12, size=(80, 60))
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--model", str(clip_model), "--sections", "int8", "--photos", str(photos[0].parent),
                 "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["measure"]: r for r in result["rows"] if r["section"] == "image INT8"}
    assert 0.9 < rows["INT8 vs float32: cosine, worst"]["value"] <= rows["INT8 vs float32: cosine, mean"]["value"] <= 1
    assert 0 < rows["same top 10, text queries"]["value"] <= 1 and rows["image side, ONNX INT8"]["ratio"] > 0
    details = next(iter(result["details"]["per_model"].values()))["int8"]
    assert details["photos"] == 12 and details["runtime_trial"]["onnx_cpu_ms_per_image"] > 0
    assert details["cosine_min"] < 1  # quantised: close, not the same


def test_a_timed_process_reports_its_own_peak_memory(tmp_path):
    """Each process's own peak, not the benchmark's own memory carried into it by fork."""
    import sys

    from retrieval.bench.peer import timed

    big = timed([sys.executable, "-c", "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096])"], {}, tmp_path)
    small = timed([sys.executable, "-c", "print('hi')"], {}, tmp_path)
    assert big.peak_mib > 300 > 50 > small.peak_mib and small.stdout == "hi\n"
    assert big.cpu_s > 0 and big.wall_s >= big.cpu_s / 8
    with pytest.raises(RetrievalError, match="exit 3"):
        timed([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path)


@pytest.mark.slow  # a dozen cold processes
def test_the_thread_sweep_indexes_in_a_process_per_setting(tmp_path, tiny_model):
    from retrieval.bench import thread_sweep

    photos = write_photos(tmp_path / "photos", 3)
    report = Report()
    thread_sweep.run(report, str(tiny_model), photos, tmp_path / "work", rounds=1, threads=(1, 0), workers=(1, 2))
    rates = {row.measure: row for row in report.rows if row.unit == "photos/s"}
    settings = [m for m in rates if not m.startswith("fastest")]
    assert len(settings) == 4 and all(rates[m].value > 0 for m in settings)
    default = next(m for m in settings if m.startswith("TORCH_THREADS=all, DECODE_WORKERS=2"))
    assert rates[default].ratio == pytest.approx(1.0)
    details = report.details["thread_sweep"]
    assert set(details) == {"1 x 1", "1 x 2", "all x 1", "all x 2"}
    # each thread count's runs used what its own trial chose: for 3 photos, never torch's start
    assert all(entry["runtime"] == "ONNX export" for entry in details.values())
    assert all(len(entry["cpu_s"]) == 1 and entry["cpu_s"][0] > 0 for entry in details.values())
