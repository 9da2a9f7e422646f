"""Searching descriptions: the text channel on human captions.

Each photo of a captioned collection (COCO's five captions per photo) is stored with all its
captions but one as its description; the held-out caption is the query that should find it.
Reported: recall@1, @5 and @10 of the words alone (BM25 over the photos' texts), the picture
alone (the model's vectors) and the two fused (what a search does). Nothing is tuned on these
queries: BM25's constants are the usual ones and the fusion's is the published one.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import RetrievalError
from .report import show_and_keep

KS = (1, 5, 10)


def captions_by_photo(table: Path, root: Path) -> dict[Path, list[str]]:
    found: dict[Path, list[str]] = {}
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            path = root / row["image_path"]
            if path.is_file():
                found.setdefault(path, []).append(row["caption"].strip())
    return {path: captions for path, captions in found.items() if len(captions) >= 2}


def evaluate(table: Path, root: Path, settings, limit: int | None = None) -> dict[str, Any]:
    from ..engine import Engine
    from ..search.keywords import TEXT_CANDIDATES, bm25_ranking, query_words
    from ..search.searcher import QueryTerm, SearchRequest

    photos = dict(sorted(captions_by_photo(table, root).items())[:limit])
    if not photos:
        raise RetrievalError(f"No photo of {table} was found under {root}.")
    with tempfile.TemporaryDirectory(prefix="text-eval-") as work:
        engine = Engine(settings.with_overrides(chroma_path=Path(work) / "store", collection="text-eval"))
        engine.index(list(photos), metadata=lambda path: {"captions": photos[path][1:]})
        by_path = {r.metadata["path"]: r.id for r in engine.store.iter_all()}
        count = engine.store.count()
        ranks: dict[str, list[int | None]] = {"words": [], "picture": [], "fused": []}
        for path, captions in photos.items():
            wanted, query = by_path[str(path)], captions[0]
            words = query_words(query)
            candidates = engine.store.match_text(words, any_of=True, limit=TEXT_CANDIDATES) if words else []
            ranked = [record.id for record, _score, _found in bm25_ranking(candidates, words, count)]
            ranks["words"].append(ranked.index(wanted) + 1 if wanted in ranked[:max(KS)] else None)
            for name, hybrid in (("picture", False), ("fused", True)):
                found = [r.id for r in engine.search(SearchRequest(terms=[QueryTerm("text", query)], k=max(KS),
                                                                   hybrid=hybrid))]
                ranks[name].append(found.index(wanted) + 1 if wanted in found else None)
    recall = {name: {f"recall@{k}": round(sum(1 for r in found if r is not None and r <= k) / len(found), 3)
                     for k in KS} for name, found in ranks.items()}
    return {"photos": len(photos), "model": settings.model, "recall": recall}


def table(figures: dict[str, Any]) -> str:
    lines = [f"Descriptions: {figures['photos']} photos, one caption each as the query, the others as the "
             f"description; model {figures['model']}", "",
             "| ranking | " + " | ".join(f"R@{k}" for k in KS) + " |", "|---|" + "---|" * len(KS)]
    for name, label in (("words", "words alone (BM25)"), ("picture", "picture alone"), ("fused", "fused (search)")):
        lines.append(f"| {label} | " + " | ".join(f"{figures['recall'][name][f'recall@{k}']:.3f}" for k in KS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .random_model import add_model_arguments, evaluated_settings

    parser = argparse.ArgumentParser(prog="python scripts/evaluate_text.py",
                                     description="Recall of finding photos by a held-out caption, through "
                                                 "their other captions (words), their pixels, and both.")
    parser.add_argument("captions", type=Path, help="a TSV with image_path and caption columns (COCO's captions.tsv)")
    parser.add_argument("--root", type=Path, help="the folder image_path is relative to (default: the table's)")
    add_model_arguments(parser)
    parser.add_argument("--limit", type=int, help="use at most this many photos")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        with evaluated_settings(args) as settings:
            figures = evaluate(args.captions, args.root or args.captions.parent, settings, args.limit)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    show_and_keep(table(figures), figures, args.out)
    return 0
