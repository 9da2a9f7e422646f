"""The product on Milvus: the command line on Milvus Lite, a crash mid-index, a store
in use by another process and a server that is not there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from cli_runs import REPO, index_until_committed
from photos import write_photos
from retrieval.cli import main
from retrieval.engine import Engine
from retrieval.settings import Settings


def run_json(capsys, *argv):
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_index_search_and_stats_on_milvus_lite(clip_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL", str(clip_model))
    monkeypatch.setenv("STORE", f"milvus:{tmp_path / 'milvus'}")
    paths = write_photos(tmp_path / "photos", 6)
    (tmp_path / "meta.csv").write_text('filename,photographer,tags\nphoto_0000.jpg,Ana Lee,"beach,dog"\n'
                                       'photo_0001.jpg,Ben Ode,"beach,sunset"\n')
    report = run_json(capsys, "index", str(tmp_path / "photos"), "--metadata", str(tmp_path / "meta.csv"))
    assert report["added"] == 6
    assert run_json(capsys, "index", str(tmp_path / "photos"))["added"] == 0  # nothing twice

    by_image = run_json(capsys, "search", "--image", str(paths[3]), "-k", "1")
    assert by_image[0]["path"] == str(paths[3]) and by_image[0]["score"] > 0.999
    assert [r["photographer"] for r in run_json(capsys, "search", "--tags", "beach,sunset", "--all")] == ["Ben Ode"]
    assert len(run_json(capsys, "search", "a dog", "-k", "4", "--where", "photographer!=Ana Lee")) == 4
    stats = run_json(capsys, "stats")
    assert stats["count"] == 6 and stats["store"] == str((tmp_path / "milvus").resolve())


@pytest.mark.slow
def test_killed_mid_index_on_milvus_lite_resumes_without_duplicates(clip_model, tmp_path):
    folder = tmp_path / "photos"
    good = write_photos(folder, 160, size=(160, 120))
    store = f"milvus:{tmp_path / 'milvus'}"
    env = dict(os.environ, MODEL=str(clip_model), STORE=store, BATCH_SIZE="4", TORCH_THREADS="1",
               DECODE_WORKERS="1", PYTHONUNBUFFERED="1")
    process = index_until_committed(folder, env, batches=3)
    process.send_signal(signal.SIGKILL)
    process.wait()

    engine = Engine(Settings(model=str(clip_model), store=store))
    after_kill = engine.store.count()
    assert 3 * 4 <= after_kill < len(good), "the run was not stopped part-way"
    report = engine.index([folder])
    assert len(report.added) == len(good) - after_kill
    assert sorted(r.metadata["path"] for r in engine.store.iter_all()) == sorted(map(str, good))


def test_a_milvus_lite_store_in_use_by_another_process_is_a_clear_message(clip_model, tmp_path):
    store = f"milvus:{tmp_path / 'milvus'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from retrieval.settings import Settings; "
         "from retrieval.store import open_store; open_store(Settings(store=sys.argv[1])).count(); "
         "print('open', flush=True); time.sleep(60)", store],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        done = subprocess.run([sys.executable, "-m", "retrieval", "stats", "--store", store], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert "in use by another process" in done.stderr and "Traceback" not in done.stderr
    finally:
        holder.kill()
        holder.wait()


def test_an_unreachable_milvus_server_is_a_clear_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STORE", "milvus://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["stats"]) == 1
    err = capsys.readouterr().err
    assert "Milvus server at milvus://127.0.0.1:9 is unreachable" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["milvus:", "milvus://", "postgres://x", "chromadb"])
def test_a_store_setting_that_names_nothing_is_refused(value, monkeypatch, capsys):
    monkeypatch.setenv("STORE", value)
    assert main(["stats"]) == 1
    assert "STORE=" in capsys.readouterr().err
