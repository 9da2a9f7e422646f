"""Web app: search the photo collection by text, example image, tags, voice, or a mix.

Thin by design: each handler turns widget values into an engine call and the
results into widgets. Ranking, filtering and indexing live in ``retrieval``;
what is shown and which files may be served live in ``retrieval.ui``. Settings
come from the same environment variables as the CLI (see README).
"""

from __future__ import annotations

import gradio as gr

from retrieval import Engine
from retrieval.ui.components import PhotoInput
from retrieval.ui.controls import ORDERS
from retrieval.ui.handlers import PageEndpoints, SearchPage, collection_text
from retrieval.ui.media import MediaFolder
from retrieval.ui.page_assets import READ_ALOUD_JS, SHOW_ADD_SUMMARY, WRITE_LINK_JS
from retrieval.ui.loading import MODEL_PROBLEM, ModelLoading
from retrieval.ui.startup import serve
from retrieval.views.collection_map import COLOUR_FIELDS


SPOKEN_LANGUAGES = [("detect it", "auto"), ("English", "en"), ("German", "de"), ("French", "fr"),
                    ("Spanish", "es"), ("Italian", "it"), ("Portuguese", "pt"), ("Dutch", "nl"),
                    ("Chinese", "zh"), ("Japanese", "ja")]
EXAMPLE_QUERIES = ["a cat lying down", "a rocket launch", "a cup of coffee on a table", "stars in the night sky"]
PRIVATE = {"api_visibility": "private"}
WHY_THIS_MATCHED, WORKING_OUT_WHY = "Why this matched", "Working out why…"


def build_app(engine: Engine, media: MediaFolder | None = None, notice: str = "",
              loading: ModelLoading | None = None) -> gr.Blocks:
    """``notice``: what the top of the page says; ``loading``: the model loading meanwhile, whose
    notice replaces it (ui/loading.py)."""
    media = media or MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels)
    page = SearchPage(engine, media, model_problem=notice if notice.startswith(MODEL_PROBLEM) else "",
                      loading=loading)
    notice = loading.notice if loading is not None else notice

    with gr.Blocks(title="Photo search") as app:
        gr.Markdown("## Photo search", elem_id="title")
        notice_box = gr.Markdown(notice, visible=bool(notice), elem_id="notice")

        # -- the search bar: one tab per kind of query -------------------------------
        with gr.Tabs(elem_id="modes", overflow_behavior="wrap"):  # every mode one tap away, on a phone too
            with gr.Tab("Text"):
                with gr.Row(elem_id="search-bar", equal_height=True):
                    query = gr.Textbox(show_label=False, placeholder="Describe the photo: a dog running on the beach",
                                       elem_id="text-query", scale=5, lines=1, max_lines=3)
                    with gr.Column(scale=2, min_width=120, elem_id="without-box"):  # on a phone: beside the button
                        without = gr.Textbox("", show_label=False, placeholder="without… (optional)",
                                             elem_id="text-without", lines=1, max_lines=1)
                    text_button = gr.Button("Search", variant="primary", elem_id="text-search", scale=1,
                                            min_width=90)
                examples = gr.Dataset(components=[query], samples=[[q] for q in EXAMPLE_QUERIES], label="Try",
                                      elem_id="examples", type="values")
                model_note = gr.Markdown(elem_id="model-note")
            with gr.Tab("Image"):
                with gr.Row(equal_height=True):
                    image = PhotoInput(type="filepath", label="Find photos like this one", height=220,
                                       sources=["upload", "clipboard", "webcam"], elem_id="image-query", scale=3)
                    image_button = gr.Button("Search", variant="primary", elem_id="image-search", scale=1)
            with gr.Tab("Tags"):
                with gr.Row(equal_height=True):
                    tags = gr.Dropdown(choices=[], multiselect=True, filterable=True, allow_custom_value=True,
                                       label="Tags (number of photos)", scale=4, elem_id="tags",
                                       info="Type a tag or pick from the list")
                    tag_match = gr.Radio(["any", "all"], value="any", label="Photos with", scale=1)
                    tags_button = gr.Button("Search", variant="primary", scale=1, elem_id="tags-search")
            with gr.Tab("Image + Text"):
                with gr.Row():
                    combo_image = PhotoInput(type="filepath", label="Start from this photo", height=220,
                                             sources=["upload", "clipboard", "webcam"])
                    with gr.Column():
                        combo_text = gr.Textbox(label="…changed by this text", placeholder="at night")
                        text_weight = gr.Slider(0, 1, value=0.5, step=0.05, label="How much the text counts",
                                                info="0 = only the photo, 1 = only the text")
                        combo_button = gr.Button("Search", variant="primary")
            with gr.Tab("Voice"):
                with gr.Row(equal_height=True):
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", elem_id="voice-audio",
                                     label="Say what you are looking for (or upload a recording)", scale=3)
                    with gr.Column(scale=2):
                        spoken_language = gr.Dropdown(SPOKEN_LANGUAGES, value="auto", label="Language spoken",
                                                      elem_id="voice-language")
                        voice_button = gr.Button("Transcribe and search", variant="primary", elem_id="voice-search")
                speech_model = gr.Markdown(elem_id="speech-model")
                transcript = gr.Textbox(label="What was heard: fix a word and press Enter to search again",
                                        elem_id="transcript")
            with gr.Tab("Add photos", elem_id="add-photos-tab"):
                # No file-type filter: one odd file must not block the others; each is checked and
                # a file that isn't a usable photo is named in the summary with the reason.
                uploads = gr.File(file_count="multiple", label="Photos (drop many at once)", elem_id="uploads",
                                  height=120)
                chosen = gr.Markdown(elem_id="chosen")
                metadata_file = gr.File(file_count="single", file_types=[".csv", ".tsv", ".json", ".jsonl"],
                                        label="Metadata table (optional): description, photographer, tags… "
                                              "by file name or photo_id", height=120, elem_id="metadata-file")
                find_regions = gr.Checkbox(engine.settings.regions, elem_id="find-regions",
                                           label="Also find objects and regions in each photo",
                                           info="A search can then match part of a photo and shows the box; "
                                                "about 17 times the work per photo")
                read_words = gr.Checkbox(engine.settings.ocr, elem_id="read-words",
                                         label="Also read the words in each photo",
                                         info="Signs, labels, screenshots: kept with the photo and shown in "
                                              "its details; " + ("about two thirds of a second per photo with CRAFT "
                                              "(OCR_CRAFT)" if engine.settings.ocr_craft else
                                              "about a third of a second per photo"))
                write_captions = gr.Checkbox(engine.settings.captions, elem_id="write-captions",
                                             label="Also write a caption for each photo",
                                             info="A sentence from a captioning model (CAPTION_MODEL), searched "
                                                  "with the photo's words; a second or more per photo")
                by_meaning = gr.Checkbox(engine.settings.meaning, elem_id="by-meaning",
                                         label="Also search the descriptions by meaning",
                                         info="Descriptions, captions and read words embedded by a sentence "
                                              "model (SENTENCE_MODEL): a search finds photos described in "
                                              "other words; milliseconds per photo")
                add_button = gr.Button("Add to the collection", variant="primary", elem_id="add-button")
                add_summary = gr.Markdown(elem_id="add-summary")
                collection = gr.Markdown(collection_text(engine), elem_id="collection-info")
            with gr.Tab("Map", elem_id="map-tab") as map_tab:
                with gr.Row(equal_height=True):
                    colour_by = gr.Dropdown(list(COLOUR_FIELDS), value="tags", label="Colour by", scale=1,
                                            elem_id="map-colour")
                    map_button = gr.Button("Redraw with the last search's results", scale=1, elem_id="map-redraw")
                collection_map = gr.HTML(elem_id="collection-map")
                # A photo picked on the map: the page's script writes its id here and presses the button.
                map_pick = gr.Textbox(elem_id="map-pick", elem_classes=["offscreen"], show_label=False)
                map_open = gr.Button("Open", elem_id="map-open", elem_classes=["offscreen"])

        # A mistake in the search bar is said here, the results below it kept as they were.
        search_problem = gr.Markdown(visible=False, elem_id="search-problem", elem_classes=["field-problem"])
        with gr.Accordion("Options: number of results, minimum score, order, dates, camera, photographer, source, "
                          "words",
                          open=False, elem_id="options") as options:
            options_problem = gr.Markdown(visible=False, elem_id="options-problem", elem_classes=["field-problem"])
            with gr.Row():
                k = gr.Slider(1, 100, value=12, step=1, label="Number of results", elem_id="k")
                min_score = gr.Slider(0, 1, value=0, step=0.01, label="Minimum score", elem_id="min-score",
                                      info="Cosine similarity; the range of each search is shown with its "
                                           "results. 0 = no minimum")
                photographer = gr.Dropdown(choices=[], value=None, filterable=True, allow_custom_value=True,
                                           label="Photographer", elem_id="photographer")
                source = gr.Dropdown(choices=[], value=None, filterable=True, allow_custom_value=True,
                                     label="Source", elem_id="source")
            with gr.Row():
                order = gr.Radio(list(ORDERS), value="best match", label="Order", elem_id="order",
                                 info="By date: the best matches, newest or oldest first")
                after = gr.Textbox("", label="Taken from", placeholder="2024-06 or 2024-06-01", elem_id="taken-after",
                                   max_lines=1)
                before = gr.Textbox("", label="Taken before", placeholder="2024-07", elem_id="taken-before", max_lines=1)
                camera = gr.Dropdown(choices=[], value="", filterable=True, allow_custom_value=True,
                                     label="Camera", elem_id="camera")
                collapse = gr.Checkbox(False, label="Near-identical photos as one result",
                                       info="The copies are counted under it (+2 similar)", elem_id="collapse")
            with gr.Row():
                contains = gr.Textbox("", label="Words in the photo's text", elem_id="contains", max_lines=1,
                                      placeholder="bakery, red door",
                                      info="Only photos whose description, captions, words read in them, tags "
                                           "or file name hold these (phrases apart by commas)")
                words = gr.Checkbox(True, label="Rank by words too", elem_id="words",
                                    info="A text search also ranks photos whose text holds its words, "
                                         "or whose description says the same in other words")

        # -- results ---------------------------------------------------------------
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(show_label=False, columns=6, height="auto", allow_preview=False, object_fit="cover",
                             elem_id="results")
        with gr.Row():
            more_button = gr.Button("More results", elem_id="more-results")
            speak_button = gr.Button("Read results aloud", elem_id="read-aloud")

        # -- the viewer: the selected result large, over the page ---------------------
        with gr.Column(visible=False, elem_id="viewer") as viewer:
            with gr.Row():
                prev_button = gr.Button("‹ Previous", elem_id="viewer-prev", size="sm")
                next_button = gr.Button("Next ›", elem_id="viewer-next", size="sm")
                like_button = gr.Button("More like this", variant="primary", elem_id="more-like-this", size="sm")
                why_button = gr.Button(WHY_THIS_MATCHED, elem_id="why-matched", size="sm")
                close_button = gr.Button("Close (Esc)", elem_id="viewer-close", size="sm")
            with gr.Row():
                with gr.Column(scale=3):
                    viewer_image = gr.Image(show_label=False, interactive=False, elem_id="viewer-image",
                                            container=False, buttons=[])
                with gr.Column(scale=2, min_width=260):
                    details_info = gr.HTML(elem_id="viewer-details")

        selected_id = gr.Textbox(visible=False, label="Selected id")
        viewer_index = gr.State(None)
        spoken = gr.Textbox(visible=False, label="Spoken summary")
        with gr.Accordion("Results as data", open=False):
            results = gr.JSON(label="Results")
        last_request = gr.State(None)

        # -- wiring: every function comes guarded from PageEndpoints ----------------------
        on = PageEndpoints(page)
        controls = [k, min_score, photographer, source, camera, after, before, order, collapse, contains,
                    words]  # ResultControls
        outputs = [gallery, status, results, last_request, spoken]
        problems = [search_problem, options_problem, options]
        # The progress and a refused search's mark go on the status line only: the photos stay.
        searching = {"show_progress_on": [status]}
        after_search = {"fn": on.close_viewer, "inputs": None, "outputs": [viewer, gallery, viewer_index],
                        "api_visibility": "private"}

        text_inputs = [query, without, *controls]
        text_search = [text_button.click, query.submit, without.submit]
        # The address becomes a link to the search as it starts, so a quick second search is in
        # the history (Back) even before its photos arrive.
        gr.on(text_search, None, [query, k], None, js=WRITE_LINK_JS, queue=False, **PRIVATE)
        gr.on(text_search, on.check_text, [query, *controls], problems, queue=False, **PRIVATE)
        gr.on(text_search, on.search_text, text_inputs, outputs, api_name="search_text", **searching).success(
            **after_search)
        examples.click(lambda sample: sample[0], examples, query, **PRIVATE).then(  # fills the box, then searches
            None, [query, k], None, js=WRITE_LINK_JS, queue=False, **PRIVATE).then(
            on.search_text, text_inputs, outputs, **searching, **PRIVATE).success(**after_search)
        image_button.click(on.check_image, [image, *controls], problems, queue=False, **PRIVATE)
        image_button.click(on.search_image, [image, *controls], outputs, api_name="search_image",
                           **searching).success(**after_search)
        tags_button.click(on.check_tags, [tags, *controls], problems, queue=False, **PRIVATE)
        tags_button.click(on.search_tags, [tags, tag_match, *controls], outputs, api_name="search_tags",
                          **searching).success(**after_search)
        combo_search = [combo_button.click, combo_text.submit]
        gr.on(combo_search, on.check_image_text, [combo_image, combo_text, *controls], problems, queue=False,
              **PRIVATE)
        gr.on(combo_search, on.search_image_text, [combo_image, combo_text, text_weight, *controls], outputs,
              api_name="search_image_text", **searching).success(**after_search)
        voice_button.click(on.check_voice, [audio, *controls], problems, queue=False, **PRIVATE)
        voice_button.click(on.search_voice, [audio, spoken_language, *controls], [transcript, *outputs],
                           api_name="search_voice", show_progress_on=[transcript, status]).success(**after_search)
        transcript.submit(on.check_text, [transcript, *controls], problems, queue=False, **PRIVATE)
        transcript.submit(on.search_text, [transcript, gr.State(""), *controls], outputs,
                          api_name="search_transcript", **searching).success(**after_search)
        like_button.click(on.more_like_this, [selected_id, *controls], outputs,
                          api_name="more_like_this").success(**after_search)
        more_button.click(on.more_results, [last_request], outputs, api_name="more_results")
        # Changing a result control re-runs the current search.
        control_changes = [k.release, min_score.release, photographer.input, source.input, camera.input, order.input,
                           after.submit, before.submit, collapse.input, contains.submit, words.input]
        gr.on(control_changes, on.check_controls, controls, problems, queue=False, **PRIVATE)
        gr.on(control_changes, on.rerun, [last_request, *controls], outputs, trigger_mode="always_last", **searching,
              **PRIVATE).success(**after_search)

        viewer_outputs = [viewer_image, details_info, selected_id, viewer_index, viewer]
        gr.on([map_tab.select, colour_by.input, map_button.click], on.map_html, [colour_by, results],
              collection_map, **PRIVATE)
        map_open.click(on.open_from_map, map_pick, viewer_outputs, **PRIVATE)
        # 1-6 s of work: the button says so and waits, and comes back however the work ended.
        why_button.click(lambda: gr.Button(WORKING_OUT_WHY, interactive=False), None, why_button, queue=False,
                         **PRIVATE).then(
            on.why_this_matched, [selected_id, last_request], viewer_image, api_name="why_this_matched").then(
            lambda: gr.Button(WHY_THIS_MATCHED, interactive=True), None, why_button, queue=False, **PRIVATE)
        gallery.select(on.details, [results], viewer_outputs, **PRIVATE)
        prev_button.click(on.show_previous, [results, viewer_index], viewer_outputs, **PRIVATE)
        next_button.click(on.show_next, [results, viewer_index], viewer_outputs, **PRIVATE)
        close_button.click(on.hide_viewer, None, viewer, **PRIVATE)
        speak_button.click(None, [spoken], None, js=READ_ALOUD_JS)

        # One progress bar, over the summary; the small updates around it show none.
        uploads.change(on.describe_uploads, uploads, chosen, show_progress="hidden", **PRIVATE)
        add_button.click(on.add_photos, [uploads, metadata_file, find_regions, read_words, write_captions, by_meaning],
                         [add_summary, collection, tags, photographer, source, camera], api_name="add_photos",
                         show_progress_on=[add_summary]).success(
            lambda: (None, None, ""), None, [uploads, metadata_file, chosen], show_progress="hidden", **PRIVATE
        ).then(None, js=SHOW_ADD_SUMMARY, **PRIVATE)  # once the cleared form is laid out: what was added, in view
        add_summary.change(None, js=SHOW_ADD_SUMMARY, **PRIVATE)  # a refusal too, which clears nothing

        app.load(on.facet_updates, None, [tags, photographer, source, camera], **PRIVATE)
        app.load(on.speech_model, None, speech_model, **PRIVATE)
        app.load(on.search_model, None, [model_note, min_score], **PRIVATE)
        if loading is not None:  # until the model is in: the notice says so, then what loading left to say
            loading_timer = gr.Timer(1.0, active=not loading.done)
            loading_timer.tick(on.loading_update, None, [notice_box, model_note, min_score, loading_timer],
                               **PRIVATE)
        # A shared link (?q=...&k=...) runs its search when the page opens.
        app.load(on.from_link, [without, *controls], [query, k, *outputs], **PRIVATE).success(**after_search)
    return app


def main() -> None:
    serve(build_app)


if __name__ == "__main__":
    main()
