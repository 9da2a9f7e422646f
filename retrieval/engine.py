"""The one object the CLI, the app and the scripts talk to.

It wires settings, embedder, store, indexer and searcher together. Each part is
made on first use, so a command imports and opens only what it needs: ``stats``
never loads the model (nor imports torch), ``transcribe`` never opens the store.
The model can be loaded eagerly with :meth:`preload`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .errors import RetrievalError
from .settings import Settings

if TYPE_CHECKING:  # the heavy modules load when a command first needs them
    from .embedder import Embedder, Languages
    from .indexing.ingest import IndexReport, MetadataLookup, ProgressCallback
    from .indexing.reembed import ReembedProgress, ReembedReport
    from .search.searcher import SearchRequest, SearchResult
    from .speech.recognizer import SpeechRecognizer, Transcript
    from .store import PhotoStore, StoredRecord

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None, brief: bool = False):
        """``embedder``: a model loaded already (benchmarks and evaluations share one). ``brief``: one
        command's process, which embeds little (the model's exports open faster, answer a little slower)."""
        self.brief = brief
        self.settings = settings or Settings.from_env()
        self._store: PhotoStore | None = None
        self._embedder: Embedder | None = embedder
        self._speech: SpeechRecognizer | None = None
        self._load_lock = threading.RLock()
        self._keywords_lock = threading.Lock()  # one build of the word index at a time (the app's searches)
        self._keyword_index = None
        self._snapshot = False  # not looked for yet (see snapshot())
        self._captioner = None
        if embedder is not None:
            self.store.bind(embedder.signature)

    @property
    def store(self) -> "PhotoStore":
        with self._load_lock:
            if self._store is None:
                from .store import open_store

                self._store = open_store(self.settings)
        return self._store

    # -- model ----------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The model, bound to the store: a store built by another model refuses it, every time."""
        with self._load_lock:
            if self._embedder is None:
                loaded = self._load_model()  # kept only once the store accepts it
                self.store.bind(loaded.signature)
                self._embedder = loaded
        return self._embedder

    def _load_model(self) -> Embedder:
        from .embedder import load_embedder

        return load_embedder(self.settings.model, self.settings.torch_threads, self.settings.precision,
                             self.settings.device, text_export=self.settings.text_export,
                             image_export=self.settings.image_export, image_int8=self.settings.image_int8,
                             brief=self.brief)

    def languages(self) -> Languages:
        """Which languages the search model reads (from its files: the model need not be loaded)."""
        if self._embedder is not None:
            return self._embedder.languages
        from .embedder import languages_of

        return languages_of(self.settings.model)

    @property
    def speech(self) -> SpeechRecognizer:
        """Voice search's recogniser; its model loads on first use (or ``preload_speech``)."""
        with self._load_lock:
            if self._speech is None:
                from .speech.recognizer import SpeechRecognizer

                self._speech = SpeechRecognizer(self.settings,
                                                search_reads_many_languages=self.languages().multilingual)
        return self._speech

    def transcribe(self, audio: str | Path, language: str | None = None) -> Transcript:
        return self.speech.transcribe(audio, language)

    def preload(self) -> None:
        """Load the model and run one tiny query, so the first real search is not slow."""
        from PIL import Image

        self.embedder.embed_text("a photo")
        self.embedder.embed_images([Image.new("RGB", (8, 8), "white")])

    def prepare_exports(self, announce: Callable[[str, int, int], None] | None = None, images: bool = True) -> bool:
        """If this process loaded the model, export its text side for fast text queries and its image
        side (with ``images``) for indexing without torch in later processes (once per model and machine,
        about 15 s of CPU per side for a ViT-B/32; ``announce`` hears each step). False when nothing was
        there to do."""
        if self._embedder is None:
            return False
        text = self.settings.text_export and self._embedder.prepare_text_export(announce)
        exported = images and self.settings.image_export and self._embedder.prepare_image_export(announce)
        return bool(text or exported)

    # -- indexing ---------------------------------------------------------------

    def index(
        self,
        paths: Iterable[str | Path],
        *,
        metadata_file: str | Path | None = None,
        metadata: MetadataLookup | None = None,
        source: str = "local",
        prune: bool = False,
        progress: ProgressCallback | None = None,
        ray: str | None = None,
        ray_workers: int | None = None,
        exclude: Sequence[str] = (),
        regions: bool | None = None,
        ocr: bool | None = None,
        captions: bool | None = None,
        meaning: bool | None = None,
    ) -> IndexReport:
        """``ray``: read, decode and embed on a Ray cluster (``local`` or an address, see
        ``indexing/cluster.py``); this process still decides what is new and writes the store.
        ``regions``: give the photos their regions too (``None``: the REGIONS setting).
        ``ocr``: read the words in them too (``None``: the OCR setting). ``captions``: caption them
        too (``None``: the CAPTIONS setting); a captioning model that can't be had is reported
        (``IndexReport.warnings``) and the photos are indexed without captions. ``meaning``: embed
        the photos' descriptions by meaning too (``None``: the MEANING setting), likewise."""
        from .indexing.ingest import Indexer
        from .photos.metadata_table import MetadataTable

        ocr = self.settings.ocr if ocr is None else ocr
        captions = self.settings.captions if captions is None else captions
        warnings = []
        captioner = None
        if captions:
            try:
                captioner = self.captioner()
            except RetrievalError as exc:
                warnings.append(f"{exc}\nThe photos were indexed without captions; the next `index --captions` "
                                "writes them.")
                captions = False
        cluster = None
        if ray is not None:
            from .indexing.cluster import RayCluster

            cluster = RayCluster(self.settings.with_overrides(ocr=ocr, captions=captions), ray, ray_workers,
                                 precision=lambda: self.embedder.precision)

        table = MetadataTable.from_file(Path(metadata_file)) if metadata_file is not None else None
        if table is not None:
            metadata = table.lookup
        indexer = Indexer(
            self.store,
            lambda: self.embedder,  # loaded only when a file needs embedding
            batch_size=self.settings.batch_size,
            decode_workers=self.settings.decode_workers,
            max_image_pixels=self.settings.max_image_pixels,
            max_file_bytes=self.settings.max_file_bytes,
            cluster=cluster,
            regions=self._region_indexer if (self.settings.regions if regions is None else regions) else None,
            ocr=self.ocr_reader() if ocr else None,
            captioner=captioner,
            meanings=self.meaning_indexer() if (self.settings.meaning if meaning is None else meaning) else None,
        )
        report = indexer.run([Path(p) for p in paths], metadata=metadata, source=source,
                             prune=prune, progress=progress, exclude=exclude)
        if table is not None:
            report.metadata_warnings = table.warnings()
        report.warnings = warnings + report.warnings
        return report

    def captioner(self):
        """The captioning model of the CAPTION_MODEL setting, loaded once (RetrievalError, in words,
        when it can't be had)."""
        with self._load_lock:
            if self._captioner is None:
                from .text.captions import TransformersCaptioner

                self._captioner = TransformersCaptioner(self.settings.caption_model, self.settings.torch_threads)
            return self._captioner

    def sentence_model(self, name: str | None = None):
        """The sentence model (``name``, else the SENTENCE_MODEL setting), loaded once
        (RetrievalError, in words, when it can't be had)."""
        from .text.sentences import SentenceModel, default_sentence_model

        name = name or self.settings.sentence_model or default_sentence_model()
        with self._load_lock:
            if getattr(self, "_sentence_model", None) is None or self._sentence_model.name != name:
                self._sentence_model = SentenceModel(name)
            return self._sentence_model

    def meaning_indexer(self):
        from .indexing.meanings import MeaningIndexer
        from .text.sentences import default_sentence_model

        name = self.settings.sentence_model or default_sentence_model()
        return MeaningIndexer(self.store, name, lambda: self.sentence_model(name))

    def ocr_reader(self):
        """The reader of words in photos, made once (its models load on each thread's first photo)."""
        if getattr(self, "_ocr_reader", None) is None:
            from .text.ocr import OcrReader

            self._ocr_reader = OcrReader.of(self.settings)
        return self._ocr_reader

    def _region_indexer(self):
        from .regions.choice import load_proposer
        from .indexing.regions import RegionIndexer

        settings = self.settings
        return RegionIndexer(self.store, self.embedder, load_proposer(settings.region_proposer, self.embedder.device),
                             per_photo=settings.regions_per_photo, batch_size=settings.batch_size,
                             decode_workers=settings.decode_workers, max_image_pixels=settings.max_image_pixels,
                             max_file_bytes=settings.max_file_bytes)

    # -- searching --------------------------------------------------------------

    def search(self, request: SearchRequest) -> list[SearchResult]:
        from .search.searcher import Searcher

        request = self._with_cameras_named(request)
        snapshot = self.snapshot()
        if snapshot is not None:  # one command's search: chromadb is not even imported if it answers
            from .store.chroma_snapshot import SnapshotCannotAnswer

            self._store = snapshot  # what the model binds to as well (Engine.embedder), for this search
            try:
                return Searcher(snapshot, self._embed_term, self._keywords, self._meaning_of,
                                self._refine_boxes).search(request)
            except SnapshotCannotAnswer as exc:
                log.debug("asking the store itself: %s", exc)
                self._snapshot = None
            finally:
                self._store = None
        return Searcher(self.store, self._embed_term, self._keywords, self._meaning_of,
                        self._refine_boxes).search(request)

    def snapshot(self):
        """For one command's process (``brief``) on an embedded Chroma store: the collection's
        snapshot in the cache, if nothing was written since ``index`` took it
        (``store/chroma_snapshot.py``); else None."""
        if not self.brief or self._store is not None or self.settings.store_backend != "chroma":
            return None
        if self._snapshot is False:
            from .settings import cache_dir
            from .store.chroma_snapshot import open_snapshot

            self._snapshot = open_snapshot(self.settings.chroma, cache_dir())
        return self._snapshot

    def keep_snapshot(self) -> None:
        """After ``index``: a snapshot of the collection as it is now, for the next command's searches.
        Best effort: without one, a search asks Chroma, as before."""
        if self.settings.store_backend != "chroma":
            return
        from .settings import cache_dir
        from .store.chroma_snapshot import keep_snapshot

        try:
            keep_snapshot(self.store, self.settings.chroma, cache_dir())
        except Exception as exc:  # noqa: BLE001 - the index itself is done and kept
            log.warning("could not keep a snapshot of the collection for fast searches: %s", exc)

    def _refine_boxes(self, results, request) -> None:
        """For a query with a picture in it: the page's boxes where that picture sits, in the photos
        found by a region (``regions/refine.py``)."""
        from .indexing.regions import REGION_DECODE
        from .regions.refine import box_the_picture

        pictures = [t.value for t in request.terms if t.kind == "image" and t.weight > 0]
        if pictures:
            box_the_picture(results, self._query_image(pictures[0]), draft=REGION_DECODE,
                            max_file_bytes=self.settings.max_file_bytes, max_image_pixels=self.settings.max_image_pixels)

    def _meaning_of(self, text: str):
        """``text``'s vector by the sentence model that made the collection's meanings; None when it
        has none, or when that model can't be had (said once in the log; searches go on without)."""
        companion = self.store.meanings
        if not companion.count():
            return None
        name = (companion.recorded_model() or {}).get("model")
        if name is None or name == getattr(self, "_sentence_model_missing", None):
            return None
        try:
            model = self.sentence_model(name)
        except RetrievalError as exc:
            log.warning("descriptions are not searched by meaning: %s", exc)
            self._sentence_model_missing = name
            return None
        return model.embed([text])[0]

    def _keywords(self):
        """The word index of the collection's texts as they are now, kept by this process and, for
        the next command, in the cache (None where the store can't tell whether it changed)."""
        from .search.keyword_index import keyword_index
        from .settings import cache_dir

        with self._keywords_lock:
            self._keyword_index = keyword_index(self.store, cache_dir(), self._keyword_index)
            return self._keyword_index

    def _with_cameras_named(self, request: SearchRequest) -> SearchRequest:
        """A camera filter typed as people name cameras ("iPhone 15 Pro", "canon") becomes the
        stored camera names it matches, in any case; none matching is an error naming the closest."""
        from dataclasses import replace

        from .search.fact_filters import matching_cameras, no_camera_matches
        from .store.filters import OneOf

        wanted = (request.filters or {}).get("camera")
        if not isinstance(wanted, str) or not wanted.strip():
            return request
        cameras = self.cameras()
        found = matching_cameras(wanted, cameras)
        if not found:
            raise no_camera_matches(wanted, cameras)
        return replace(request, filters={**request.filters, "camera": OneOf(tuple(found))})

    def cameras(self) -> dict[str, str]:
        """Each camera named in the collection, with its make (read once per collection size)."""
        count = self.store.count()
        if getattr(self, "_cameras", None) is None or self._cameras[0] != count:
            found: dict[str, str] = {}
            for record in self.store.iter_all():
                camera = record.metadata.get("camera")
                if isinstance(camera, str) and camera:
                    found.setdefault(camera, str(record.metadata.get("camera_make") or ""))
            self._cameras = (count, found)
        return self._cameras[1]

    def search_text(self, text: str, **options: Any) -> list[SearchResult]:
        from .search.searcher import QueryTerm, SearchRequest

        return self.search(SearchRequest(terms=[QueryTerm("text", text)], **options))

    def search_image(self, image, **options: Any) -> list[SearchResult]:
        from .search.searcher import QueryTerm, SearchRequest

        return self.search(SearchRequest(terms=[QueryTerm("image", image)], **options))

    def search_tags(self, tags: list[str], match_all: bool = False, **options: Any) -> list[SearchResult]:
        from .search.searcher import SearchRequest

        return self.search(SearchRequest(tags=tags, match_all_tags=match_all, **options))

    def more_like_this(self, record_id: str, **options: Any) -> list[SearchResult]:
        from .search.searcher import QueryTerm, SearchRequest

        request = SearchRequest(terms=[QueryTerm("record", record_id)], **options)
        request.exclude_ids.add(record_id)
        return self.search(request)

    def full_id(self, given: str) -> str:
        """The photo's id from its id or the start of it (the short id `search` prints)."""
        given = (given or "").strip()
        if not given:
            raise RetrievalError("Give a photo's id (the short one `search` prints will do).")
        if self.store.get([given]):
            return given
        if all(c in "0123456789abcdef" for c in given):
            found = self.store.ids_starting_with(given, limit=3)
            if len(found) == 1:
                return found[0]
            if found:
                raise RetrievalError(f"'{given}' is the start of several photos' ids ({', '.join(i[:12] + '…' for i in found)}"
                                     "): give more of it.")
        raise RetrievalError(f"No photo with id '{given}' is in the collection.")

    def explain(self, record_id: str, terms: list) -> tuple[Any, np.ndarray]:
        """Why the photo ``record_id`` matches the query ``terms``: the photo with the model's
        heat map laid over it (a PIL image), and the map itself (``views/heat_map.py``)."""
        from .views.heat_map import overlay
        from .photos.images import ImageRejected, open_image_file
        from .search.searcher import Searcher

        found = self.store.get([record_id])
        if not found:
            raise RetrievalError(f"No photo with id '{record_id}' is in the collection.")
        path = found[0].metadata.get("path")
        if not path:
            raise RetrievalError("This photo is known only by its web address; its file is needed to show "
                                 "where it matches.")
        try:
            photo = open_image_file(path, self.settings.max_image_pixels, max_bytes=self.settings.max_file_bytes).image
        except ImageRejected as exc:
            raise RetrievalError(f"The photo's file {path} can't be read any more ({exc}).") from None
        vector = Searcher(self.store, self._embed_term).query_vector(terms)
        grid = self.embedder.explain(photo, vector)
        return overlay(photo, grid, self.embedder.seen_area(*photo.size)), grid

    def _embed_term(self, term) -> np.ndarray:
        if term.kind == "text":
            return self.embedder.embed_text(str(term.value))
        if term.kind == "record":
            found = self.store.get([str(term.value)], with_embeddings=True)
            if not found:
                raise RetrievalError(f"No photo with id '{term.value}' is in the collection.")
            return found[0].embedding
        return self.image_vector(term.value)

    def image_vector(self, image) -> np.ndarray:
        """The query vector of an image file or an opened (uploaded) picture."""
        return self.embedder.embed_images([self._query_image(image)])[0]

    def _query_image(self, value):
        """An image term (a path, or an already opened picture) as an RGB picture, checked."""
        from PIL import Image

        from .photos.images import ImageRejected, SkipReason, check_proportions, open_image_file, upright_rgb

        try:
            if isinstance(value, Image.Image):
                check_proportions(*value.size)
                return upright_rgb(value)
            path = Path(value).expanduser()
            if not path.exists():
                raise RetrievalError(f"The query image {path} does not exist.")
            return open_image_file(path, self.settings.max_image_pixels,
                                   max_bytes=self.settings.max_file_bytes).image
        except ImageRejected as exc:
            advice = ("Use a smaller copy of it (MAX_IMAGE_PIXELS, MAX_FILE_MB set the caps)."
                      if exc.reason in (SkipReason.TOO_LARGE, SkipReason.FILE_TOO_BIG) else "Try a JPEG or PNG photo.")
            raise RetrievalError(f"The query image can't be used ({exc}). {advice}") from None

    # -- moving to another model --------------------------------------------------

    def reembed(self, model: str, *, switch: bool = False,
                progress: Callable[[ReembedProgress], None] | None = None) -> ReembedReport:
        """Embed every record again with ``model`` into a new collection; ``switch``: then give
        it this collection's name, keeping the old one under another name."""
        from .indexing.reembed import ReembedReport, Reembedder, kept_name, target_collection

        recorded = self.store.recorded_model() or {}
        source_name = self.store.collection_name
        target = Engine(self.settings.with_overrides(model=model, collection=target_collection(source_name, model)))
        if not self.store.count():
            if switch and recorded.get("model") is None and target.store.count():
                # A switch interrupted between its two renames: the new collection only needs its name.
                report = ReembedReport(target.store.collection_name, target.store.collection_name, model,
                                       switched_to=source_name)
                target.store.rename(source_name)
                return report
            raise RetrievalError(f"The collection '{source_name}' at {self.store.location} "
                                 "is empty: there is nothing to move to another model.")
        if recorded.get("model") == model:
            raise RetrievalError(f"The collection '{source_name}' was built with '{model}' already.")
        settings = self.settings
        report = Reembedder(self.store, target.store, target.embedder, batch_size=settings.batch_size,
                            decode_workers=settings.decode_workers, max_image_pixels=settings.max_image_pixels,
                            max_file_bytes=settings.max_file_bytes).run(progress)
        if switch:
            report.old_kept_as = kept_name(source_name)
            self.store.rename(report.old_kept_as)
            target.store.rename(source_name)
            report.switched_to = source_name
        return report

    # -- the collection as files ------------------------------------------------

    def export_collection(self, out: str | Path, *, shard_rows: int | None = None,
                          progress: Callable[[int, int], None] | None = None):
        """Write the collection (ids, vectors, metadata, model facts) as Parquet shards in ``out``."""
        from .indexing.transfer import DEFAULT_SHARD_ROWS, export_collection

        return export_collection(self.store, Path(out), shard_rows=shard_rows or DEFAULT_SHARD_ROWS,
                                 progress=progress)

    def import_collection(self, source: str | Path, *, only_if_needed: bool = False,
                          progress: Callable[[int, int], None] | None = None):
        """Load an export (a folder, or a Hugging Face dataset id) into this collection; a
        collection built with another model refuses it."""
        from .indexing.transfer import import_collection, locate_export

        return import_collection(self.store, locate_export(str(source)), progress=progress,
                                 only_if_needed=only_if_needed)

    # -- the collection ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        from .embedder import languages_of
        from .embedder.precision_record import recorded_choice

        recorded = self.store.recorded_model() or {}
        model = recorded.get("model", self.settings.model)
        return {
            "count": self.store.count(),
            "regions": self.store.regions.count(),
            "model": model,
            "dim": recorded.get("dim"),
            "languages": languages_of(model).description,
            "precision": recorded_choice(model, self.settings.precision),
            "store": self.store.location,
            "collection": self.store.collection_name,
        }

    def collection_map(self, method: str = "auto"):
        """Every photo placed in 2-D by similarity (``views/collection_map.py``), kept in the media
        folder and reused while the collection does not change."""
        from .views.collection_map import build_map

        cache = self.settings.media_folder / f"map-{self.store.collection_name}.npz"
        return build_map(self.store, cache, method)

    def facets(self, records: Iterable[StoredRecord] | None = None,
               fields: tuple[str, ...] = ("tags", "photographer", "source")) -> dict[str, Counter]:
        """How often each value of the given metadata fields occurs in ``records``
        (default: the whole collection); list fields count each item."""
        counts: dict[str, Counter] = {name: Counter() for name in fields}
        for record in self.store.iter_all() if records is None else records:
            for name in fields:
                value = record.metadata.get(name)
                if isinstance(value, list):
                    counts[name].update(str(v) for v in value)
                elif value not in (None, ""):
                    counts[name][str(value)] += 1
        return counts
