"""Web app: search the photo collection by text, example image, tags, voice, or a mix.

Thin by design: each handler turns widget values into an engine call and the
results into widgets. Ranking, filtering and indexing live in ``retrieval``;
what is shown and which files may be served live in ``retrieval.ui``. Settings
come from the same environment variables as the CLI (see README).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from retrieval import Engine, RetrievalError, Settings
from retrieval.images import ImageRejected
from retrieval.metadata_table import MetadataTable
from retrieval.search import QueryTerm, SearchRequest
from retrieval.ui import present
from retrieval.ui.media import MediaFolder
from retrieval.ui.starter import add_starter_gallery

log = logging.getLogger("retrieval.app")

SPOKEN_LANGUAGES = [("detect it", "auto"), ("English", "en"), ("German", "de"), ("French", "fr"),
                    ("Spanish", "es"), ("Italian", "it"), ("Portuguese", "pt"), ("Dutch", "nl"),
                    ("Chinese", "zh"), ("Japanese", "ja")]
EXAMPLE_QUERIES = ["a cat lying down", "a rocket launch", "a cup of coffee on a table", "stars in the night sky"]
MAX_FACET_CHOICES = 1000  # the rest can still be typed: the dropdowns accept custom values

READ_ALOUD_JS = """(text) => {
  const synth = window.speechSynthesis;
  if (!synth) { alert("This browser can't read text aloud."); return; }
  synth.cancel();
  synth.speak(new SpeechSynthesisUtterance(text || "Search first; then the results can be read aloud."));
}"""

CSS = """
.photo-details table { border-collapse: collapse; width: 100%; table-layout: fixed; }
.photo-details td { overflow-wrap: anywhere; }
.photo-details th { text-align: left; padding-right: 1em; vertical-align: top; }
"""


def _choices(counts, limit: int = MAX_FACET_CHOICES) -> list[tuple[str, str]]:
    return [(f"{value} ({count})", value) for value, count in counts.most_common(limit)]


def _collection_text(engine: Engine) -> str:
    stats = engine.stats()
    return (f"**{stats['count']} photos** · model `{stats['model']}` · store `{stats['store']}` "
            f"(collection `{stats['collection']}`)")


def _guarded(handler: Callable) -> Callable:
    """Turn our errors into a message in the page, never a traceback."""
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except RetrievalError as exc:
            raise gr.Error(str(exc)) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug: keep the details in the log, not the page
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}); the server log has details.") from None
    run.__name__ = handler.__name__
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
            counts = self.engine.facets()
        except Exception:  # the dropdowns stay empty; typing a value still works
            log.exception("could not count tags and photographers")
            counts = {}
        with self._lock:
            self._counts = counts
        self._ready.set()

    def add(self, record_ids: list[str]) -> None:
        self._ready.wait()
        added = self.engine.facets(self.engine.store.get(record_ids))
        with self._lock:
            for field, counts in added.items():
                self._counts.setdefault(field, Counter()).update(counts)

    def choices(self, field: str) -> list[tuple[str, str]]:
        self._ready.wait()
        with self._lock:
            return _choices(self._counts.get(field, Counter()))


class SearchPage:
    """The handlers behind the page; each returns the values of its outputs."""

    def __init__(self, engine: Engine, media: MediaFolder):
        self.engine = engine
        self.media = media
        self.facets = FacetCounts(engine)

    # -- shared result controls ----------------------------------------------

    @staticmethod
    def _options(k: float, min_score: float, photographer: str | None, source: str | None) -> dict[str, Any]:
        filters = {}
        if photographer:
            filters["photographer"] = photographer
        if source:
            filters["source"] = source
        return {"k": int(k), "min_score": float(min_score) or None, "filters": filters}

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
                            metadata.get("image_url") or str(self.media.placeholder()))
        return pictures

    def _gallery(self, results: list[dict[str, Any]]) -> list[tuple[str, str]]:
        pictures = self._pictures([result["id"] for result in results], "thumbnail")
        return [(picture, present.caption(result)) for picture, result in zip(pictures, results)]

    def _run(self, request: SearchRequest, what: str, shown: list[dict] | None = None):
        """Run one page of ``request``; with ``shown`` the page is added after those results."""
        shown = list(shown or [])
        page = [present.public(r.to_dict()) for r in self.engine.search(request)]
        results = shown + page
        status = present.results_status(len(results), len(page), self.engine.store.count(), what)
        return self._gallery(results), status, results, (request, what, results), present.spoken_summary(results)

    # -- one handler per tab ---------------------------------------------------

    def by_text(self, text: str, without: str, k, min_score, photographer, source):
        terms = [QueryTerm("text", text or "")]
        if (without or "").strip():
            terms.append(QueryTerm("text", without.strip(), -1.0))
        request = SearchRequest(terms=terms, **self._options(k, min_score, photographer, source))
        return self._run(request, f"“{(text or '').strip()}”")

    def by_image(self, image, k, min_score, photographer, source):
        if image is None:
            raise RetrievalError("Upload, paste or take a photo to search with.")
        request = SearchRequest(terms=[QueryTerm("image", image)], **self._options(k, min_score, photographer, source))
        return self._run(request, "the example image")

    def by_tags(self, tags: list[str] | None, match: str, k, min_score, photographer, source):
        tags = [t for t in (tags or []) if str(t).strip()]
        if not tags:
            raise RetrievalError("Pick at least one tag.")
        request = SearchRequest(tags=tags, match_all_tags=(match == "all"),
                                **self._options(k, min_score, photographer, source))
        return self._run(request, f"tags {', '.join(tags)} ({match})")

    def by_image_and_text(self, image, text: str, text_weight: float, k, min_score, photographer, source):
        if image is None:
            raise RetrievalError("Add a photo as well as the text (or use the Text tab).")
        if not (text or "").strip():
            raise RetrievalError("Add some text as well as the photo (or use the Image tab).")
        text_weight = float(text_weight)
        terms = [QueryTerm("image", image, 1.0 - text_weight), QueryTerm("text", text, text_weight)]
        request = SearchRequest(terms=terms, **self._options(k, min_score, photographer, source))
        return self._run(request, f"the image + “{text.strip()}”")

    def by_voice(self, audio_path: str | None, k, min_score, photographer, source, language: str | None = None):
        """Transcribe, then search with the transcript; nothing is searched when no one spoke
        or what was heard is not trusted. ``language``: a code, or "auto"/None to detect."""
        if not audio_path:
            raise RetrievalError("Record something with the microphone or upload a recording first.")
        language = None if not language or language == "auto" else str(language)
        heard = self.engine.transcribe(audio_path, language)
        description = self.engine.speech.describe(heard)
        if not heard.speech_detected:
            return "", [], description, [], None, description
        request = SearchRequest(terms=[QueryTerm("text", heard.text)],
                                **self._options(k, min_score, photographer, source))
        gallery, status, results, last, spoken = self._run(request, f"“{heard.text}”")
        return heard.text, gallery, f"{present.escape(description)}\n\n{status}", results, last, spoken

    def more_like_this(self, record_id: str, k, min_score, photographer, source):
        if not (record_id or "").strip():
            raise RetrievalError("Select a result first.")
        request = SearchRequest(terms=[QueryTerm("record", record_id.strip())],
                                exclude_ids={record_id.strip()}, **self._options(k, min_score, photographer, source))
        return self._run(request, "photos like the selected one")

    def more_results(self, last):
        """The next page of the last search, added after what is shown (kept per browser session)."""
        if not last:
            raise RetrievalError("Search first; then more results can be added.")
        request, what, shown = last
        return self._run(replace(request, offset=len(shown)), what, shown)

    # -- details and the collection ---------------------------------------------

    def details(self, results: list[dict] | None, event: gr.SelectData):
        if not results or event.index is None or not 0 <= int(event.index) < len(results):
            return None, "", "", gr.Column(visible=False)
        result = results[int(event.index)]
        return (self._pictures([result["id"]], "preview")[0], present.details_html(result), result["id"],
                gr.Column(visible=True))

    def add_photos(self, files: list[str] | None, metadata_file: str | None, progress=gr.Progress()):
        if not files:
            raise RetrievalError("Choose or drop some photos first.")
        table = MetadataTable.from_file(Path(metadata_file)) if metadata_file else None
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
            progress((step.done, step.total), desc=f"Indexing {step.done}/{step.total}")

        if originals:
            report = self.engine.index([self.media.uploads / name for name in originals],
                                       metadata=metadata_for, source="upload", progress=report_progress)
            rejected += [f"{originals.get(Path(s.path).name, s.path)}: {s.reason}" for s in report.skipped]
            self.facets.add(report.added)
            added = len(report.added)
            already = report.unchanged + report.updated + len(report.duplicates)
        else:
            added = already = 0
        summary = f"**Added {added}** · already in the collection {already} · rejected {len(rejected)}"
        if rejected:
            summary += "\n\n" + "\n".join(f"- {present.escape(line)}" for line in rejected)
        if table is not None and table.warnings():
            summary += "\n\nMetadata table: " + "; ".join(present.escape(w) for w in table.warnings())
        return (summary, _collection_text(self.engine), *self.facet_updates())

    def speech_model(self) -> str:
        try:
            return self.engine.speech.model_summary()
        except RetrievalError as exc:
            return f"Voice search is unavailable: {present.escape(str(exc))}"

    def facet_updates(self):
        return tuple(gr.Dropdown(choices=self.facets.choices(field)) for field in ("tags", "photographer", "source"))


def build_app(engine: Engine, media: MediaFolder | None = None, notice: str = "") -> gr.Blocks:
    media = media or MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
    page = SearchPage(engine, media)

    with gr.Blocks(title="Photo search") as app:
        gr.Markdown("# Photo search")
        gr.Markdown(notice, visible=bool(notice), elem_id="notice")

        with gr.Tabs():
            with gr.Tab("Text"):
                query = gr.Textbox(label="Describe the photo", placeholder="a dog running on the beach",
                                   elem_id="text-query")
                without = gr.Textbox(label="Without (optional)", placeholder="people, text",
                                     info="Steer away from this")
                text_button = gr.Button("Search", variant="primary", elem_id="text-search")
                gr.Examples(EXAMPLE_QUERIES, inputs=[query], label="Try")
            with gr.Tab("Image"):
                image = gr.Image(type="pil", label="Find photos like this one",
                                 sources=["upload", "clipboard", "webcam"])
                image_button = gr.Button("Search", variant="primary")
            with gr.Tab("Tags"):
                tags = gr.Dropdown(choices=[], multiselect=True, filterable=True,
                                   allow_custom_value=True, label="Tags (number of photos)")
                tag_match = gr.Radio(["any", "all"], value="any", label="Photos with")
                tags_button = gr.Button("Search", variant="primary")
            with gr.Tab("Image + Text"):
                with gr.Row():
                    combo_image = gr.Image(type="pil", label="Start from this photo",
                                           sources=["upload", "clipboard", "webcam"])
                    with gr.Column():
                        combo_text = gr.Textbox(label="…changed by this text", placeholder="at night")
                        text_weight = gr.Slider(0, 1, value=0.5, step=0.05, label="How much the text counts",
                                                info="0 = only the photo, 1 = only the text")
                combo_button = gr.Button("Search", variant="primary")
            with gr.Tab("Voice"):
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="voice-audio",
                                 label="Say what you are looking for (or upload a recording)")
                voice_button = gr.Button("Transcribe and search", variant="primary", elem_id="voice-search")
                with gr.Row():
                    spoken_language = gr.Dropdown(SPOKEN_LANGUAGES, value="auto", label="Language spoken",
                                                  info="auto = detected", elem_id="voice-language")
                    speech_model = gr.Markdown(elem_id="speech-model")
                transcript = gr.Textbox(label="What was heard: fix a word and press Enter to search again",
                                        elem_id="transcript")
            with gr.Tab("Add photos", elem_id="add-photos-tab"):
                # No file-type filter: one odd file must not block the others; each is checked and
                # a file that isn't a usable photo is named in the summary with the reason.
                uploads = gr.File(file_count="multiple", label="Photos (drop many at once)", elem_id="uploads")
                metadata_file = gr.File(file_count="single", file_types=[".csv", ".tsv", ".json", ".jsonl"],
                                        label="Metadata table (optional): description, photographer, tags… "
                                              "by file name or photo_id")
                add_button = gr.Button("Add to the collection", variant="primary", elem_id="add-button")
                add_summary = gr.Markdown(elem_id="add-summary")
                collection = gr.Markdown(_collection_text(engine), elem_id="collection-info")

        with gr.Row():
            k = gr.Slider(1, 100, value=12, step=1, label="Number of results")
            min_score = gr.Slider(0, 1, value=0, step=0.01, label="Minimum score", info="0 = no minimum")
            photographer = gr.Dropdown(choices=[], value=None, filterable=True,
                                       allow_custom_value=True, label="Photographer")
            source = gr.Dropdown(choices=[], value=None, filterable=True,
                                 allow_custom_value=True, label="Source")
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(label="Results", columns=4, height="auto", allow_preview=False,
                             elem_id="results")
        with gr.Row():
            more_button = gr.Button("More results", elem_id="more-results")
            speak_button = gr.Button("Read results aloud", elem_id="read-aloud")
        with gr.Column(visible=False, elem_id="details") as details_box:
            with gr.Row():
                details_image = gr.Image(label="Selected photo", interactive=False, height=420)
                with gr.Column():
                    details_info = gr.HTML()
                    like_button = gr.Button("More like this", variant="primary", elem_id="more-like-this")
        selected_id = gr.Textbox(visible=False, label="Selected id")
        spoken = gr.Textbox(visible=False, label="Spoken summary")
        with gr.Accordion("Results as data", open=False):
            results = gr.JSON(label="Results")
        last_request = gr.State(None)

        shared = [k, min_score, photographer, source]
        outputs = [gallery, status, results, last_request, spoken]
        gr.on([text_button.click, query.submit], _guarded(page.by_text), [query, without, *shared], outputs,
              api_name="search_text")
        image_button.click(_guarded(page.by_image), [image, *shared], outputs, api_name="search_image")
        tags_button.click(_guarded(page.by_tags), [tags, tag_match, *shared], outputs, api_name="search_tags")
        gr.on([combo_button.click, combo_text.submit], _guarded(page.by_image_and_text),
              [combo_image, combo_text, text_weight, *shared], outputs, api_name="search_image_text")
        voice_button.click(_guarded(page.by_voice), [audio, *shared, spoken_language], [transcript, *outputs],
                           api_name="search_voice")
        app.load(page.speech_model, None, speech_model, api_visibility="private")
        transcript.submit(_guarded(page.by_text), [transcript, gr.State(""), *shared], outputs,
                          api_name="search_transcript")
        like_button.click(_guarded(page.more_like_this), [selected_id, *shared], outputs, api_name="more_like_this")
        more_button.click(_guarded(page.more_results), [last_request], outputs, api_name="more_results")
        gallery.select(page.details, [results], [details_image, details_info, selected_id, details_box],
                       api_visibility="private")
        speak_button.click(None, [spoken], None, js=READ_ALOUD_JS)
        app.load(page.facet_updates, None, [tags, photographer, source], api_visibility="private")
        add_button.click(_guarded(page.add_photos), [uploads, metadata_file],
                         [add_summary, collection, tags, photographer, source], api_name="add_photos")
    return app


def prepare_collection(engine: Engine, media: MediaFolder) -> str:
    """Load the model and, for an empty collection, add the starter gallery.

    Returns the notice for the top of the page ("" when there is nothing to say).
    The app still starts when the model can't be loaded: the notice says which
    setting to change, and tag search keeps working.
    """
    try:
        engine.preload()  # the first search is then as fast as the others
    except RetrievalError as exc:
        log.error("%s", exc)
        return f"**The search model could not be loaded.** {present.escape(str(exc))}"
    if not engine.settings.starter_gallery or engine.store.count() > 0:
        return ""
    report = add_starter_gallery(engine, media.starter)
    if not report or not report.added:
        return ""
    return (f"The collection was empty, so {len(report.added)} sample photos that ship with scikit-image "
            "(public domain or CC0) were added to try things out. Add your own in **Add photos**; set "
            "`STARTER_GALLERY=0` to start with an empty collection.")


def warm_up_speech(engine: Engine) -> None:
    """Load the speech model in the background: the page opens at once, the first voice search is quick."""
    def load() -> None:
        try:
            engine.speech.backend
        except RetrievalError as exc:
            log.warning("voice search is unavailable until this is fixed: %s", exc)

    threading.Thread(target=load, name="load-speech-model", daemon=True).start()


def launch(app: gr.Blocks, engine: Engine, **options) -> gr.Blocks:
    """Serve the app; only the media folder is readable through Gradio's file route."""
    # Thumbnails and previews never change (named by content hash): served in place, not
    # hashed and copied into Gradio's cache for every result of every search.
    gr.set_static_paths([str(engine.settings.media_folder)])
    # Searches run side by side (the engine is thread-safe); each one's model work is short.
    app.queue(default_concurrency_limit=engine.settings.app_concurrency).launch(
        allowed_paths=[str(engine.settings.media_folder)],
        max_file_size=f"{engine.settings.max_upload_mb}mb",
        css=CSS,
        **options,
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Photo search web app")
    parser.add_argument("--host", default=os.environ.get("APP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("APP_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=os.environ.get("APP_SHARE") == "1",
                        help="also serve on a public gradio.live link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        engine = Engine(Settings.from_env())
        media = MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
        notice = prepare_collection(engine, media)
        warm_up_speech(engine)
    except RetrievalError as exc:
        raise SystemExit(f"error: {exc}") from None
    launch(build_app(engine, media, notice), engine, server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
