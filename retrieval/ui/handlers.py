"""The page's handlers: each turns widget values into an engine call and the
results into widget values. Nothing here ranks or filters (the engine does)
or lays out the page (``app.py`` does)."""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from ..engine import Engine
from ..errors import RetrievalError
from ..photos.images import ImageRejected
from ..photos.metadata_table import MetadataTable
from ..search.searcher import QueryTerm, SearchRequest
from ..text.ocr import lines_holding
from . import present
from .controls import FieldProblem, ResultControls, required, with_controls
from .loading import MODEL_PROBLEM, ModelLoading
from .map_view import MapLayout
from .media import MediaFolder
from ..photos.web_urls import web_url

log = logging.getLogger("retrieval.app")

NO_TEXT = "Type a few words describing the photo."
NO_IMAGE = "Upload, paste or take a photo to search with."
NO_TAGS = "Pick at least one tag."
NO_COMBO_IMAGE = "Add a photo as well as the text (or use the Text tab)."
NO_COMBO_TEXT = "Add some text as well as the photo (or use the Image tab)."
NO_AUDIO = "Record something with the microphone or upload a recording first."
FACET_FIELDS = ("tags", "photographer", "source", "camera")  # the dropdowns filled with counted values
MAX_FACET_CHOICES = 1000  # the rest can still be typed: the dropdowns accept custom values


def _choices(counts, limit: int = MAX_FACET_CHOICES) -> list[tuple[str, str]]:
    return [(f"{value} ({count})", value) for value, count in counts.most_common(limit)]


def collection_text(engine: Engine) -> str:
    stats = engine.stats()
    return (f"**{stats['count']} photos** · model `{stats['model']}` · store `{stats['store']}` "
            f"(collection `{stats['collection']}`)")


def guarded(handler: Callable) -> Callable:
    """Turn our errors into a message in the page, never a traceback."""
    @functools.wraps(handler)  # keeps the signature: Gradio passes gr.Request by it
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except FieldProblem as exc:  # the page shows it next to the field (``SearchPage.problems``)
            raise gr.Error(str(exc), visible=False, print_exception=False) from None
        except RetrievalError as exc:
            raise gr.Error(str(exc)) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug: keep the details in the log, not the page
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); the server log has details.") from None
    return run


class FacetCounts:
    """Tag, photographer and source counts for the dropdowns.

    Counting reads every record, which takes a while in a big collection, so it
    runs once in the background at start-up (the page opens at once and the
    dropdowns fill when it is done); photos added later are counted on their own.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._counts: dict = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        threading.Thread(target=self._count_everything, name="count-facets", daemon=True).start()

    def _count_everything(self) -> None:
        try:
            counts = self.engine.facets(fields=FACET_FIELDS)
        except Exception:  # the dropdowns stay empty; typing a value still works
            log.exception("could not count tags and photographers")
            counts = {}
        with self._lock:
            self._counts = counts
        self._ready.set()

    def add(self, record_ids: list[str]) -> None:
        self._ready.wait()
        added = self.engine.facets(self.engine.store.get(record_ids), fields=FACET_FIELDS)
        with self._lock:
            for field, counts in added.items():
                self._counts.setdefault(field, Counter()).update(counts)

    def choices(self, field: str) -> list[tuple[str, str]]:
        self._ready.wait()
        with self._lock:
            return _choices(self._counts.get(field, Counter()))


class SearchPage:
    """The handlers behind the page; each returns the values of its outputs."""

    def __init__(self, engine: Engine, media: MediaFolder, model_problem: str = "",
                 loading: ModelLoading | None = None):
        """``model_problem``: why the search model could not be loaded ("" when it was); ``loading``:
        the model loading while the page serves (``ui/loading.py``), which may end with such a problem."""
        self.engine = engine
        self.media = media
        self._model_problem, self.loading = model_problem, loading
        self.facets = FacetCounts(engine)
        self.map = MapLayout(engine, media)

    def _pictures(self, record_ids: list[str], kind: str) -> list[str]:
        """One picture per result, so gallery positions always match the results: a served copy
        of its photo, else its stored image URL, else a "file missing" placeholder."""
        make = self.media.thumbnail if kind == "thumbnail" else self.media.preview
        made = {record_id: make(record_id, lambda: None) for record_id in record_ids}  # copies made earlier
        missing = [record_id for record_id, picture in made.items() if picture is None]
        stored = {r.id: r.metadata for r in self.engine.store.get(missing)} if missing else {}
        pictures = []
        for record_id in record_ids:
            metadata = stored.get(record_id, {})
            picture = made[record_id] or make(record_id, lambda: metadata.get("path"))
            pictures.append(str(picture) if picture else
                            web_url(metadata.get("image_url")) or str(self.media.placeholder()))
        return pictures

    def _boxed(self, picture: str, result: dict[str, Any]) -> str:
        """The picture with what matched drawn on it: the region, and the lines of words that hold
        the query's words."""
        boxes = [(list(result["matched_box"]), "region")] if result.get("matched_box") else []
        boxes += [(list(line.box), "words") for line in lines_holding(result, result.get("matched_words") or [])]
        if not boxes or not Path(picture).is_file():
            return picture
        return str(self.media.with_boxes(Path(picture), boxes, int(result.get("width") or 0),
                                         int(result.get("height") or 0)))

    def _gallery(self, results: list[dict[str, Any]], wanted_tags: int = 0) -> list[tuple[str, str]]:
        pictures = self._pictures([result["id"] for result in results], "thumbnail")
        return [(self._boxed(picture, result), present.caption(result, wanted_tags))
                for picture, result in zip(pictures, results)]

    def _run(self, request: SearchRequest, what: str, shown: list[dict] | None = None):
        """Run one page of ``request``; with ``shown`` the page is added after those results."""
        shown = list(shown or [])
        page = [present.public(r.to_dict()) for r in self.engine.search(request)]
        results = shown + page
        by_tags = not request.terms
        status = present.results_status(results, len(page), self.engine.store.count(), what,
                                        self.model_problem, ranked_by_tags=by_tags)
        gallery = self._gallery(results, len(request.tags) if by_tags else 0)
        return gallery, status, results, (request, what, results), present.spoken_summary(results)

    # -- a mistake shown next to its field, as the search starts ------------------

    @staticmethod
    def problems(controls: ResultControls, *needed: tuple[Any, str]) -> tuple:
        """What is wrong with a search about to run, next to its field: a ``needed`` input that is
        empty (its message under the search bar) or a result control (in the options, opened);
        each message cleared once its field is right. The search itself refuses the same mistake
        without a word (``guarded``), so the results on screen stay as they were."""
        try:
            for value, message in needed:
                required(value, message)
            controls.request_fields()
        except FieldProblem as problem:
            return (_problem(str(problem) if problem.field == "query" else ""),
                    _problem(str(problem) if problem.field == "options" else ""),
                    gr.Accordion(open=True) if problem.field == "options" else gr.skip())
        return _problem(""), _problem(""), gr.skip()

    def check_text(self, text: str, controls: ResultControls) -> tuple:
        return self.problems(controls, (text, NO_TEXT))

    def check_image(self, image, controls: ResultControls) -> tuple:
        return self.problems(controls, (image, NO_IMAGE))

    def check_tags(self, tags, controls: ResultControls) -> tuple:
        return self.problems(controls, (_picked(tags), NO_TAGS))

    def check_image_text(self, image, text: str, controls: ResultControls) -> tuple:
        return self.problems(controls, (image, NO_COMBO_IMAGE), (text, NO_COMBO_TEXT))

    def check_voice(self, audio, controls: ResultControls) -> tuple:
        return self.problems(controls, (audio, NO_AUDIO))

    def check_controls(self, controls: ResultControls) -> tuple:
        return self.problems(controls)

    # -- one handler per tab ---------------------------------------------------

    def by_text(self, text: str, without: str, controls: ResultControls):
        text = required(text, NO_TEXT)
        terms = [QueryTerm("text", text)]
        if (without or "").strip():
            terms.append(QueryTerm("text", without.strip(), -1.0))
        request = SearchRequest(terms=terms, **controls.request_fields())
        what = f"“{present.shorten(text)}”"
        if text and not self.engine.embedder.reads_whole(text):
            what += f" (shortened: the model reads the first {self.engine.embedder.context_length} tokens)"
        return self._run(request, what)

    def from_link(self, without: str, controls: ResultControls, request: gr.Request):
        """The search a shared link (``?q=...&k=...``) asks for: the query box, the number of
        results and the search's outputs; nothing at all when the link has no query."""
        params = request.query_params if request is not None else {}
        text = (params.get("q") or "").strip()
        if not text:
            return tuple(gr.skip() for _ in range(7))
        try:
            controls = replace(controls, k=min(max(int(params.get("k") or controls.k), 1), 100))
        except ValueError:
            pass
        return (text, controls.k, *self.by_text(text, without, controls))

    def rerun(self, last, controls: ResultControls):
        """The last search again with the result controls as they are now."""
        if not last:
            return tuple(gr.skip() for _ in range(5))
        request, what, _shown = last
        return self._run(replace(request, offset=0, **controls.request_fields()), what)

    def by_image(self, image, controls: ResultControls):
        image = required(image, NO_IMAGE)
        request = SearchRequest(terms=[QueryTerm("image", image)], **controls.request_fields())
        return self._run(request, "the example image")

    def by_tags(self, tags: list[str] | None, match: str, controls: ResultControls):
        tags = required(_picked(tags), NO_TAGS)
        request = SearchRequest(tags=tags, match_all_tags=(match == "all"), **controls.request_fields())
        return self._run(request, f"tags {present.shorten(', '.join(tags))} ({match})")

    def by_image_and_text(self, image, text: str, text_weight: float, controls: ResultControls):
        image, text = required(image, NO_COMBO_IMAGE), required(text, NO_COMBO_TEXT)
        text_weight = float(text_weight)
        terms = [QueryTerm("image", image, 1.0 - text_weight), QueryTerm("text", text, text_weight)]
        request = SearchRequest(terms=terms, **controls.request_fields())
        return self._run(request, f"the image + “{present.shorten(text)}”")

    def by_voice(self, audio_path: str | None, language: str | None, controls: ResultControls):
        """Transcribe, then search with the transcript; nothing is searched when no one spoke
        or what was heard is not trusted. ``language``: a code, or "auto"/None to detect."""
        audio_path = required(audio_path, NO_AUDIO)
        language = None if not language or language == "auto" else str(language)
        heard = self.engine.transcribe(audio_path, language)
        description = self.engine.speech.describe(heard)
        if not heard.speech_detected:
            return "", [], description, [], None, description
        request = SearchRequest(terms=[QueryTerm("text", heard.text)], **controls.request_fields())
        gallery, status, results, last, spoken = self._run(request, f"“{present.shorten(heard.text)}”")
        return heard.text, gallery, f"{present.escape(description)}\n\n{status}", results, last, spoken

    def more_like_this(self, record_id: str, controls: ResultControls):
        if not (record_id or "").strip():
            raise RetrievalError("Select a result first.")
        request = SearchRequest(terms=[QueryTerm("record", record_id.strip())],
                                exclude_ids={record_id.strip()}, **controls.request_fields())
        return self._run(request, "photos like the selected one")

    def more_results(self, last):
        """The next page of the last search, added after what is shown (kept per browser session)."""
        if not last:
            raise RetrievalError("Search first; then more results can be added.")
        request, what, shown = last
        return self._run(replace(request, offset=len(shown)), what, shown)

    # -- details and the collection ---------------------------------------------

    def details(self, results: list[dict] | None, event: gr.SelectData):
        """The viewer opened on the selected result."""
        return self.show(results, event.index)

    def show(self, results: list[dict] | None, index, step: int = 0):
        """The viewer on result ``index + step`` (kept within the results): picture, details,
        its id, its position, and the viewer shown."""
        if index is None:  # a photo opened from the map: it has no neighbours to step to
            return tuple(gr.skip() for _ in range(5))
        if not results:
            return None, "", "", None, gr.Column(visible=False)
        index = min(max(int(index) + step, 0), len(results) - 1)
        result = results[index]
        position = f'<p class="viewer-position">{index + 1} of {len(results)}</p>'
        picture = self._boxed(self._pictures([result["id"]], "preview")[0], result)
        return (picture, position + present.details_html(result), result["id"], index, gr.Column(visible=True))

    def why_this_matched(self, record_id: str, last):
        """The viewer's photo with the heat map of where it matches the last search's query."""
        if not (record_id or "").strip():
            raise RetrievalError("Open a result first.")
        if not last:
            raise RetrievalError("Search first: the heat map shows where a photo matches your query.")
        request = last[0]
        if not request.terms:
            raise RetrievalError("A tag search has no query to draw: search by text or with a photo.")
        picture, _ = self.engine.explain(record_id.strip(), request.terms)
        return picture

    def map_html(self, colour_field: str | None, results: list[dict] | None) -> str:
        """The map of the collection, coloured by ``colour_field``, the current results ringed."""
        return self.map.html(colour_field or "tags", {r["id"] for r in results or []})

    def open_from_map(self, record_id: str):
        """The viewer on a photo picked on the map."""
        records = self.engine.store.get([record_id.strip()]) if (record_id or "").strip() else []
        if not records:
            raise RetrievalError("That photo is no longer in the collection; the map is being redrawn.")
        result = present.public({"id": records[0].id, **records[0].metadata})
        return (self._pictures([result["id"]], "preview")[0], present.details_html(result), result["id"], None,
                gr.Column(visible=True))

    def show_previous(self, results: list[dict] | None, index):
        return self.show(results, index, -1)

    def show_next(self, results: list[dict] | None, index):
        return self.show(results, index, +1)

    @staticmethod
    def hide_viewer():
        return gr.Column(visible=False)

    @staticmethod
    def close_viewer():
        """After a new search: no viewer, and no thumbnail highlighted at a place that holds another photo."""
        return gr.Column(visible=False), gr.Gallery(selected_index=None), None

    @staticmethod
    def describe_uploads(files: list[str] | None) -> str:
        """A one-line summary of the chosen files instead of one row per file."""
        if not files:
            return ""
        size = sum(Path(f).stat().st_size for f in files if Path(f).is_file())
        return f"{present.count(len(files), 'file')} chosen ({size / 1e6:.1f} MB)"

    def add_photos(self, files: list[str] | None, metadata_file: str | None, find_regions: bool = False,
                   read_words: bool = False, write_captions: bool = False, by_meaning: bool = False,
                   progress=gr.Progress()):
        if not files:
            raise RetrievalError("Choose or drop some photos first.")
        table = MetadataTable.from_file(Path(metadata_file), shown_as=Path(metadata_file).name) \
            if metadata_file else None
        originals: dict[str, str] = {}
        rejected: list[str] = []
        max_bytes = self.engine.settings.max_upload_mb * 1_000_000
        for upload in files:
            name = Path(upload).name
            try:
                stored = self.media.store_upload(Path(upload), name, max_bytes)
            except ImageRejected as exc:
                rejected.append(f"{name}: {exc}")
                continue
            originals[stored.path.name] = stored.original_name

        def metadata_for(path: Path) -> dict[str, Any]:
            original = originals.get(path.name, path.name)
            return {"filename": original, **(table.lookup(Path(original)) if table else {})}

        def report_progress(step) -> None:
            doing = {"regions": "Finding objects and regions",
                     "meaning": "Embedding the descriptions' meaning"}.get(step.stage, "Indexing")
            progress((step.done, step.total), desc=f"{doing} {step.done}/{step.total}")

        if originals:
            report = self.engine.index([self.media.uploads / name for name in originals],
                                       metadata=metadata_for, source="upload", progress=report_progress,
                                       regions=bool(find_regions), ocr=bool(read_words),
                                       captions=bool(write_captions), meaning=bool(by_meaning))
            rejected += [f"{originals.get(Path(s.path).name, s.path)}: {s.reason}" for s in report.skipped]
            self.facets.add(report.added)
            if report.changed_the_store:
                self.map.refresh()
            added = len(report.added)
            already = report.unchanged + report.updated + len(report.duplicates)
        else:
            added = already = 0
        summary = f"**Added {added}** · already in the collection {already} · rejected {len(rejected)}"
        if originals and report.regions_added:
            summary += f" · {present.count(report.regions_added, 'region')} found"
        if originals and report.photos_given_meaning:
            summary += f" · {present.count(report.photos_given_meaning, 'description')} embedded by meaning"
        if rejected:
            summary += "\n\n" + "\n".join(f"- {present.escape(line)}" for line in rejected)
        if table is not None and table.warnings():
            summary += "\n\nMetadata table: " + "; ".join(present.escape(w) for w in table.warnings())
        for warning in report.warnings if originals else []:  # a model that could not be had, and what that left
            summary += "\n\n" + present.escape(warning)
        return (summary, collection_text(self.engine), *self.facet_updates())

    @property
    def model_problem(self) -> str:
        if self.loading is not None and self.loading.done and self.loading.notice.startswith(MODEL_PROBLEM):
            return self.loading.notice
        return self._model_problem

    def loading_update(self):
        """Every second while the model loads: the notice at the top, the model's note and the
        minimum-score hint once it is in, and whether to keep asking."""
        if self.loading is None or not self.loading.done:
            return gr.Markdown(), gr.Markdown(), gr.Slider(), gr.Timer(active=True)
        notice = self.loading.notice
        return (gr.Markdown(notice, visible=bool(notice)), *self.search_model(), gr.Timer(active=False))

    def search_model(self):
        """What the search model reads and how its scores run: a note under the text box and the
        minimum-score control's hint."""
        if self.loading is not None and not self.loading.done:
            return "Loading the search model…", gr.Slider()
        if self.model_problem:
            return "", gr.Slider()
        embedder = self.engine.embedder
        languages = ("Type in any language: " if embedder.languages.multilingual else "Type in English: ")
        # The model's own name, not its whole path: the note stays one short line on a phone
        # (the full id or folder is in "Add photos").
        short_name = Path(embedder.name.rstrip("/")).name or embedder.name
        note = (f"{languages}the search model reads {embedder.languages.name} "
                f"({embedder.family}, {present.escape(short_name)}).")
        hint = (f"Cosine similarity; with this model {embedder.scores.describe()}. "
                "The range of each search is shown with its results. 0 = no minimum")
        return note, gr.Slider(info=hint)

    def speech_model(self) -> str:
        try:
            return self.engine.speech.model_summary()
        except RetrievalError as exc:
            return f"Voice search is unavailable: {present.escape(str(exc))}"

    def facet_updates(self):
        hints = {"tags": {"info": self.tags_hint()}}
        return tuple(gr.Dropdown(choices=self.facets.choices(field), **hints.get(field, {})) for field in FACET_FIELDS)

    def tags_hint(self) -> str:
        """Under the Tags box: the most used tags, or where tags come from when there are none."""
        most = [label for label, _value in self.facets.choices("tags")[:5]]
        if not most:
            return "No photo has tags yet: they come from a metadata table's tags column (Add photos)"
        return "Type a tag or pick from the list. Most used: " + ", ".join(most)




def _picked(tags: list[str] | None) -> list[str]:
    return [tag for tag in (tags or []) if str(tag).strip()]


def _problem(message: str):
    return gr.Markdown(f"⚠ {present.escape(message)}" if message else "", visible=bool(message))


class PageEndpoints:
    """Every function the page wires, each guarded once (our errors become a message in the page,
    never a traceback); the searches take their inputs, then the result controls by name
    (``controls.with_controls``), so an API client may pass only what it needs."""

    def __init__(self, page: SearchPage):
        search = lambda handler, *inputs, **optional: guarded(with_controls(handler, *inputs, **optional))  # noqa: E731
        self.search_text = search(page.by_text, "query", without="")
        self.search_image = search(page.by_image, "image")
        self.search_tags = search(page.by_tags, "tags", match="any")
        self.search_image_text = search(page.by_image_and_text, "image", "text", text_weight=0.5)
        self.search_voice = search(page.by_voice, "audio", language="auto")
        self.more_like_this = search(page.more_like_this, "record_id")
        self.rerun = search(page.rerun, "last")
        self.check_text = guarded(with_controls(page.check_text, "query"))
        self.check_image = guarded(with_controls(page.check_image, "image"))
        self.check_tags = guarded(with_controls(page.check_tags, "tags"))
        self.check_image_text = guarded(with_controls(page.check_image_text, "image", "text"))
        self.check_voice = guarded(with_controls(page.check_voice, "audio"))
        self.check_controls = guarded(with_controls(page.check_controls))
        self.from_link = guarded(with_controls(page.from_link, request_type=gr.Request, without=""))
        for name in ("more_results", "why_this_matched", "map_html", "open_from_map", "details", "show_previous",
                     "show_next", "close_viewer", "hide_viewer", "describe_uploads", "add_photos", "facet_updates",
                     "speech_model", "search_model", "loading_update"):
            setattr(self, name, guarded(getattr(page, name)))
