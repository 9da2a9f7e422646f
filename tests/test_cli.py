"""The command line, in-process (fast) and as a real subprocess (killed mid-run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runs import index_until_committed
from photos import write_bad_files, write_photos
from retrieval.cli import main
from retrieval.engine import Engine
from retrieval.settings import Settings
from conftest import every_family

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(monkeypatch, tiny_model, tmp_path):
    monkeypatch.setenv("MODEL", str(tiny_model))
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "store"))
    monkeypatch.delenv("CHROMA_HOST", raising=False)
    return tmp_path


def run_json(capsys, *argv):
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@every_family
def test_index_search_stats_json(cli_env, capsys, embedder):
    folder = cli_env / "photos"
    paths = write_photos(folder, 5)
    write_bad_files(folder / "bad")
    (cli_env / "meta.csv").write_text(
        "filename,description,photographer,tags\n"
        'photo_0000.jpg,A dog on the beach,Ana Lee,"beach,dog"\n'
        'photo_0001.jpg,Sunset over the sea,Ben Ode,"beach,sunset"\n'
    )
    report = run_json(capsys, "index", str(folder), "--metadata", str(cli_env / "meta.csv"),
                      "--max-pixels", "20000000")
    assert report["added"] == 5
    assert sum(report["skipped"]["counts"].values()) == 5
    assert {f["reason"] for f in report["skipped"]["files"]} == {
        "empty file", "truncated image", "corrupt image", "not an image", "too many pixels"}

    results = run_json(capsys, "search", "a dog running on the beach", "-k", "3")
    assert len(results) == 3
    for result in results:
        assert {"id", "path", "score"} <= result.keys()
        assert -1.0 <= result["score"] <= 1.0

    by_image = run_json(capsys, "search", "--image", str(paths[2]), "-k", "1")
    assert by_image[0]["path"] == str(paths[2]) and by_image[0]["score"] > 0.999

    tagged = run_json(capsys, "search", "--tags", "beach,sunset", "--all")
    assert [r["description"] for r in tagged] == ["Sunset over the sea"]
    assert tagged[0]["photographer"] == "Ben Ode" and tagged[0]["tags"] == ["beach", "sunset"]

    composed = run_json(capsys, "search", "2:golden retriever", "+", str(paths[3]), "-", "fruit", "-k", "2")
    assert len(composed) == 2

    filtered = run_json(capsys, "search", "dog", "--photographer", "Ana Lee")
    assert [r["photographer"] for r in filtered] == ["Ana Lee"]

    like = run_json(capsys, "search", "--like", by_image[0]["id"], "-k", "10")
    assert by_image[0]["id"] not in {r["id"] for r in like} and len(like) == 4

    in_german = run_json(capsys, "search", "ein Hund", "-k", "2")  # typed as is, in any language
    assert len(in_german) == 2

    stats = run_json(capsys, "stats")
    assert stats["count"] == 5 and stats["dim"] == embedder.dim
    assert stats["languages"] == embedder.languages.description
    assert stats["model"] == os.environ["MODEL"]
    assert stats["store"] == str((cli_env / "store").resolve())


def test_human_output(cli_env, capsys):
    write_photos(cli_env / "photos", 2)
    assert main(["index", str(cli_env / "photos")]) == 0
    assert "Added 2 photos" in capsys.readouterr().out
    assert main(["search", "cat"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].lstrip().startswith("1.")


@pytest.mark.parametrize("argv, message", [
    (["search"], "Nothing to search"),
    (["search", "   "], "empty"),
    (["search", "cat", "-k", "0"], "number of results"),
    (["search", "--image", "/no/such/image.jpg"], "does not exist"),
    (["search", "cat", "--where", "width>=big"], "needs a number"),
    (["search", "--like", "0" * 64], "No photo with id"),
    (["index", "/no/such/folder"], "does not exist"),
])
def test_user_mistakes_exit_non_zero_with_a_message(cli_env, capsys, argv, message):
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err


def test_query_image_that_is_not_an_image(cli_env, capsys):
    (cli_env / "fake.jpg").write_text("not a picture")
    assert main(["search", "--image", str(cli_env / "fake.jpg")]) == 1
    assert "can't be used" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_error(cli_env, capsys, monkeypatch):
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("CHROMA_PORT", "9")  # nothing listens on the discard port
    assert main(["stats"]) == 1
    err = capsys.readouterr().err
    assert "The Chroma server at http://127.0.0.1:9 is unreachable" in err and "Traceback" not in err


@pytest.mark.slow
def test_killed_mid_index_resumes_without_duplicates(tiny_model, tmp_path):
    """SIGKILL after a few committed batches; the re-run ends with exactly the valid images."""
    folder = tmp_path / "photos"
    good = write_photos(folder, 240, size=(160, 120))
    write_bad_files(folder / "bad")
    env = dict(os.environ, MODEL=str(tiny_model), CHROMA_PATH=str(tmp_path / "store"),
               BATCH_SIZE="4", MAX_IMAGE_PIXELS="20000000", TORCH_THREADS="1", DECODE_WORKERS="1",
               PYTHONUNBUFFERED="1")
    process = index_until_committed(folder, env, batches=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    engine = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store",
                             max_image_pixels=20_000_000))
    after_kill = engine.store.count()
    assert 3 * 4 <= after_kill < len(good), "the run was not stopped part-way"

    report = engine.index([folder])
    assert len(report.added) == len(good) - after_kill
    records = list(engine.store.iter_all())
    paths = [r.metadata["path"] for r in records]
    assert sorted(paths) == sorted(str(p) for p in good)  # each valid image exactly once
    assert len(report.skipped) == 5
    assert engine.search_image(good[-1], k=1)[0].path == str(good[-1])


@pytest.mark.slow
def test_module_entry_point_runs(tiny_model, tmp_path):
    env = dict(os.environ, MODEL=str(tiny_model), CHROMA_PATH=str(tmp_path / "store"))
    done = subprocess.run([sys.executable, "-m", "retrieval", "stats", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 0


@pytest.mark.slow
def test_transcribe_and_search_by_voice(cli_env, capsys, monkeypatch):
    from conftest import bundled_whisper
    from speech_clips import speak, write_wav

    monkeypatch.setenv("ASR_MODEL", bundled_whisper())
    write_photos(cli_env / "photos", 3)
    run_json(capsys, "index", str(cli_env / "photos"))
    clip = speak("a red car parked in the street", cli_env / "query.wav")

    heard = run_json(capsys, "transcribe", str(clip))
    assert "car" in heard["text"].lower() and heard["speech_detected"] is True
    assert heard["language"] == "en" and heard["duration"] > 1 and heard["seconds"] > 0
    assert main(["transcribe", str(clip)]) == 0
    assert "car" in capsys.readouterr().out.lower()

    by_voice = run_json(capsys, "search", "--audio", str(clip), "-k", "3")
    by_text = run_json(capsys, "search", heard["text"], "-k", "3")
    assert [r["id"] for r in by_voice] == [r["id"] for r in by_text]

    silence = write_wav(cli_env / "silence.wav", [0.0] * 16_000)
    assert main(["search", "--audio", str(silence)]) == 1
    assert "No speech detected" in capsys.readouterr().err
    (cli_env / "notes.wav").write_text("not audio")
    assert main(["transcribe", str(cli_env / "notes.wav")]) == 1
    assert "can't be read as audio" in capsys.readouterr().err


def test_a_very_long_text_query_is_text_not_a_crash(cli_env, capsys):
    write_photos(cli_env / "photos", 2)
    assert main(["index", str(cli_env / "photos"), "--json"]) == 0
    long_query = "a dog running along the beach at sunset with waves " * 20  # > 255 characters
    results = run_json(capsys, "search", long_query)
    assert len(results) == 2


def test_transcribe_needs_no_store(cli_env, capsys, monkeypatch, tmp_path):
    from conftest import bundled_whisper
    from speech_clips import speak

    clip = speak("a red bicycle", tmp_path / "q.wav")
    monkeypatch.setenv("ASR_MODEL", bundled_whisper())
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")  # a server that is not running
    monkeypatch.setenv("CHROMA_PORT", "9")
    monkeypatch.chdir(tmp_path)
    assert main(["transcribe", str(clip)]) == 0
    assert "bicycle" in capsys.readouterr().out.lower()
    assert not (tmp_path / "chroma_store").exists() and not (cli_env / "store").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_run_at_once_and_keeps_what_was_committed(tiny_model, tmp_path):
    """SIGINT while the decode workers are busy (one of them on a FIFO): exit 130 within seconds."""
    folder = tmp_path / "photos"
    write_photos(folder, 800, size=(160, 120))  # enough that the run is still going when the signal comes
    os.mkfifo(folder / "photo_0150_pipe.jpg")
    env = dict(os.environ, MODEL=str(tiny_model), CHROMA_PATH=str(tmp_path / "store"),
               BATCH_SIZE="4", TORCH_THREADS="1", DECODE_WORKERS="2", PYTHONUNBUFFERED="1")
    process = index_until_committed(folder, env, batches=2)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    rest = process.communicate(timeout=30)[1]
    assert time.monotonic() - started < 10
    assert process.returncode == 130 and "interrupted" in rest and "Traceback" not in rest
    count = Engine(Settings(model=str(tiny_model), chroma_path=tmp_path / "store")).store.count()
    assert 8 <= count < 800
    # and a full run goes past the FIFO without blocking
    done = subprocess.run([sys.executable, "-m", "retrieval", "index", str(folder), "--json"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["skipped"]["counts"] == {"not a regular file": 1}


IMPORTS_OF = """
import sys
from retrieval.cli import main
code = main(sys.argv[1:])
print("MODULES", sorted(m for m in ("torch", "transformers", "chromadb") if m in sys.modules))
sys.exit(code)
"""


@pytest.mark.slow
def test_commands_import_only_what_they_need(tiny_model, tmp_path, monkeypatch):
    from conftest import bundled_whisper
    from speech_clips import speak

    clip = speak("a red bicycle", tmp_path / "q.wav")
    env = dict(os.environ, MODEL=str(tiny_model), CHROMA_PATH=str(tmp_path / "store"),
               ASR_MODEL=bundled_whisper(), CACHE_DIR=str(tmp_path / "cache"))  # no export made before

    def modules(*argv, **settings):
        done = subprocess.run([sys.executable, "-c", IMPORTS_OF, *argv], cwd=REPO, env={**env, **settings},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.rsplit("MODULES", 1)[1].strip()

    assert modules("transcribe", str(clip)) == "[]"
    assert modules("stats") == "['chromadb']"
    photos = write_photos(tmp_path / "photos", 3)
    assert modules("index", str(photos[0].parent)) == "['chromadb', 'torch', 'transformers']"
    # Nothing new to embed: the model is not loaded, nor torch imported.
    assert modules("index", str(photos[0].parent)) == "['chromadb']"
    # The first index exported both sides and left a snapshot of the collection: text and image
    # searches need neither torch nor chromadb; one with a filter asks Chroma.
    assert modules("search", "a red bicycle") == "[]"
    assert modules("search", str(photos[0])) == "[]"
    assert modules("search", "a red bicycle", "--after", "2001-01-01") == "['chromadb']"
    write_photos(photos[0].parent, 2, start=10)
    assert modules("index", str(photos[0].parent)) == "['chromadb']"
    assert modules("stats") == "['chromadb']"
    # the control: without the image export, new photos load the model
    write_photos(photos[0].parent, 1, start=20)
    assert modules("index", str(photos[0].parent), IMAGE_EXPORT="0") == "['chromadb', 'torch', 'transformers']"
    # a run large enough for torch's cheaper photos to pay for its start: the traced program, without transformers
    from retrieval.embedder.image_export import export_folder, read_runtimes, remember_runtime
    from retrieval.embedder.torch_program import PROGRAM_FILE

    monkeypatch.setenv("CACHE_DIR", env["CACHE_DIR"])  # where the first index put the export
    folder = export_folder(str(tiny_model))
    assert (folder / PROGRAM_FILE).is_file()
    for key, figures in read_runtimes(folder).items():
        remember_runtime(folder, None if key.startswith("default") else int(key.split()[0]), {
            **figures, "runtime": "torch", "torch_cpu_ms_per_image": 1.0, "onnx_cpu_ms_per_image": 9.0,
            "torch_start_cpu_s": 0.0, "onnx_start_cpu_s": 0.0})  # break-even: no photos
    write_photos(photos[0].parent, 1, start=30)
    assert modules("index", str(photos[0].parent)) == "['chromadb', 'torch']"


def test_a_missing_image_term_is_an_error_with_a_suggestion(cli_env, capsys):
    photos = write_photos(cli_env / "photos", 2)
    assert main(["index", str(cli_env / "photos"), "--json"]) == 0
    capsys.readouterr()
    typo = str(photos[0]).replace("photo_0000", "photo_000")
    assert main(["search", typo]) == 1
    err = capsys.readouterr().err
    assert f"The image {typo} does not exist. Did you mean {photos[0].parent}/photo_000" in err
    assert main(["search", "a photo of 24/7 service"]) == 0  # words with a slash stay text


def test_a_filter_on_a_field_no_photo_has_names_the_fields(cli_env, capsys):
    write_photos(cli_env / "photos", 2)
    assert main(["index", str(cli_env / "photos"), "--json"]) == 0
    capsys.readouterr()
    assert main(["search", "dog", "--where", "colour=red"]) == 0
    err = capsys.readouterr().err
    assert "no photo has the field colour" in err and "width" in err and "filename" in err


def test_help_shows_examples_and_each_command_only_its_own_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    index_help = capsys.readouterr().out
    assert "--batch-size" in index_help and "--asr-model" not in index_help and "--language" not in index_help
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    transcribe_help = capsys.readouterr().out
    assert "--language" in transcribe_help and "--chroma-path" not in transcribe_help


def test_text_output_shows_a_short_id_that_more_like_this_and_explain_take(cli_env, capsys):
    write_photos(cli_env / "photos", 20)
    assert main(["index", str(cli_env / "photos")]) == 0
    full = run_json(capsys, "search", "a photo", "-k", "20")
    assert main(["search", "a photo", "-k", "20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[2] for line in lines] == [r["id"][:10] for r in full]
    first = full[0]["id"]
    like = run_json(capsys, "search", "--like", first[:10], "-k", "3")
    assert first not in {r["id"] for r in like} and len(like) == 3
    assert main(["explain", first[:8], "a photo", "--out", str(cli_env / "why.png")]) == 0
    assert (cli_env / "why.png").is_file()
    by_start: dict[str, list[str]] = {}
    for result in full:  # 20 ids over 16 first digits: some start alike
        by_start.setdefault(result["id"][0], []).append(result["id"])
    shared = next(start for start, ids in by_start.items() if len(ids) > 1)
    capsys.readouterr()
    assert main(["search", "--like", shared]) == 1
    assert "is the start of several photos' ids" in capsys.readouterr().err


def test_the_summary_says_what_a_run_did_when_it_added_no_photo(cli_env, capsys):
    write_photos(cli_env / "photos", 2, size=(160, 120))
    assert main(["index", str(cli_env / "photos")]) == 0
    capsys.readouterr()
    assert main(["index", str(cli_env / "photos"), "--regions", "--proposer", "grid"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("Found the objects and regions of 2 photos indexed before (") and "no new photos" in first
    assert "Added 0" not in first and "img/s" not in first
    assert main(["index", str(cli_env / "photos")]) == 0
    assert capsys.readouterr().out.startswith("No new photos (")


def test_chromadb_is_imported_without_signature_checks_which_come_back_after(tmp_path):
    code = """
import overrides
checking = overrides.override
from retrieval.store.chroma_import import import_chromadb, start_in_background
start_in_background()
chromadb = import_chromadb()
assert overrides.override is checking
class Base:
    def method(self, a): pass
try:
    class Wrong(Base):
        @overrides.override
        def method(self, a, b): pass
except TypeError:
    print("checked")
print(type(chromadb.PersistentClient(path=%r)).__name__)
""" % str(tmp_path / "store")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["checked", "Client"]
