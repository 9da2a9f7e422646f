"""``python -m retrieval benchmark`` / ``scripts/benchmark.py``: run the sections,
print the table, write the JSON."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from ..errors import RetrievalError
from ..photos.files import walk_images
from ..settings import Settings
from .report import Report

SECTIONS = ("indexing", "queries", "explain", "startup", "concurrency", "speech")
# Run only when asked for: peer needs rclip installed; ray starts a local Ray cluster (a minute);
# map lays out a big synthetic collection (minutes); regions fills photos and their regions (many
# minutes at 100,000 photos).
OPTIONAL_SECTIONS = ("peer", "ray", "map", "regions", "captions", "int8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval benchmark",
        description="Measure indexing throughput, query latency, start-up, concurrent clients, ANN recall and "
                    "transcription speed, each as a ratio against a baseline measured in the same run; "
                    "and, with --sections peer, the product against rclip on the same photos.")
    parser.add_argument("--model", action="append", default=[],
                        help="image-text model id or folder (default: MODEL); repeat to measure several "
                             "side by side in one run")
    parser.add_argument("--random-weights", action="append", default=[], metavar="CONFIG",
                        help="build a full-size model with random weights from this configuration folder "
                             "(config, tokenizer and preprocessor files) or built-in name "
                             "(siglip2-base-patch32-256): same cost as the trained model; repeatable")
    parser.add_argument("--photos", type=Path, help="a folder of ordinary (~640 px) photos for indexing")
    parser.add_argument("--photo-count", type=int, default=128, help="photos used from --photos (default 128)")
    parser.add_argument("--large-count", type=int, default=64, help="12-megapixel JPEGs to generate (default 64)")
    parser.add_argument("--naive-count", type=int, default=32, help="files for the naive pipeline (default 32)")
    parser.add_argument("--sizes", default="10000,100000",
                        help="collection sizes for query latency (default 10000,100000; add 1000000 if "
                             "memory and time allow)")
    parser.add_argument("--backends", default="chroma",
                        help="store backends the query section runs on, side by side: chroma, milvus-lite "
                             "(default chroma)")
    parser.add_argument("--ray-photos", type=int, default=96,
                        help="ray section: photos indexed by each pipeline (default 96)")
    parser.add_argument("--map-photos", type=int, default=25000,
                        help="map section: photos laid out (default 25000)")
    parser.add_argument("--region-sizes", default="10000",
                        help="regions section: photo counts for the query comparison, each photo with "
                             "--regions-per-photo regions (default 10000; the issue's figure is 100000)")
    parser.add_argument("--regions-per-photo", type=int, default=16, help="regions section (default 16)")
    parser.add_argument("--no-sam", action="store_true", help="regions section: leave out SAM's cost")
    parser.add_argument("--repeats", type=int, default=50, help="queries timed per kind (default 50)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="indexing: rounds of ceiling, product, ceiling; the median round is reported (default 3)")
    parser.add_argument("--thread-sweep", action="store_true",
                        help="indexing: also index --photos in a process of its own for each TORCH_THREADS (1, all "
                             "cores) x DECODE_WORKERS (1, 2, 3), --rounds times each (minutes)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"any of {','.join(SECTIONS + OPTIONAL_SECTIONS)} (default: all but peer)")
    parser.add_argument("--rclip", metavar="PATH",
                        help="peer section: the rclip executable (default: rclip on PATH, or the installed package)")
    parser.add_argument("--speech-clip", type=Path, help="a recording to cut to 5 s (default: espeak-ng speech)")
    parser.add_argument("--batch-size", type=int, help="images per batch (BATCH_SIZE)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/benchmark-DATE.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS + OPTIONAL_SECTIONS)
    if unknown:
        print(f"error: unknown section(s) {', '.join(sorted(unknown))}; use "
              f"{', '.join(SECTIONS + OPTIONAL_SECTIONS)}", file=sys.stderr)
        return 1
    try:
        with tempfile.TemporaryDirectory(prefix="benchmark-") as scratch:
            work = args.work or Path(scratch)
            work.mkdir(parents=True, exist_ok=True)
            report = run(args, sections, work)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for label, details in report.details.get("per_model", {}).items():
        model = details.get("model", {})
        print(f"{label}: {model.get('family')}, {model.get('dim')}-d vectors, on {model.get('device')}; "
              f"precision {model.get('precision')}")
    print(report.table())
    out = args.out or Path("benchmarks/results") / f"benchmark-{datetime.now():%Y%m%d-%H%M%S}.json"
    print(f"\nwritten to {report.write(out)}")
    return 0


def run(args, sections: list[str], work: Path) -> Report:
    from .random_model import build_random_model

    settings = Settings.from_env().with_overrides(batch_size=args.batch_size)
    models = [(name, name) for name in args.model]
    models += [(str(build_random_model(spec, work)), f"{Path(str(spec)).name} (random weights)")
               for spec in args.random_weights]
    models = models or [(settings.model, settings.model)]
    report = Report()
    report.details["models"] = [label for _, label in models]
    photos = _photos(args.photos, args.photo_count)
    model_sections = [s for s in sections if s not in ("speech", "peer", "ray", "map")]
    per_model = report.details["per_model"] = {}
    for model, label in models:
        first_row, known = len(report.rows), set(report.details)
        run_model(report, args, model_sections, settings.with_overrides(model=model), photos, work)
        if len(models) > 1:  # side by side: each row says which model it measured
            for row in report.rows[first_row:]:
                row.section = f"{Path(label).name}: {row.section}"
        per_model[label] = {key: report.details.pop(key) for key in set(report.details) - known}
    if "speech" in sections:
        from . import speech

        speech.run(report, settings, work, args.speech_clip)
    if "peer" in sections:
        _run_peer(report, args, settings, photos, work)
    if "ray" in sections:
        from . import cluster

        cluster.run(report, settings.with_overrides(model=models[0][0]), photos, args.ray_photos, work)
    if "map" in sections:
        from . import map_layout

        map_layout.run(report, args.map_photos)
    return report


def _run_peer(report: Report, args, settings: Settings, photos: list[Path], work: Path) -> None:
    """rclip and the product on the same photos, both with a random ViT-B/32-class CLIP of one configuration."""
    from . import peer
    from .random_model import build_random_model

    folders = [Path(spec) for spec in args.random_weights if Path(spec).is_dir()]
    if not folders:
        raise RetrievalError("The peer section needs --random-weights CONFIG_DIR with a CLIP configuration "
                             "(for example the files of openai/clip-vit-base-patch32): both tools are built "
                             "from it.")
    rclip = peer.find_rclip(args.rclip)
    model = str(build_random_model(folders[0], work))
    peer.run(report, rclip, folders[0], model, settings, photos, args.large_count, work,
             rounds=args.rounds, repeats=args.repeats)


def run_model(report: Report, args, sections: list[str], settings: Settings, photos: list[Path],
              work: Path) -> None:
    from ..embedder import load_embedder
    from . import concurrency, explain, indexing, queries, startup

    if not sections:
        return
    model = settings.model
    embedder = load_embedder(model, settings.torch_threads, settings.precision, settings.device)
    report.details["model"] = {**embedder.describe(), "precision": embedder.precision}
    if "indexing" in sections:
        indexing.run(report, embedder, settings, photos, args.large_count, args.naive_count, work, args.rounds)
        if args.thread_sweep:
            from . import thread_sweep

            if not photos:
                raise RetrievalError("--thread-sweep needs --photos: the photos each setting indexes.")
            thread_sweep.run(report, model, photos, work, rounds=args.rounds)
    if "queries" in sections:
        sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
        backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
        unknown = set(backends) - set(queries.BACKENDS)
        if unknown:
            raise RetrievalError(f"--backends: unknown {', '.join(sorted(unknown))}; use {', '.join(queries.BACKENDS)}")
        queries.run(report, embedder, settings, sizes, photos[:20], work, repeats=args.repeats, backends=backends)
    if "explain" in sections:
        explain.run(report, embedder, photos)
    if "int8" in sections:
        from . import int8

        int8.run(report, model, settings, photos)
    if "captions" in sections:
        from . import captions

        captions.run(report, embedder, photos)
    if "regions" in sections:
        from . import regions

        sizes = [int(float(s)) for s in args.region_sizes.split(",") if s.strip()]
        regions.run(report, embedder, settings.with_overrides(regions_per_photo=args.regions_per_photo), photos,
                    work, sizes, per_photo=args.regions_per_photo, repeats=args.repeats, sam=not args.no_sam)
    if "startup" in sections or "concurrency" in sections:
        # As on a machine after its first `index`: the app finds the model's checked ONNX exports.
        embedder.prepare_text_export()
        embedder.prepare_image_export()
        store = _startup_store(embedder, settings, photos, work)
        if "startup" in sections:
            startup.run(report, model, store)
        if "concurrency" in sections:
            concurrency.run(report, model, store, queries=max(5, args.repeats // 5))
    del embedder


def _photos(folder: Path | None, count: int) -> list[Path]:
    if folder is None:
        return []
    if not folder.is_dir():
        raise RetrievalError(f"--photos {folder} is not a folder.")
    return list(walk_images([folder]))[:count]


def _startup_store(embedder, settings: Settings, photos: list[Path], work: Path) -> Path:
    """A small collection built with the benchmark's model, for the app to open."""
    from ..engine import Engine
    from .indexing import write_large_jpegs

    store = work / f"startup-store-{Path(settings.model).name}"  # one per model measured
    engine = Engine(settings.with_overrides(chroma_path=store), embedder=embedder)
    engine.index(photos[:16] or write_large_jpegs(work / "startup-photos", 4, size=(640, 480)))
    return store
