"""Retrieval quality on a captioned collection: recall@k for text -> image and
image -> text, through the product's own index and search.

Captions come as a table (Flickr / COCO style: an image column and a caption
column, several rows per image) or as a COCO ``captions_*.json`` file.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .stats import recall_from_ranks
from ..errors import RetrievalError

IMAGE_COLUMNS = ("image", "image_path", "file_name", "filename", "image_name", "image_file", "path")
CAPTION_COLUMNS = ("caption", "comment", "text", "sentence", "description", "raw")
csv.field_size_limit(sys.maxsize)


def read_captions(path: Path, image_column: str | None = None,
                  caption_column: str | None = None) -> dict[str, list[str]]:
    """image (as written in the table) -> its captions."""
    path = Path(path)
    if not path.is_file():
        raise RetrievalError(f"The captions file {path} does not exist.")
    rows = _rows(path)
    if isinstance(rows, dict):  # COCO captions JSON, already grouped
        return rows
    if not rows:
        raise RetrievalError(f"{path} has no captions.")
    columns = list(rows[0])
    image_column = image_column or _pick(columns, IMAGE_COLUMNS, "image", path)
    caption_column = caption_column or _pick(columns, CAPTION_COLUMNS, "caption", path)
    captions: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        image, caption = str(row.get(image_column) or "").strip(), str(row.get(caption_column) or "").strip()
        if image and caption:
            captions[image].append(caption)
    return dict(captions)


def _rows(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "annotations" in data and "images" in data:
            names = {image["id"]: image["file_name"] for image in data["images"]}
            grouped: dict[str, list[str]] = defaultdict(list)
            for note in data["annotations"]:
                if note.get("image_id") in names and note.get("caption"):
                    grouped[names[note["image_id"]]].append(str(note["caption"]).strip())
            return dict(grouped)
        return data if isinstance(data, list) else []
    header = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in header else "|" if "|" in header else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter, skipinitialspace=True)
    return [{(k or "").strip(): v for k, v in row.items()} for row in reader]


def _pick(columns: list[str], candidates: tuple[str, ...], what: str, path: Path) -> str:
    lowered = {c.lower(): c for c in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    raise RetrievalError(f"No {what} column in {path} (columns: {', '.join(columns)}); "
                         f"name it with --{what}-column.")


def ranks_text_to_image(search: Callable[[str], Sequence[str]], queries: Iterable[tuple[str, str]]) -> list[int | None]:
    """For each (caption, right image id): the 1-based rank of that image in ``search(caption)``."""
    ranks = []
    for caption, target in queries:
        found = list(search(caption))
        ranks.append(found.index(target) + 1 if target in found else None)
    return ranks


def ranks_image_to_text(image_vectors: np.ndarray, caption_vectors: np.ndarray,
                        caption_owner: Sequence[int], depth: int) -> list[int | None]:
    """For each image (row i): the rank of the first of its own captions among all captions."""
    owners = np.asarray(caption_owner)
    scores = image_vectors @ caption_vectors.T
    ranks = []
    for i, row in enumerate(scores):
        top = np.argsort(-row, kind="stable")[:depth]
        hits = np.nonzero(owners[top] == i)[0]
        ranks.append(int(hits[0]) + 1 if hits.size else None)
    return ranks


@dataclass
class Evaluation:
    model: str
    images: int
    captions: int
    missing_images: int
    text_to_image: dict[int, float]
    image_to_text: dict[int, float]

    def table(self) -> str:
        ks = sorted(self.text_to_image)
        lines = [f"model: {self.model}", f"collection: {self.images} images, {self.captions} captions"
                 + (f" ({self.missing_images} images listed but not found)" if self.missing_images else ""),
                 "", "direction     | " + " | ".join(f"R@{k:<3}" for k in ks),
                 "--------------+-" + "-+-".join("-----" for _ in ks)]
        for name, recall in (("text -> image", self.text_to_image), ("image -> text", self.image_to_text)):
            lines.append(f"{name} | " + " | ".join(f"{recall[k]:.3f}" for k in ks))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("text_to_image", "image_to_text"):
            data[key] = {f"R@{k}": round(v, 4) for k, v in data[key].items()}
        return data


def evaluate(engine, images_root: Path, captions_file: Path, ks: Sequence[int] = (1, 5, 10),
             limit: int | None = None, progress: Callable[[int], None] | None = None, **columns) -> Evaluation:
    """Index the captioned images (incrementally) and measure recall@k both ways."""
    captions = read_captions(captions_file, **columns)
    files, missing = {}, 0
    for image in sorted(captions)[:limit]:
        path = _find_image(Path(images_root), image)
        if path is None:
            missing += 1
        else:
            files[image] = path
    if not files:
        raise RetrievalError(f"None of the images in {captions_file} were found under {images_root}.")
    engine.index(list(files.values()))
    id_by_path = {r.metadata.get("path"): r.id for r in engine.store.iter_all()}
    ids = {image: id_by_path[str(path.resolve())] for image, path in files.items()
           if str(path.resolve()) in id_by_path}
    depth = max(ks)
    pairs = [(caption, ids[image]) for image in ids for caption in captions[image]]

    def search(caption: str) -> list[str]:
        if progress:
            progress(1)
        return [r.id for r in engine.search_text(caption, k=depth)]

    text_ranks = ranks_text_to_image(search, pairs)
    images = list(ids)
    stored = {r.id: r.embedding for r in engine.store.get([ids[i] for i in images], with_embeddings=True)}
    image_vectors = np.stack([stored[ids[i]] for i in images])
    all_captions = [c for image in images for c in captions[image]]
    owners = [n for n, image in enumerate(images) for _ in captions[image]]
    caption_vectors = engine.embedder.embed_texts(all_captions)
    image_ranks = ranks_image_to_text(image_vectors, caption_vectors, owners, depth)
    return Evaluation(engine.settings.model, len(images), len(pairs), missing,
                      recall_from_ranks(text_ranks, ks), recall_from_ranks(image_ranks, ks))


def _find_image(root: Path, name: str) -> Path | None:
    direct = root / name
    if direct.is_file():
        return direct
    matches = list(root.rglob(Path(name).name))
    return matches[0] if matches else None


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tqdm import tqdm

    from ..engine import Engine
    from ..settings import Settings

    parser = argparse.ArgumentParser(prog="python -m retrieval evaluate",
                                     description="Recall@k of text -> image and image -> text search on a "
                                                 "captioned collection, with the product's own index and search.")
    parser.add_argument("images", type=Path, help="folder with the images")
    parser.add_argument("captions", type=Path, help="captions table (CSV/TSV/JSON/JSONL) or COCO captions JSON")
    parser.add_argument("--image-column", help="the table's image column (guessed otherwise)")
    parser.add_argument("--caption-column", help="the table's caption column (guessed otherwise)")
    parser.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    parser.add_argument("--ks", default="1,5,10", help="recall cut-offs (default 1,5,10)")
    parser.add_argument("--model", help="image-text model: Hugging Face id or folder (MODEL)")
    parser.add_argument("--chroma-path", type=Path, help="store folder (CHROMA_PATH)")
    parser.add_argument("--collection", default="evaluation",
                        help="collection for the evaluated images (default: evaluation, apart from your photos)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        ks = sorted({int(k) for k in args.ks.split(",") if k.strip()})
        settings = Settings.from_env().with_overrides(model=args.model, chroma_path=args.chroma_path,
                                                      collection=args.collection)
        engine = Engine(settings)
        with tqdm(desc="queries", unit="caption", disable=None, file=sys.stderr) as bar:
            result = evaluate(engine, args.images, args.captions, ks, args.limit, bar.update,
                              image_column=args.image_column, caption_column=args.caption_column)
    except (RetrievalError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from .report import show_and_keep

    show_and_keep(result.table(), result.to_dict(), args.out)
    return 0
