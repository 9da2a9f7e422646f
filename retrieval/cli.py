"""Command line: ``python -m retrieval index|search|transcribe|load|benchmark|evaluate|stats``.

Thin by design: parse arguments, call the engine, print. ``--json`` switches
every command to machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .errors import RetrievalError
from .settings import Settings, parse_store


SKIPPED_LISTED = 20  # files listed per skip reason in the human summary
SHORT_ID = 10  # characters of a photo's id shown in text output; --like and explain take any unique start


def _add_settings_flags(parser: argparse.ArgumentParser, *, store: bool = True, model: bool = True,
                        speech: bool = False, batching: bool = False) -> None:
    """The settings flags a command uses (each overrides its environment variable)."""
    group = parser.add_argument_group("settings (override the environment variables)")
    if model:
        group.add_argument("--model", help="image-text model (CLIP, SigLIP, SigLIP 2, MetaCLIP 2): "
                                           "Hugging Face id or local folder (MODEL)")
        group.add_argument("--threads", type=int, help="CPU threads for the model (TORCH_THREADS)")
        group.add_argument("--device", help="where the model runs: auto, cpu, cuda, mps (DEVICE)")
    if batching:
        group.add_argument("--batch-size", type=int, help="images per model batch and commit (BATCH_SIZE)")
    if store:
        group.add_argument("--store", help="chroma (default), milvus:FOLDER (Milvus Lite) or "
                                           "milvus://HOST:PORT (a Milvus server) (STORE)")
        group.add_argument("--chroma-path", type=Path, help="embedded store folder (CHROMA_PATH)")
        group.add_argument("--chroma-host", help="use the Chroma server on this host (CHROMA_HOST)")
        group.add_argument("--chroma-port", type=int, help="port of the Chroma server (CHROMA_PORT)")
        group.add_argument("--collection", help="collection name (CHROMA_COLLECTION)")
    if speech:
        group.add_argument("--asr-backend", choices=["faster-whisper", "openai-whisper"],
                           help="speech recogniser (ASR_BACKEND)")
        group.add_argument("--asr-model", help="Whisper size name or local model (ASR_MODEL)")
        group.add_argument("--language", help="language spoken, e.g. en, de (ASR_LANGUAGE; default: detected)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")


EXAMPLES = """examples:
  python -m retrieval index ~/Pictures --metadata photos.tsv
  python -m retrieval search "a dog running on the beach" -k 5
  python -m retrieval search --image query.jpg
  python -m retrieval search --tags beach,sunset --all
  python -m retrieval search '2:golden retriever' + ./pool.jpg - fruit
  python -m retrieval search dog --where "width>=1000" --min-score 0.2
  python -m retrieval transcribe query.m4a --json
  python -m retrieval stats
  python -m retrieval reembed --model google/siglip2-base-patch32-256 --switch
  python -m retrieval export exported/ && STORE=milvus:milvus_store python -m retrieval import exported/
Every command takes --json; `python -m retrieval COMMAND --help` lists its options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval", description="Search your photos by text, image, tags or a mix.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="add the photos in folders (or files) to the index")
    index.add_argument("paths", nargs="*", type=Path, help="folders or image files")
    index.add_argument("--metadata", type=Path, help="CSV / TSV / JSON / JSONL table of photo metadata")
    index.add_argument("--source", default="local", help="label stored with each photo (default: local)")
    index.add_argument("--prune", action="store_true",
                       help="remove records of files under these folders that no longer exist")
    index.add_argument("--max-pixels", type=int, help="skip images larger than this (MAX_IMAGE_PIXELS)")
    index.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                       help="leave out files or folders matching this gitignore-style pattern, relative to "
                            "each folder (repeatable; also read from a .photoignore file in the folder)")
    index.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="read, decode and embed on a Ray cluster: 'local' (default: a Ray instance on "
                            "this machine), 'auto', HOST:6379 or ray://HOST:10001")
    index.add_argument("--regions", action="store_true", default=None,
                       help="also find objects and regions in each photo and embed them, so a search can match "
                            "part of a photo (photos indexed before get theirs; REGIONS)")
    index.add_argument("--proposer", metavar="NAME",
                       help="how --regions finds them: segments (default, no download), grid, or a SAM model "
                            "by Hugging Face id or folder, e.g. facebook/sam-vit-base (REGION_PROPOSER)")
    index.add_argument("--ocr", action="store_true", default=None,
                       help="also read the words in each photo (signs, labels, screenshots; OCR=1); photos "
                            "indexed before are read on this run, nothing is embedded again")
    index.add_argument("--captions", action="store_true", default=None,
                       help="also write a caption for each photo with a captioning model (CAPTIONS=1); photos "
                            "indexed before are captioned on this run, nothing is embedded again")
    index.add_argument("--caption-model", metavar="NAME",
                       help="the captioning model, a Hugging Face id or folder (default "
                            "microsoft/git-base-coco; CAPTION_MODEL)")
    index.add_argument("--meaning", action=argparse.BooleanOptionalAction, default=None,
                       help="embed each described photo's descriptions, captions and read words by meaning with "
                            "a sentence model, so a search finds photos described in other words (on by default; "
                            "--no-meaning or MEANING=0: not; the model: SENTENCE_MODEL, default all-MiniLM-L6-v2). "
                            "Photos without any text cost nothing")
    index.add_argument("--regions-per-photo", type=int, metavar="N",
                       help="at most N regions per photo (default 16; REGIONS_PER_PHOTO)")
    index.add_argument("--ray-workers", type=int, metavar="N",
                       help="model copies on the cluster (default: one per GPU, else one per CPU)")
    _add_settings_flags(index, batching=True)

    search = commands.add_parser(
        "search", help="find photos",
        description="QUERY is text, an image path, or a composition such as "
                    "'2:golden retriever' + ./pool.jpg - fruit",
    )
    search.add_argument("query", nargs="*", help="text and/or image terms, joined by + and -")
    search.add_argument("--image", type=Path, action="append", default=[], help="query image (repeatable)")
    search.add_argument("--without", action="append", default=[], help="text to steer away from")
    search.add_argument("--like", metavar="ID", help="photos similar to the stored photo with this id")
    search.add_argument("--audio", type=Path, metavar="FILE",
                        help="a spoken query (wav, mp3, flac, ogg, webm, m4a), transcribed by Whisper")
    search.add_argument("--tags", help="comma-separated tags")
    mode = search.add_mutually_exclusive_group()
    mode.add_argument("--all", dest="match_all", action="store_true", help="photos with all the tags")
    mode.add_argument("--any", dest="match_all", action="store_false", help="photos with any tag (default)")
    search.add_argument("--where", action="append", default=[], metavar="FILTER",
                        help="metadata filter such as photographer='Jane Doe' or width>=1000 (repeatable)")
    search.add_argument("--photographer", help="only this photographer's photos")
    search.add_argument("--source", help="only photos from this source")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--offset", type=int, default=0, help="skip this many results (paging)")
    search.add_argument("--min-score", type=float, help="drop results below this cosine similarity")
    search.add_argument("--after", metavar="DATE", help="taken on or after DATE (2024, 2024-06, 2024-06-01)")
    search.add_argument("--before", metavar="DATE", help="taken before DATE (2024-07 ends with June 2024)")
    search.add_argument("--camera", help="only photos taken with this camera, as their details name it "
                                         "(\"Canon EOS R5\")")
    search.add_argument("--near", metavar="LAT,LON", help="only photos taken near this place, in degrees (south and west negative: --near=-33.86,151.21)")
    search.add_argument("--within", type=float, metavar="KM", help="distance for --near (default 1 km)")
    search.add_argument("--contains", action="append", default=[], metavar="PHRASE",
                        help="only photos whose text (description, captions, words read in the photo, tags, "
                             "file name) holds this word or phrase, in any case; repeat for several")
    search.add_argument("--no-hybrid", dest="hybrid", action="store_false",
                        help="rank by the picture only: the query's words found in photos' text, and their "
                             "descriptions' meaning, don't count")
    search.add_argument("--no-meaning", dest="meaning", action="store_false",
                        help="leave the descriptions' meaning out of the ranking (where indexing embedded it)")
    search.add_argument("--no-regions", dest="regions", action="store_false",
                        help="score whole photos only, even where the collection has regions")
    search.add_argument("--collapse", action="store_true",
                        help="show near-identical photos as one result (the others listed under it)")
    search.add_argument("--sort", choices=["score", "date", "-date", "oldest", "newest"], default=None,
                        help="order: score (best first, the default with a query), date or oldest (oldest "
                             "first), --sort=-date or newest (newest first, the default without a query)")
    _add_settings_flags(search, speech=True)

    transcribe = commands.add_parser("transcribe", help="turn a spoken query into text with Whisper")
    transcribe.add_argument("audio", type=Path, help="wav, mp3, flac, ogg, webm or m4a file")
    transcribe.add_argument("--max-seconds", type=float, help="use at most this much audio (ASR_MAX_SECONDS)")
    _add_settings_flags(transcribe, store=False, model=False, speech=True)

    load = commands.add_parser(
        "load", help="bring a photo collection (Unsplash Lite, Kaggle, Hugging Face, folder) into the index",
        description="SOURCE: unsplash-lite[:FOLDER|ARCHIVE|URL], kaggle:OWNER/DATASET, "
                    "hf:DATASET[:SPLIT] (hub id, local dataset folder or parquet file), folder:DIR",
    )
    load.add_argument("source", help="where the photos come from (see above)")
    load.add_argument("--limit", type=int, help="only this many photos, chosen before anything is downloaded")
    load.add_argument("--sample", choices=["first", "random"], default="first",
                      help="which photos --limit keeps (default: first)")
    load.add_argument("--seed", type=int, default=0, help="random seed for --sample random (default 0)")
    load.add_argument("--dest", type=Path, help="folder for downloads and extracted files (default: data/NAME)")
    load.add_argument("--width", type=int, default=640,
                      help="Unsplash photos are downloaded this wide (0: original size; default 640)")
    load.add_argument("--min-confidence", type=float, default=50.0,
                      help="Unsplash AI keywords need this confidence (0-100) to become tags (default 50)")
    load.add_argument("--workers", type=int, default=8, help="downloads at a time (default 8)")
    load.add_argument("--retries", type=int, default=3, help="retries per download (default 3)")
    load.add_argument("--timeout", type=float, default=20.0, help="seconds without data before a retry")
    load.add_argument("--max-download-mb", type=float, default=25.0, help="largest photo to download (MB)")
    load.add_argument("--metadata", type=Path, help="folder/kaggle: the metadata table (found by itself if only one)")
    load.add_argument("--archive", type=Path, help="kaggle: an archive already downloaded (no API call)")
    load.add_argument("--image-column", help="hf: the image column (found by itself if only one)")
    load.add_argument("--description-column", help="hf: the column to use as description")
    load.add_argument("--tags-column", help="hf: the column to use as tags")
    load.add_argument("--meaning", action=argparse.BooleanOptionalAction, default=None,
                      help="embed the photos' descriptions (Unsplash's own and its AI descriptions, a table's "
                           "captions) by meaning, as index does (on by default; --no-meaning or MEANING=0: not)")
    _add_settings_flags(load, batching=True)

    # These two have their own options (see `python -m retrieval benchmark --help`).
    commands.add_parser("benchmark", help="measure indexing, query, start-up and speech speed", add_help=False)
    commands.add_parser("evaluate", help="recall@k on a captioned collection", add_help=False)

    reembed = commands.add_parser(
        "reembed", help="move the collection to another model (every photo embedded again)",
        description="Embeds every photo of the collection again with --model, from its file (or its image "
                    "URL), into a new collection next to the old one. Resumable: run it again after an "
                    "interruption. The old collection stays as it is until --switch.")
    reembed.add_argument("--model", required=True, dest="new_model", metavar="MODEL",
                         help="the new model: Hugging Face id or local folder")
    reembed.add_argument("--switch", action="store_true",
                         help="when done, give the new collection the old one's name (the old one is kept "
                              "under another name)")
    _add_settings_flags(reembed, batching=True, model=False)
    reembed.add_argument("--device", help="where the model runs: auto, cpu, cuda, mps (DEVICE)")

    export = commands.add_parser(
        "export", help="write the collection (vectors, metadata, model) as Parquet files",
        description="Writes ids, vectors, metadata and the model's facts as Parquet shards and a "
                    "manifest.json in OUT, for `import` on another machine or another store backend. "
                    "Photo files are not copied: records keep their paths and image URLs.")
    export.add_argument("out", type=Path, help="a new folder for the export")
    export.add_argument("--shard-rows", type=int, help="records per Parquet file (default 50000)")
    _add_settings_flags(export, model=False)

    load_export = commands.add_parser(
        "import", help="load an exported collection into the store",
        description="SOURCE: an export folder, or a Hugging Face dataset holding one (hf:OWNER/NAME). "
                    "A collection built with another model refuses it. Run it again after an interruption.")
    load_export.add_argument("source", help="export folder or hf:OWNER/NAME")
    _add_settings_flags(load_export, model=False)

    duplicates = commands.add_parser(
        "duplicates", help="list groups of near-identical photos, biggest first",
        description="Groups of resized, recompressed, re-encoded, lightly cropped or edited copies, by the "
                    "photos' perceptual hashes (read when they were indexed; `index` gives older photos "
                    "theirs). The first photo of each group is the largest.")
    duplicates.add_argument("--threshold", type=int, metavar="BITS",
                            help="hash bits (of 64) two copies may differ in (default 12; more finds more, "
                                 "and more false matches)")
    duplicates.add_argument("--limit", type=int, default=50, help="groups listed (default 50; --json lists all)")
    _add_settings_flags(duplicates, model=False)

    collection_map = commands.add_parser(
        "map", help="draw a map of the collection: similar photos together",
        description="Places every photo in 2-D by similarity (UMAP from 2000 photos, PCA below) and draws "
                    "it as a PNG of thumbnails or as an HTML page. The layout is kept and reused until the "
                    "collection changes.")
    collection_map.add_argument("--out", type=Path, required=True, help="map.png or map.html")
    collection_map.add_argument("--colour-by", "--color-by", dest="colour_by", default="tags",
                                help="field the frames are coloured by: tags, photographer, year, camera, "
                                     "source (default tags)")
    collection_map.add_argument("--method", choices=["auto", "pca", "umap"], default="auto",
                                help="layout (default auto: UMAP from 2000 photos)")
    collection_map.add_argument("--max-points", type=int, default=1500, help="thumbnails drawn (default 1500)")
    _add_settings_flags(collection_map, model=False)

    explain = commands.add_parser(
        "explain", help="show where a photo matches a query (a heat map over the photo)",
        description="Draws the model's Grad-CAM heat map of the photo's score for the query over the photo: "
                    "the warmer, the more that part raised the score. The query is written as for `search` "
                    "(text, image files, + and -).")
    explain.add_argument("id", help="the photo's id (as `search --json` gives it)")
    explain.add_argument("query", nargs="*", help="text and/or image terms, joined by + and -")
    explain.add_argument("--image", type=Path, action="append", default=[], help="query image (repeatable)")
    explain.add_argument("--out", type=Path, required=True, help="the picture to write (PNG or JPEG)")
    _add_settings_flags(explain)

    stats = commands.add_parser("stats", help="what is in the index")
    _add_settings_flags(stats, model=False)

    precision = commands.add_parser(
        "precision", help="which arithmetic the model's image side uses on this CPU, and why",
        description="With PRECISION=auto on a CPU that computes bfloat16 natively, the model's image side is "
                    "timed in float32 and bfloat16 (CPU time, interleaved rounds) when it first loads, and the "
                    "choice is remembered in CACHE_DIR. This loads the model and shows the choice with its figures; "
                    "--retime forgets the remembered trial and times it again (after a hardware or driver change).")
    precision.add_argument("--retime", action="store_true", help="time float32 against bfloat16 again")
    _add_settings_flags(precision)

    repair = commands.add_parser(
        "repair", help="mend a store that a record it could not take has blocked",
        description="Embedded Chroma applies its writes after committing them; a record it can't apply "
                    "(from an older version without field limits) blocks every later read. This cuts each "
                    "waiting record to the limits every store accepts, so the store reads again. Nothing "
                    "else changes. Run it when an error tells you to.")
    _add_settings_flags(repair, model=False)
    return parser


def _regions_per_photo(value: int | None) -> int | None:
    from .settings import MAX_REGIONS_PER_PHOTO

    if value is not None and not 1 <= value <= MAX_REGIONS_PER_PHOTO:
        raise RetrievalError(f"--regions-per-photo must be between 1 and {MAX_REGIONS_PER_PHOTO}, got {value}.")
    return value


def _store_flag(value: str | None) -> str | None:
    return parse_store(value) if value is not None else None


def _settings(args: argparse.Namespace) -> Settings:
    flag = lambda name: getattr(args, name, None)  # noqa: E731 - each command has its own flags
    language = flag("language")
    return Settings.from_env().with_overrides(
        model=flag("model"),
        store=_store_flag(flag("store")),
        chroma_path=flag("chroma_path"),
        chroma_host=flag("chroma_host"),
        chroma_port=flag("chroma_port"),
        collection=flag("collection"),
        torch_threads=flag("threads"),
        device=flag("device"),
        batch_size=flag("batch_size"),
        max_image_pixels=flag("max_pixels"),
        region_proposer=flag("proposer"),
        caption_model=flag("caption_model"),
        regions_per_photo=_regions_per_photo(flag("regions_per_photo")),
        asr_backend=flag("asr_backend"),
        asr_model=flag("asr_model"),
        asr_max_seconds=flag("max_seconds"),
        asr_language=language.strip().lower() if language else None,
    )


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


# -- commands -----------------------------------------------------------------

class _ProgressBar:
    """A tqdm bar made at the first update, so its clock and rate leave out loading the model."""

    def __init__(self, desc: str):
        self.desc, self.bar, self.stage = desc, None, None

    def __call__(self, update) -> None:
        from tqdm import tqdm

        stage = getattr(update, "stage", None)
        if self.bar is not None and stage != self.stage:  # the next stage (regions) counts afresh
            self.close()
            self.bar, self.desc = None, stage or self.desc
        self.stage = stage
        if self.bar is None:
            self.bar = tqdm(total=update.total, unit="img", desc=self.desc, disable=None, file=sys.stderr,
                            dynamic_ncols=True)
        if hasattr(update, "added"):
            self.bar.set_postfix(added=update.added, skipped=update.skipped, refresh=False)
        self.bar.update(update.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_index(engine, args) -> int:
    from .indexing.cluster import looks_like_address

    if args.ray is not None and not looks_like_address(args.ray):  # `index --ray FOLDER`
        args.paths.insert(0, Path(args.ray))
        args.ray = "local"
    if not args.paths:
        raise RetrievalError("Name the folders or image files to index: python -m retrieval index FOLDER")
    if engine.settings.ocr_craft and (engine.settings.ocr if args.ocr is None else args.ocr):
        _say_if_craft_is_made(engine.settings.ocr_craft)
    progress = _ProgressBar("indexing")
    try:
        report = engine.index(args.paths, metadata_file=args.metadata, source=args.source,
                              prune=args.prune, progress=progress, ray=args.ray, ray_workers=args.ray_workers,
                              exclude=args.exclude, regions=args.regions, ocr=args.ocr,
                              captions=args.captions, meaning=args.meaning)
    finally:
        progress.close()
    _print_index_report(engine, report, args.json)
    sys.stdout.flush()  # the summary is out before any export below
    engine.keep_snapshot()  # the next command's search then needs no chromadb
    _prepare_exports(engine)
    global _store_untouched
    _store_untouched = not report.changed_the_store
    return 0


def _print_index_report(engine, report, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_dict())
        return
    if report.added:
        headline = (f"Added {len(report.added)} photos in {report.seconds:.1f} s "
                    f"({report.images_per_second:.1f} img/s)")
    elif report.photos_given_regions:  # index --regions over photos indexed before: what it did
        headline = (f"Found the objects and regions of {report.photos_given_regions} photos indexed before "
                    f"({report.regions_added} regions) in {report.seconds:.1f} s; no new photos")
    else:
        headline = f"No new photos ({report.seconds:.1f} s)"
    print(
        f"{headline}; unchanged {report.unchanged}, "
        f"updated {report.updated}, duplicates {len(report.duplicates)}, "
        f"skipped {len(report.skipped)}, pruned {report.pruned}"
        + (f", left out by exclusions {report.excluded}." if report.excluded else ".")
    )
    if report.photos_given_regions or report.region_failures:
        print(f"  regions: {report.regions_added} embedded for {report.photos_given_regions} photos"
              + (f"; {len(report.region_failures)} photos left without (run again to retry)"
                 if report.region_failures else ""))
    if report.photos_given_meaning:
        print(f"  meaning: the descriptions of {report.photos_given_meaning} photos embedded by meaning")
    if report.facts_read:
        print(f"  completed {report.facts_read} photos indexed before with what they lacked "
              "(dates, cameras, places, hashes; nothing re-embedded)")
    failures = [f for f in report.stage_failures if f.stage != "regions"]  # regions: counted above
    for stage, count in sorted(Counter(f.stage for f in failures).items()):
        print(f"  indexed without their {stage}: {count} photos (the next index tries again)")
        listed = [f for f in failures if f.stage == stage]
        for failure in listed[:SKIPPED_LISTED]:
            print(f"    {failure.path}  ({failure.reason})")
        if len(listed) > SKIPPED_LISTED:
            print(f"    ... and {len(listed) - SKIPPED_LISTED} more (--json lists them all)")
    for reason, count in sorted(report.skipped_counts.items()):
        print(f"  skipped, {reason}: {count}")
        listed = [item for item in report.skipped if item.reason == reason]
        for item in listed[:SKIPPED_LISTED]:
            print(f"    {item.path}" + (f"  ({item.detail})" if item.detail else ""))
        if len(listed) > SKIPPED_LISTED:
            print(f"    ... and {len(listed) - SKIPPED_LISTED} more (--json lists them all)")
    for warning in report.metadata_warnings:
        print(f"  metadata table: {warning}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for duplicate in report.duplicates:
        print(f"  duplicate: {duplicate.path} (same bytes as {duplicate.duplicate_of})")
    print(f"The collection now holds {engine.store.count()} photos.")


def _say_if_craft_is_made(setting: str) -> None:
    """CRAFT's INT8 model is made on the first run that reads words with it: say why it pauses."""
    from .text import craft, craft_int8

    try:
        made = craft_int8.cached_model(craft.weights_file(setting)).is_file()
    except (RetrievalError, OSError):
        return  # the reader says what is wrong when it loads
    if not made:
        print("Preparing CRAFT (OCR_CRAFT) to read words: once per machine, about 11 s on 2 cores.", file=sys.stderr)


def _prepare_exports(engine, images: bool = True) -> None:
    """After a command that loaded the model: make later text searches start (and, with ``images``,
    later runs index new photos) without torch."""
    from tqdm import tqdm

    bar = None
    said = False

    def step(name: str, done: int, total: int) -> None:
        nonlocal bar, said
        if not said:
            print("Preparing faster searches" + (" and indexing" if images else "") + " for this model: once per "
                  "model and machine, about 15 s of CPU per side for a ViT-B/32 on 2 cores; later text searches"
                  + (" and runs indexing new photos" if images else "") + " then start without loading the model.",
                  file=sys.stderr)
            said = True
        if bar is None or done < bar.n or total != bar.total:  # the next side's steps
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, unit="step", file=sys.stderr, disable=None, dynamic_ncols=True,
                       bar_format="{desc}: {n}/{total} steps, {elapsed}")
        bar.set_description_str(name)
        bar.update(done - bar.n)

    try:
        engine.prepare_exports(step, images=images)
    finally:
        if bar is not None:
            bar.close()


def cmd_reembed(engine, args) -> int:
    progress = _ProgressBar("re-embedding")
    try:
        report = engine.reembed(args.new_model, switch=args.switch, progress=progress)
    finally:
        progress.close()
    if args.json:
        _print_json(report.to_dict())
        return 0
    print(f"Embedded {report.embedded} photos with {report.model} in {report.seconds:.1f} s "
          f"({report.already} done by an earlier run) into the collection '{report.target}'.")
    if report.left_behind:
        count = len(report.left_behind)
        print(f"  {count} photo{'s were' if count > 1 else ' was'} left behind, the file gone "
              "(kept in the old collection):")
        for item in report.left_behind[:SKIPPED_LISTED]:
            print(f"    {item.path or item.id}  ({item.reason})")
        if len(report.left_behind) > SKIPPED_LISTED:
            print(f"    ... and {len(report.left_behind) - SKIPPED_LISTED} more (--json lists them all)")
    if report.switched_to:
        print(f"Switched: '{report.switched_to}' now holds the new vectors; the old collection is kept as "
              f"'{report.old_kept_as}'. Set MODEL={report.model} from now on.")
    else:
        print(f"To use it: MODEL={report.model} CHROMA_COLLECTION={report.target} python -m retrieval search … "
              "or run this command again with --switch to make it the collection.")
    return 0


_SORT_ALIASES = {"oldest": "date", "newest": "-date"}


def _search_request(args, spoken: str | None = None, engine=None):
    from .search.fact_filters import Place, date_range
    from .search.query_syntax import parse_filters, parse_query
    from .search.searcher import QueryTerm, SearchRequest

    terms = parse_query(args.query) if args.query else []
    if spoken:
        terms.append(QueryTerm("text", spoken))
    terms += [QueryTerm("image", path) for path in args.image]
    terms += [QueryTerm("text", text, -1.0) for text in args.without]
    exclude = set()
    if args.like:
        like = engine.full_id(args.like) if engine is not None else args.like
        terms.append(QueryTerm("record", like))
        exclude.add(like)
    filters = parse_filters(args.where)
    if args.photographer:
        filters["photographer"] = args.photographer
    if args.source:
        filters["source"] = args.source
    if args.camera:
        filters["camera"] = args.camera
    taken = date_range(args.after, args.before)
    if taken is not None:
        filters["taken_at"] = taken
    if args.within is not None and not args.near:
        raise RetrievalError("--within needs --near LAT,LON: the place to measure the distance from.")
    place = Place.parse(args.near, args.within) if args.near else None
    tags = [t for t in (args.tags or "").split(",") if t.strip()]
    return SearchRequest(terms=terms, tags=tags, match_all_tags=args.match_all, filters=filters,
                         k=args.k, offset=args.offset, min_score=args.min_score, exclude_ids=exclude,
                         place=place, sort=_SORT_ALIASES.get(args.sort, args.sort) or ("score" if terms or tags else "-date"),
                         collapse_duplicates=args.collapse, regions=args.regions, contains=args.contains,
                         hybrid=args.hybrid, meaning=args.meaning)


def _spoken_query(engine, args) -> str | None:
    """The transcript of ``--audio``; an error when nothing was said."""
    if not args.audio:
        return None
    transcript = engine.transcribe(args.audio)
    if not transcript.speech_detected:
        raise RetrievalError(f"{args.audio}: {engine.speech.describe(transcript)}")
    if not args.json:
        print(engine.speech.describe(transcript), file=sys.stderr)
    return transcript.text


def _warn_about_unknown_fields(engine, filters: dict) -> None:
    known = engine.store.known_fields()
    unknown = sorted(field for field in filters if known and field not in known)
    if unknown:
        print(f"warning: no photo has the field {', '.join(unknown)}; the fields are: "
              f"{', '.join(sorted(known))}", file=sys.stderr)


def cmd_search(engine, args) -> int:
    request = _search_request(args, _spoken_query(engine, args), engine)
    results = engine.search(request)
    if not results and request.filters:
        _warn_about_unknown_fields(engine, request.filters)
    _print_results(engine, request, results, args.json)
    sys.stdout.flush()  # the results are out before any export below
    _prepare_exports(engine, images=False)  # a search needs the text side; index exports the image side
    return 0


def _print_results(engine, request, results, as_json: bool) -> None:
    if as_json:
        _print_json([r.to_dict() for r in results])
        return
    if not results:
        hint = " The collection is empty: add photos with `python -m retrieval index FOLDER`." \
            if engine.store.count() == 0 else ""
        print("No matching photos." + hint)
        return
    for rank, result in enumerate(results, start=request.offset + 1):
        where = result.path or result.url or ""
        line = f"{rank:>3}. {result.score:6.3f}  {result.id[:SHORT_ID]}  {where}"
        details = [result.metadata.get("description"), result.metadata.get("photographer"),
                   str(result.metadata.get("taken", ""))[:16], result.metadata.get("camera")]
        details = [d for d in details if d]
        print(line + (f"  — {' · '.join(details)}"[:160] if details else "")
              + (f"  (+{len(result.similar)} similar)" if result.similar else "")
              + (f"  [matched region {','.join(map(str, result.matched_box))}; whole photo {result.photo_score:.3f}]"
                 if result.matched_box else "")
              + (f"  [words: {', '.join(result.matched_words)}]" if result.matched_words else "")
              + (f"  [described alike {result.meaning_score:.2f}]" if result.meaning_score is not None else ""))


def cmd_stats(engine, args) -> int:
    stats = engine.stats()
    if args.json:
        _print_json(stats)
        return 0
    for key, value in stats.items():
        print(f"{key:>10}: {value if value is not None else '-'}")
    return 0


def cmd_precision(engine, args) -> int:
    from .embedder.precision_record import forget

    forgotten = forget(engine.settings.model) if args.retime else 0
    from .engine import Engine

    notes = []
    if args.retime and engine.settings.image_export:  # the image export against torch, timed again too
        from .embedder.image_export import forget_runtimes

        forgotten += forget_runtimes(engine.settings.model)
        full = Engine(engine.settings.with_overrides(text_export=False, image_export=False))._load_model()
        full.prepare_image_export()
        notes.append(f"torch {full.precision_note}")
    # The whole model, image side included: a text-only export would answer for its text side.
    embedder = Engine(engine.settings.with_overrides(text_export=False))._load_model()
    notes.append(embedder.precision_note)
    if args.json:
        _print_json({"model": engine.settings.model, "device": embedder.device,
                     "precision": embedder.precision, "why": "; ".join(notes), "forgotten": forgotten})
    else:
        print(f"{engine.settings.model} on {embedder.device}: {'; '.join(notes)}")
    return 0


def cmd_repair(engine, args) -> int:
    from .store import repair_store

    report = repair_store(engine.settings)
    if args.json:
        _print_json(report.__dict__)
        return 0
    if report.mended:
        print(f"Mended {len(report.mended)} waiting records of the store at {report.location} "
              "(cut to the field limits):")
        for note in report.notes[:SKIPPED_LISTED]:
            print(f"  {note}")
    else:
        print(f"Nothing to mend at {report.location}: none of {report.checked} waiting records exceeds the limits.")
    print(f"The store reads: {report.count} records.")
    return 0


def cmd_duplicates(engine, args) -> int:
    from .photos.near_duplicates import DEFAULT_THRESHOLD, find_groups

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if not 0 <= threshold <= 64:
        raise RetrievalError(f"--threshold is a number of bits from 0 to 64, got {threshold}.")
    groups, unhashed = find_groups(engine.store.iter_all(), threshold)
    if args.json:
        _print_json({"threshold": threshold, "groups": [g.to_dict() for g in groups], "without_hash": unhashed})
        return 0
    copies = sum(len(g.ids) - 1 for g in groups)
    print(f"{len(groups)} groups of near-identical photos ({copies} copies beyond the first of each), "
          f"threshold {threshold} bits.")
    for number, group in enumerate(groups[:args.limit], 1):
        print(f"\n{number}. {len(group.ids)} photos")
        for record_id, metadata in zip(group.ids, group.metadata):
            size = f"{metadata.get('width', '?')}x{metadata.get('height', '?')}"
            print(f"   {size:>11}  {metadata.get('path') or metadata.get('url') or record_id}")
    if len(groups) > args.limit:
        print(f"\n... and {len(groups) - args.limit} more groups (--limit, or --json for all)")
    if unhashed:
        print(f"\n{unhashed} photos were indexed before hashes were kept: run `index` on their folders "
              "again to include them (nothing is re-embedded).")
    return 0


def cmd_map(engine, args) -> int:
    from .views.map_render import write_html, write_png

    suffix = args.out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise RetrievalError(f"--out {args.out}: name a .png or an .html file.")
    if engine.store.count() == 0:
        raise RetrievalError("The collection is empty: add photos with `python -m retrieval index FOLDER` first.")
    cmap = engine.collection_map(args.method)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (write_png if suffix == ".png" else write_html)(cmap, args.out, args.colour_by, max_points=args.max_points)
    how = "the kept layout" if cmap.from_cache else f"laid out by {cmap.method} in {cmap.seconds:.1f} s"
    if args.json:
        _print_json({"out": str(args.out), "photos": len(cmap), "method": cmap.method,
                     "seconds": round(cmap.seconds, 3), "from_cache": cmap.from_cache})
    else:
        print(f"Map of {len(cmap)} photos ({how}) written to {args.out}")
    return 0


def cmd_explain(engine, args) -> int:
    from .search.query_syntax import parse_query
    from .search.searcher import QueryTerm

    terms = (parse_query(args.query) if args.query else []) + [QueryTerm("image", p) for p in args.image]
    if not terms:
        raise RetrievalError("Give the query to explain: some text, an image, or both.")
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise RetrievalError(f"--out {args.out}: name a .png or .jpg file.")
    picture, grid = engine.explain(engine.full_id(args.id), terms)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out)
    if args.json:
        _print_json({"out": str(args.out), "grid": [[round(float(v), 4) for v in row] for row in grid]})
    else:
        row, col = divmod(int(grid.argmax()), grid.shape[1])
        print(f"Heat map ({grid.shape[0]}x{grid.shape[1]} patches) written to {args.out}; the warmest patch is "
              f"row {row + 1}, column {col + 1}.")
    return 0


def cmd_transcribe(engine, args) -> int:
    transcript = engine.transcribe(args.audio)
    if args.json:
        _print_json(transcript.to_dict())
        return 0
    if not transcript.speech_detected:
        print(engine.speech.describe(transcript))
        return 0
    print(transcript.text)
    language = transcript.language or "?"
    if transcript.task == "translate":
        language += ", translated to English"
    note = ", trimmed to the length cap" if transcript.trimmed else ""
    print(f"({language}; {transcript.duration:.1f} s of audio{note}; {transcript.seconds:.2f} s "
          f"with {transcript.model}, {transcript.languages})", file=sys.stderr)
    return 0


def cmd_load(engine, args) -> int:
    from tqdm import tqdm

    from .loaders.download import Downloader
    from .loaders.load import default_dest, load
    from .loaders.sources import LoadOptions

    options = LoadOptions(
        dest=args.dest or default_dest(args.source), limit=args.limit, sample=args.sample, seed=args.seed,
        width=args.width or None, min_confidence=args.min_confidence, metadata=args.metadata,
        archive=args.archive, image_column=args.image_column, description_column=args.description_column,
        tags_column=args.tags_column,
        downloader=Downloader(workers=args.workers, retries=args.retries, timeout=args.timeout,
                              max_bytes=int(args.max_download_mb * 1_000_000)),
    )
    fetching = tqdm(unit="photo", desc="fetching", disable=None, file=sys.stderr, dynamic_ncols=True)
    indexing = tqdm(unit="img", desc="indexing", disable=None, file=sys.stderr, dynamic_ncols=True)

    def indexed(update) -> None:
        indexing.total = update.total
        indexing.update(update.done - indexing.n)

    try:
        report = load(engine, args.source, options, fetch_progress=fetching.update, index_progress=indexed,
                      meaning=args.meaning)
    finally:
        fetching.close()
        indexing.close()
    summary = report.to_dict()
    if args.json:
        _print_json(summary)
        return 0
    index = summary["index"]
    print(f"{report.source}: {report.selected} of {report.available} photos selected; "
          f"{report.downloaded} fetched, {report.already_on_disk} already on disk, "
          f"{len(report.failures)} failed.")
    if index:
        already = index["unchanged"] + index["updated"] + len(index["duplicates"])
        print(f"Index: added {index['added']}, already present {already}, "
              f"rejected {sum(index['skipped']['counts'].values())}"
              + (f"; the descriptions of {index['photos_given_meaning']} photos embedded by meaning."
                 if index["photos_given_meaning"] else "."))
        for item in index["skipped"]["files"]:
            print(f"  rejected {item['path']}: {item['reason']}")
        for warning in index["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    for failure in report.failures:
        print(f"  failed {failure.url}: {failure.reason}")
    if args.source.startswith("folder:"):  # indexed where they are: nothing was copied
        where = f"The photos stay in {Path(args.source.split(':', 1)[1]).expanduser()}"
    else:
        where = f"Files are in {options.dest}"
    print(f"{where}; the collection now holds {engine.store.count()} photos.")
    return 0


def _transfer_bar(desc: str):
    from tqdm import tqdm

    bar = tqdm(unit="record", desc=desc, disable=None, file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update


def cmd_export(engine, args) -> int:
    bar, update = _transfer_bar("exporting")
    try:
        report = engine.export_collection(args.out, shard_rows=args.shard_rows, progress=update)
    finally:
        bar.close()
    if args.json:
        _print_json(report.__dict__)
    else:
        regions = f", with {report.regions} regions of them," if report.regions else ""
        print(f"Exported {report.records} records ({report.model}){regions} as {report.shards} Parquet "
              f"file(s) to {report.folder}.")
    return 0


def cmd_import(engine, args) -> int:
    bar, update = _transfer_bar("importing")
    try:
        report = engine.import_collection(args.source, progress=update)
    finally:
        bar.close()
    if args.json:
        _print_json(dict(report.__dict__, count=engine.store.count()))
    else:
        regions = f" and {report.regions} regions" if report.regions else ""
        print(f"Imported {report.records} records{regions} ({report.model}) from {report.folder}; the collection "
              f"now holds {engine.store.count()} photos.")
    return 0


COMMANDS = {"duplicates": cmd_duplicates, "explain": cmd_explain, "map": cmd_map, "export": cmd_export, "import": cmd_import, "load": cmd_load, "index": cmd_index, "search": cmd_search, "transcribe": cmd_transcribe,
            "stats": cmd_stats, "reembed": cmd_reembed, "repair": cmd_repair,
            "precision": cmd_precision}


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("retrieval").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("chromadb", "httpx", "transformers", "faster_whisper"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


# Commands that write nothing to the store; `index` joins them when it found nothing to change.
def _imports_nothing_heavy_beside(command: str, settings: Settings) -> bool:
    """Whether chromadb may be imported on a thread of its own: only where nothing else imports a large
    native library at the same time (torch and chromadb's gRPC imported side by side once aborted an
    `index`), so for `stats`, and for `search` once the model's two exports exist."""
    if settings.store_backend != "chroma" or command not in ("search", "stats"):
        return False
    if command == "stats":
        return True
    from .embedder.image_export import find_export
    from .embedder.text_export import export_folder, read_facts

    if settings.precision not in ("auto", "float32") or settings.device not in ("auto", "cpu"):
        return False  # torch then answers (embedder.load_embedder)
    text = export_folder(settings.model)
    return bool(settings.text_export and settings.image_export and text is not None and read_facts(text)
                and find_export(settings.model))


READ_ONLY_COMMANDS = ("search", "stats", "transcribe", "export", "duplicates", "map", "explain")
_store_untouched = False  # whether the command main() ran last wrote nothing to the store


def main(argv: list[str] | None = None, *, exit_fast: bool = False) -> int:
    """Run one command. ``exit_fast`` (the ``python -m retrieval`` process only): when the command
    wrote nothing to the store, flush the output and end the process at once instead of unwinding
    every library it loaded (chromadb's import graph alone takes about half a second)."""
    global _store_untouched
    _store_untouched = False
    code = _run(argv)
    if exit_fast and _store_untouched:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


def _looks_like_an_option(word: str) -> bool:
    return word.startswith("--") or (len(word) == 2 and word[0] == "-" and word[1].isalpha())


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Arguments in any order: query words after the options (``explain ID --out why.png "a dog"``)
    join the query, as they would before them."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        if hasattr(args, "query") and not any(_looks_like_an_option(word) for word in extras):
            args.query = [*(args.query or []), *extras]
        else:
            parser.error("unrecognized arguments: " + " ".join(extras))
    return args


def _run(argv: list[str] | None) -> int:
    global _store_untouched
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "benchmark":
        from .bench.main import main as benchmark
        return benchmark(argv[1:])
    if argv and argv[0] == "evaluate":
        from .bench.evaluation import main as evaluate
        return evaluate(argv[1:])
    args = _parse(build_parser(), argv)
    _store_untouched = args.command in READ_ONLY_COMMANDS
    _configure_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .engine import Engine  # heavy imports only after the arguments are known to be fine

    try:
        settings = _settings(args)
        engine = Engine(settings, brief=True)  # one command: see Engine
        if _imports_nothing_heavy_beside(args.command, settings) and not (
                args.command == "search" and engine.snapshot() is not None):
            from .store.chroma_import import start_in_background

            start_in_background()  # while the model's export loads (store/chroma_import.py)
        return COMMANDS[args.command](engine, args)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: everything committed so far is kept; run it again to continue.",
              file=sys.stderr)
        return 130
