"""The peer: rclip, the command-line tool a user would pick instead, on the same photos.

rclip runs ONNX exports of an open_clip ViT-B-32-256. Trained weights of neither
side exist on every machine, so both run a ViT-B/32-class CLIP with random weights
(the same cost as trained ones): rclip's ``textual.onnx`` and ``visual.onnx`` are
exported from a transformers CLIP built from the benchmark's configuration at 256 px,
in the layout rclip's own conversion script writes, and ``RCLIP_DATADIR`` points at
them. The product runs the same configuration at its published 224 px.

Every measure is of whole processes, as a user runs them, alternating product and
rclip (A B A B ...); a goal is the median of the pairwise ratios, because the speed
of a shared machine drifts by more than the differences measured.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import RetrievalError
from ..settings import Settings
from .report import Report

RCLIP_MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # where rclip 3.x looks for its two ONNX files
RCLIP_VOCABULARY = "tokenizer/bpe_simple_vocab_16e6.txt.gz"
RCLIP_IMAGE_SIZE = 256
CONTEXT_LENGTH = 77
QUERY = "a dog running on the beach"
REPO = Path(__file__).resolve().parents[2]

# What a user runs, the product's goal against rclip, and which way is better.
GOALS = {
    "cold search": ("<= 0.8", 0.8),
    "index, nothing new": ("<= 0.8", 0.8),
    "index, 4 new photos": ("<= 1.0", 1.0),
    "full index, photos": (">= 1.5", 1.5),
    "full index, 12 MP JPEGs": (">= 1.3", 1.3),
    "warm text query": ("<= 0.7", 0.7),
    "peak memory, full index": ("<= 1.0", 1.0),
    "peak memory, cold search": ("<= 1.0", 1.0),
    "peak memory, warm process": ("<= 1.0", 1.0),
}
NEW_PHOTOS = 4

WARM_RCLIP = """
import json, resource, statistics, sys, time
from rclip.main import init_rclip
folder, query, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
rclip, model, db = init_rclip(folder, 8, no_indexing=True)
rclip.search(query, folder, 10)
times = []
for i in range(repeats):
    started = time.perf_counter()
    rclip.search(f"{query} {i}", folder, 10)
    times.append(time.perf_counter() - started)
print(json.dumps({"p50_s": statistics.median(times), "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# A process answering text queries, as rclip's above: the first query loads what it needs, the rest
# are timed. (The app loads the image side too, for image queries: see the startup section.)
WARM_PRODUCT = """
import json, resource, statistics, sys, time
from retrieval.engine import Engine
from retrieval.settings import Settings
query, repeats = sys.argv[1], int(sys.argv[2])
engine = Engine(Settings.from_env())
engine.search_text(query, k=10)
times = []
for i in range(repeats):
    started = time.perf_counter()
    engine.search_text(f"{query} {i}", k=10)
    times.append(time.perf_counter() - started)
print(json.dumps({"p50_s": statistics.median(times), "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def find_rclip(explicit: str | None) -> list[str]:
    """The command that runs rclip: ``--rclip PATH``, ``rclip`` on PATH, or the importable package."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise RetrievalError(f"--rclip {explicit} is not a file: give the rclip executable "
                                 "(for example .venv-rclip/bin/rclip).")
        return [str(path)]
    on_path = shutil.which("rclip")
    if on_path:
        return [on_path]
    if importlib.util.find_spec("rclip") is not None:
        return [sys.executable, "-m", "rclip"]
    raise RetrievalError(
        "The peer section needs rclip, which is not installed. Install it in a virtual environment of its "
        "own (it pins numpy 2.1): `python -m venv .venv-rclip && .venv-rclip/bin/pip install rclip==3.3.0`, "
        "then pass --rclip .venv-rclip/bin/rclip.")


def _python_of(command: list[str]) -> str:
    """The interpreter that runs rclip (for the warm query, which imports it)."""
    if len(command) > 1:
        return command[0]
    with open(command[0], encoding="utf-8", errors="replace") as script:
        first = script.readline()
    return first[2:].strip() if first.startswith("#!") else sys.executable


# -- rclip's model files, from the benchmark's configuration ---------------------

def export_rclip_model(config_dir: Path, datadir: Path, seed: int = 0) -> Path:
    """rclip's data folder with random-weight ONNX exports of a CLIP of this configuration at 256 px."""
    model_dir = datadir / RCLIP_MODEL_SUBDIR
    if (model_dir / "textual.onnx").is_file() and (model_dir / "visual.onnx").is_file():
        return datadir
    merges = config_dir / "merges.txt"
    if not (config_dir / "config.json").is_file() or not merges.is_file():
        raise RetrievalError(f"The peer section needs a CLIP configuration folder with config.json and merges.txt "
                             f"(such as openai/clip-vit-base-patch32's files); {config_dir} has not both.")
    model = _random_clip(json.loads((config_dir / "config.json").read_text()), seed)
    model_dir.mkdir(parents=True, exist_ok=True)
    export_towers(model, model_dir)
    # rclip's tokenizer reads CLIP's byte-pair merges from a gzip file with a version line first,
    # which is exactly merges.txt.
    vocabulary = datadir / RCLIP_VOCABULARY
    vocabulary.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(vocabulary, "wb") as out:
        out.write(merges.read_bytes())
    return datadir


def _random_clip(config: dict, seed: int):
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = {**config, "vision_config": {**config.get("vision_config", {}), "image_size": RCLIP_IMAGE_SIZE}}
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig.from_dict(config)).eval()


def export_towers(model, folder: Path) -> None:
    """``textual.onnx`` (token ids -> text features) and ``visual.onnx`` (pixels -> image features), with
    the input and output names rclip reads."""
    import torch

    class Tower(torch.nn.Module):
        """One side of the model, fed the one input rclip gives it."""

        def __init__(self, clip, features: str, argument: str):
            super().__init__()
            self.clip, self.features, self.argument = clip, features, argument

        def forward(self, inputs):
            return getattr(self.clip, self.features)(**{self.argument: inputs}).pooler_output

    size = model.config.vision_config.image_size
    text = Tower(model, "get_text_features", "input_ids")
    image = Tower(model, "get_image_features", "pixel_values")
    for wrapper, dummy, name in ((text, torch.zeros(1, CONTEXT_LENGTH, dtype=torch.long), "textual.onnx"),
                                 (image, torch.zeros(1, 3, size, size), "visual.onnx")):
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes, not for the table's reader
            torch.onnx.export(wrapper.eval(), (dummy,), str(folder / name), input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=18, dynamo=False)


# -- whole processes, timed --------------------------------------------------------

@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    peak_mib: float  # the process's largest resident size
    stdout: str = ""


# Runs one command and writes its resource use to a file. A process forked from the benchmark starts
# with the benchmark's memory as its "peak" (Linux keeps the larger high-water mark across exec), so the
# command is started from this small process instead, and only its own use is read.
LAUNCHER = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump({"cpu_s": usage.ru_utime + usage.ru_stime, "peak_kib": usage.ru_maxrss}, out)
sys.exit(code)
"""


def timed(command: list[str], env: dict, cwd: Path, timeout: float = 1800) -> Timed:
    """Wall time, CPU time (user + system) and peak memory of one process run to its end, that process
    alone (``LAUNCHER``)."""
    with tempfile.TemporaryDirectory() as scratch:
        usage_file = Path(scratch) / "usage.json"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", LAUNCHER, str(usage_file), *command], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RetrievalError(f"`{' '.join(command[:4])} ...` failed (exit {done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()[-1500:]}")
        usage = json.loads(usage_file.read_text())
    return Timed(wall, usage["cpu_s"], usage["peak_kib"] / 1024, done.stdout)


class Sides:
    """How to run each side's commands, each with its own store or database."""

    def __init__(self, rclip_models: Path, model: str, settings: Settings, work: Path):
        self.rclip_models, self.work = rclip_models, work
        # A cache of its own: filled by a warm-up run (the precision trial and the text export a
        # user's first run makes once), then what every later run finds.
        self.product_env = {**os.environ, "MODEL": model, "HF_HUB_OFFLINE": "1", "PRECISION": settings.precision,
                            "CACHE_DIR": str(work / "product-cache")}
        for name in ("CHROMA_HOST", "CHROMA_COLLECTION"):
            self.product_env.pop(name, None)
        self._fresh = 0

    def product(self, *argv: str, store: Path) -> tuple[list[str], dict]:
        return [sys.executable, "-m", "retrieval", *argv], {**self.product_env, "CHROMA_PATH": str(store)}

    def rclip_env(self, datadir: Path) -> dict:
        return {**os.environ, "RCLIP_DATADIR": str(datadir), "HF_HUB_OFFLINE": "1"}

    def fresh_rclip_datadir(self) -> Path:
        """An rclip data folder with the model files and no database: a first run indexes everything."""
        self._fresh += 1
        datadir = self.work / f"rclip-data-{self._fresh}"
        datadir.mkdir(parents=True)
        for name in (RCLIP_MODEL_SUBDIR, "tokenizer"):
            (datadir / name).symlink_to(self.rclip_models / name)
        return datadir

    def fresh_store(self) -> Path:
        self._fresh += 1
        return self.work / f"product-store-{self._fresh}"


def _alternate(rounds: int, product, peer) -> tuple[list[Timed], list[Timed]]:
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(product())
        theirs.append(peer())
    return ours, theirs


def _median_ratio(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(ours, theirs))


def run(report: Report, rclip_command: list[str], config_dir: Path, model: str, settings: Settings,
        photos: list[Path], large_count: int, work: Path, rounds: int = 3, repeats: int = 20) -> None:
    from .indexing import write_large_jpegs

    if not photos:
        raise RetrievalError("The peer section needs --photos: a folder of ordinary photos both tools index.")
    section = "vs rclip"
    sides = Sides(export_rclip_model(config_dir, work / "rclip-models"), model, settings, work)
    folder = _copy_photos(photos, work / "peer-photos")
    large = write_large_jpegs(work / "peer-12mp", large_count)[0].parent
    details = report.details.setdefault("peer", {"rclip": " ".join(rclip_command), "photos": len(photos),
                                                 "large_jpegs": large_count, "rounds": rounds})

    def index_product(source: Path, store: Path | None = None) -> Timed:
        command, env = sides.product("index", str(source), store=store or sides.fresh_store())
        return timed(command, env, REPO)

    def index_rclip(source: Path, datadir: Path | None = None) -> Timed:
        # rclip indexes the folder it runs in, then answers the query
        return timed([*rclip_command, "-t", "1", QUERY], sides.rclip_env(datadir or sides.fresh_rclip_datadir()),
                     source)

    warm_up = _copy_photos(photos[:4], work / "peer-warm-up")
    index_product(warm_up)
    index_rclip(warm_up)

    # full indexing into an empty store, process start included
    for name, source, count in (("full index, photos", folder, len(photos)),
                                ("full index, 12 MP JPEGs", large, large_count)):
        ours, theirs = _alternate(rounds, lambda: index_product(source), lambda: index_rclip(source))
        rate = _median_ratio([t.wall_s for t in theirs], [t.wall_s for t in ours])  # photos/s, product / rclip
        cpu = _median_ratio([t.cpu_s for t in ours], [t.cpu_s for t in theirs])
        _add(report, section, name, f"{count / statistics.median(t.wall_s for t in ours):.1f} / "
             f"{count / statistics.median(t.wall_s for t in theirs):.1f} photos/s", rate, "photos/s vs rclip")
        report.add(section, f"{name}: CPU time product / rclip", cpu, "x", baseline="rclip's CPU time", ratio=cpu)
        details[name] = {"product_s": [t.wall_s for t in ours], "rclip_s": [t.wall_s for t in theirs],
                         "product_peak_mib": [t.peak_mib for t in ours], "rclip_peak_mib": [t.peak_mib for t in theirs]}
        if name == "full index, photos":
            _add_memory(report, section, "peak memory, full index", ours, theirs)

    # a few new photos in an indexed folder: what a user's next run after a day's photos is
    added = _copy_photos(photos[:NEW_PHOTOS], work / "peer-new-photos", prefix="new-")
    base = photos[NEW_PHOTOS:NEW_PHOTOS + 20]
    ours, theirs = [], []
    for _ in range(max(rounds, 3)):
        for timings, index, place in ((ours, index_product, sides.fresh_store()),
                                      (theirs, index_rclip, sides.fresh_rclip_datadir())):
            source = _copy_photos(base, work / f"peer-grown-{len(ours)}-{len(theirs)}")
            index(source, place)
            for photo in added.iterdir():
                shutil.copyfile(photo, source / photo.name)
            timings.append(index(source, place))
    ratio = _median_ratio([t.wall_s for t in ours], [t.wall_s for t in theirs])
    _add(report, section, "index, 4 new photos", f"{statistics.median(t.wall_s for t in ours):.2f} / "
         f"{statistics.median(t.wall_s for t in theirs):.2f} s", ratio, "wall time vs rclip")
    details["index, 4 new photos"] = {"product_s": [t.wall_s for t in ours], "rclip_s": [t.wall_s for t in theirs]}

    # an indexed folder: index again (nothing new), a cold search, a warm query
    store, datadir = sides.fresh_store(), sides.fresh_rclip_datadir()
    index_product(folder, store)
    index_rclip(folder, datadir)
    search_product = sides.product("search", QUERY, "-k", "10", store=store)
    index_again = sides.product("index", str(folder), store=store)
    for name, ours_command, theirs_argv in (
            ("cold search", search_product, ["--no-indexing", "-t", "10", QUERY]),
            ("index, nothing new", index_again, ["-t", "10", QUERY])):
        ours, theirs = _alternate(max(rounds, 5), lambda: timed(*ours_command, REPO),
                                  lambda: timed([*rclip_command, *theirs_argv], sides.rclip_env(datadir), folder))
        ratio = _median_ratio([t.wall_s for t in ours], [t.wall_s for t in theirs])
        _add(report, section, name, f"{statistics.median(t.wall_s for t in ours):.2f} / "
             f"{statistics.median(t.wall_s for t in theirs):.2f} s", ratio, "wall time vs rclip")
        details[name] = {"product_s": [t.wall_s for t in ours], "rclip_s": [t.wall_s for t in theirs],
                         "product_peak_mib": [t.peak_mib for t in ours], "rclip_peak_mib": [t.peak_mib for t in theirs]}
        if name == "cold search":
            _add_memory(report, section, "peak memory, cold search", ours, theirs)

    _, env = sides.product(store=store)
    ours = json.loads(timed([sys.executable, "-c", WARM_PRODUCT, QUERY, str(repeats)], env, REPO)
                      .stdout.strip().splitlines()[-1])
    theirs = json.loads(timed([_python_of(rclip_command), "-c", WARM_RCLIP, str(folder), QUERY, str(repeats)],
                              sides.rclip_env(datadir), folder, timeout=600).stdout.strip().splitlines()[-1])
    ratio = ours["p50_s"] / theirs["p50_s"]
    _add(report, section, "warm text query", f"{1000 * ours['p50_s']:.1f} / {1000 * theirs['p50_s']:.1f} ms", ratio,
         "p50 vs rclip")
    memory = ours["peak_kib"] / theirs["peak_kib"]
    _add(report, section, "peak memory, warm process", f"{ours['peak_kib'] / 1024:,.0f} / "
         f"{theirs['peak_kib'] / 1024:,.0f} MiB", memory, "peak resident memory vs rclip")
    details["warm process"] = {"product": ours, "rclip": theirs}


def _add_memory(report: Report, section: str, name: str, ours: list[Timed], theirs: list[Timed]) -> None:
    product, rclip = statistics.median(t.peak_mib for t in ours), statistics.median(t.peak_mib for t in theirs)
    _add(report, section, name, f"{product:,.0f} / {rclip:,.0f} MiB", product / rclip,
         "peak resident memory vs rclip")


def _add(report: Report, section: str, name: str, figures: str, ratio: float, baseline: str) -> None:
    target, bound = GOALS[name]
    met = ratio >= bound if target.startswith(">=") else ratio <= bound
    report.add(section, f"{name} (product / rclip: {figures})", ratio, "x", baseline=baseline, ratio=ratio,
               target=target, met=met)


def _copy_photos(photos: list[Path], folder: Path, prefix: str = "") -> Path:
    """Both tools index the same files, in a folder of their own (rclip indexes the folder it runs in)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        shutil.copyfile(photo, folder / f"{prefix}{index:05d}{photo.suffix.lower()}")
    return folder


