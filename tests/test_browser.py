"""End to end in a real headless Chromium: what a person does in the page.

Needs Debian's ``chromium`` (installed by ``.ci/run``) and the ``playwright``
package; Playwright drives that browser, so no browser download is needed.
Screenshots go to ``artifacts/browser/`` (not committed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from photos import write_photos

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Record what the page asks the browser to say instead of playing it.
CAPTURE_SPEECH = """
window.__spoken = [];
if (window.speechSynthesis) {
  window.speechSynthesis.speak = (utterance) => window.__spoken.push(utterance.text);
}
"""


@pytest.fixture
def page_url(engine, tmp_path):
    from app import build_app
    from retrieval.ui.startup import launch

    paths = write_photos(tmp_path / "photos", 6)
    rows = [{"filename": p.name, "description": f"photo number {i}", "photographer": "Ana Lima",
             "url": f"https://example.org/photos/{i}"} for i, p in enumerate(paths)]
    (tmp_path / "photos.json").write_text(json.dumps(rows))
    for i, path in enumerate(paths):  # taken (by the file's time) a day apart, photo 0 first
        os.utime(path, (1_699_963_200 + i * 86_400,) * 2)  # noon (UTC) on 14 November 2023, and on
    engine.index([tmp_path / "photos"], metadata_file=tmp_path / "photos.json")
    app = launch(build_app(engine, notice="Welcome notice"), engine, server_name="127.0.0.1",
                 server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield app.local_url
    finally:
        app.close()


VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=list(VIEWPORTS))
def page(page_url, request):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM, "chromium is not installed: run `apt-get install chromium` (see .ci/run)"
    # The page's answers arrive within a second idle; on 2 cores shared with the rest of the suite a
    # search has taken over 5 s (expect's default), so assertions wait as long as actions do.
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORTS[request.param])
        page.add_init_script(CAPTURE_SPEECH)
        page.set_default_timeout(30_000)
        page.goto(page_url)
        page.viewport_name = request.param
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"last-page-{request.param}.png"), full_page=True)
            browser.close()


def gallery_images(page):
    return page.locator("#results img")


def in_viewport(page, locator) -> bool:
    """Whether the element's box overlaps the visible part of the page."""
    box = locator.bounding_box()
    size = page.viewport_size
    return bool(box) and box["y"] < size["height"] and box["y"] + box["height"] > 0 \
        and box["x"] < size["width"] and box["x"] + box["width"] > 0


def shot(page, name: str) -> None:
    page.screenshot(path=str(_artifact(f"{name}-{page.viewport_name}.png")))


def search(page, text: str) -> None:
    box = page.locator("#text-query textarea")
    box.fill(text)
    box.press("Enter")


def open_tab(page, name: str) -> None:
    """Narrow screens fold the last tabs into a "More tabs" menu."""
    page.get_by_role("tab", name="Text", exact=True).wait_for()
    tab = page.get_by_role("tab", name=name, exact=True)
    if not tab.is_visible():
        page.get_by_role("button", name="More tabs").click()
        tab = page.locator(".overflow-dropdown button", has_text=re.compile(f"^{re.escape(name)}$"))
    tab.first.click()


def captions(page) -> list[str]:
    return page.locator("#results .caption-label").all_inner_texts()


def test_search_details_more_like_this_and_read_aloud(page):
    from playwright.sync_api import expect

    expect(page.locator("#notice")).to_contain_text("Welcome notice")
    expect(page.locator("#model-note")).to_contain_text("the search model")  # which languages it reads
    search(page, "a photo")
    expect(page.locator("#status")).to_contain_text("Showing 6 photos")
    expect(gallery_images(page)).to_have_count(6)
    expect(page.locator("#results")).to_contain_text("by Ana Lima")
    assert in_viewport(page, gallery_images(page).first), "the first row of results is below the fold"
    assert page.locator("#results .grid-wrap").evaluate(  # the page scrolls, not a box inside it
        "e => e.scrollHeight <= e.clientHeight + 1 && getComputedStyle(e).overflowY !== 'auto'")
    for label in page.locator("#results .caption-label").all():  # the score leads every caption, no hover
        assert label.is_visible() and re.match(r"^-?\d\.\d{3} · by Ana Lima", label.inner_text())
    shot(page, "search")

    page.locator("#read-aloud").click()
    page.wait_for_function("window.__spoken.length > 0")
    spoken = page.evaluate("window.__spoken[0]")
    assert spoken.startswith("6 photos found. Result 1: photo number") and ".." not in spoken

    titles = [text.split(" · ")[-1] for text in captions(page)]
    gallery_images(page).nth(2).click()  # result 3
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("#viewer-details")).to_contain_text("3 of 6")
    expect(viewer.locator("#viewer-details h3")).to_have_text(titles[2])
    assert in_viewport(page, viewer.locator("#viewer-image img"))
    expect(viewer.locator("a", has_text="Open the source page")).to_have_attribute(
        "href", re.compile(r"^https://example\.org/photos/\d$"))
    shot(page, "viewer")
    page.locator("#viewer-next").click()
    expect(viewer.locator("#viewer-details h3")).to_have_text(titles[3])
    page.keyboard.press("ArrowLeft")
    expect(viewer.locator("#viewer-details")).to_contain_text("3 of 6")
    page.keyboard.press("ArrowRight")
    expect(viewer.locator("#viewer-details")).to_contain_text("4 of 6")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    gallery_images(page).nth(0).click()
    page.locator("#more-like-this").click()  # a new search from inside the viewer
    expect(page.locator("#status")).to_contain_text("like the selected one")
    expect(viewer).to_be_hidden()
    expect(gallery_images(page)).to_have_count(5)  # every photo but the selected one
    new_titles = [text.split(" · ")[-1] for text in captions(page)]
    gallery_images(page).nth(0).click()
    expect(viewer.locator("#viewer-details h3")).to_have_text(new_titles[0])
    expect(viewer.locator("#viewer-details")).to_contain_text("1 of 5")


def test_controls_rerun_the_search_and_the_address_keeps_it(page, page_url):
    from playwright.sync_api import expect

    search(page, "a photo")
    expect(page.locator("#status")).to_contain_text("Showing 6 photos")
    page.wait_for_url(re.compile(r"\?q=a\+photo&k=12$"))
    scores = sorted(float(text.split(" · ")[0]) for text in captions(page))
    page.locator("#options").get_by_text("Options").first.click()
    cut = max(round((scores[2] + scores[3]) / 2, 2), 0.2)  # about the best half (none, for negative scores)
    page.locator("#min-score input[type=range]").wait_for()
    expect(page.locator("#min-score")).to_contain_text("good text matches score from about")
    page.wait_for_timeout(500)  # the options panel has finished opening
    track = page.locator("#min-score input[type=range]").bounding_box()  # click the slider there
    page.mouse.click(track["x"] + track["width"] * cut, track["y"] + track["height"] / 2)
    cut = float(page.locator("#min-score input[type=number]").input_value())
    expect(page.locator("#status")).not_to_contain_text("Showing 6 photos", timeout=15_000)
    kept = [float(text.split(" · ")[0]) for text in captions(page)]
    assert len(kept) < 6 and all(score >= cut for score in kept)
    shot(page, "min-score")

    page.evaluate("""() => {  // when the address was written, and when the results came
        window.__pushedAt = null; window.__resultsAt = null;
        const push = history.pushState.bind(history);
        history.pushState = (...args) => { window.__pushedAt ??= performance.now(); return push(...args); };
        new MutationObserver(() => { if (document.querySelector('#status').innerText.includes('another photo'))
            window.__resultsAt ??= performance.now(); })
            .observe(document.querySelector('#status'), {childList: true, subtree: true, characterData: true});
    }""")
    search(page, "another photo")
    expect(page.locator("#status")).to_contain_text("another photo")
    page.wait_for_url(re.compile(r"\?q=another\+photo&k=12$"))
    pushed, arrived = page.evaluate("[window.__pushedAt, window.__resultsAt]")
    assert pushed is not None and arrived is not None and pushed < arrived, "the address waited for the results"
    page.go_back()  # the previous search comes back
    expect(page.locator("#status")).to_contain_text("“a photo”")

    page.goto(page_url + "?q=a+shared+link&k=3")  # a link runs its search
    expect(page.locator("#status")).to_contain_text("Showing 3 photos for “a shared link”")
    expect(gallery_images(page)).to_have_count(3)


def test_two_rows_of_results_fit_the_first_screen_and_every_search_mode_is_one_tap_away(page):
    from playwright.sync_api import expect

    for name in ("Text", "Image", "Tags", "Image + Text", "Voice", "Add photos", "Map"):  # none behind a menu
        expect(page.get_by_role("tab", name=name, exact=True)).to_be_visible()
    query = page.locator("#text-query textarea").bounding_box()
    assert query["width"] >= 0.8 * page.viewport_size["width"] - 40 or page.viewport_name == "desktop"
    search(page, "a photo")
    expect(page.locator("#status")).to_contain_text("Showing 6 photos")
    first = gallery_images(page).first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first.element_handle())
    page.evaluate("window.scrollTo(0, 0)")
    boxes = [gallery_images(page).nth(n).bounding_box() for n in range(6)]
    tops = sorted({round(b["y"]) for b in boxes})
    row = (tops[1] - tops[0]) if len(tops) > 1 else boxes[0]["height"] + 8
    assert tops[0] + 2 * row <= page.viewport_size["height"], (tops, row)  # two rows inside the first screen
    shot(page, "first-screen")


def test_a_mistake_is_said_by_its_field_and_the_results_stay(page):
    from playwright.sync_api import expect

    status = page.locator("#status")
    search(page, "a photo")
    expect(status).to_contain_text("Showing 6 photos for “a photo”")
    search(page, "   ")  # nothing to search for
    problem = page.locator("#search-problem")
    expect(problem).to_contain_text("Type a few words describing the photo")
    assert in_viewport(page, problem)
    expect(gallery_images(page)).to_have_count(6)
    expect(status).to_contain_text("Showing 6 photos for “a photo”")
    expect(page.locator("#results").get_by_text("Error")).to_have_count(0)
    expect(page.locator("#status .error")).to_be_hidden()  # the status line still says what is shown
    shot(page, "empty-query")

    page.locator("#options").get_by_text("Options").first.click()
    page.wait_for_timeout(500)  # the options panel has finished opening
    after = page.locator("#taken-after input, #taken-after textarea").first
    after.fill("yesterday")
    after.press("Enter")
    options_problem = page.locator("#options-problem")
    expect(options_problem).to_contain_text("'yesterday' is not a date")
    expect(problem).to_be_hidden()
    expect(gallery_images(page)).to_have_count(6)
    shot(page, "bad-date")
    after.fill("")
    search(page, "a photo")  # put right, the messages go
    expect(options_problem).to_be_hidden()
    expect(status).to_contain_text("Showing 6 photos for “a photo”")


def test_a_number_typed_in_the_options_applies_on_enter(page):
    from playwright.sync_api import expect

    search(page, "a photo")
    expect(gallery_images(page)).to_have_count(6)
    page.locator("#options").get_by_text("Options").first.click()
    page.wait_for_timeout(500)  # the options panel has finished opening
    number = page.locator("#k input[type=number]")
    number.fill("3")
    number.press("Enter")
    expect(gallery_images(page)).to_have_count(3)
    expect(page.locator("#status")).to_contain_text("Showing 3 photos")


def test_the_tags_box_says_what_to_type(page):
    from playwright.sync_api import expect

    open_tab(page, "Tags")
    hint = page.locator("#tags").get_by_text("No photo has tags yet")  # this collection's table has none
    expect(hint).to_be_visible()
    assert in_viewport(page, hint)
    shot(page, "tags")


def test_enter_in_without_and_the_examples_search(page):
    from playwright.sync_api import expect

    page.locator("#text-query textarea").fill("a photo")
    page.locator("#text-without input, #text-without textarea").first.fill("people")
    page.locator("#text-without input, #text-without textarea").first.press("Enter")
    expect(page.locator("#status")).to_contain_text("Showing 6 photos for “a photo”")
    page.locator("#examples").get_by_text("a rocket launch").click()
    expect(page.locator("#status")).to_contain_text("“a rocket launch”")
    expect(page.locator("#text-query textarea")).to_have_value("a rocket launch")


def test_bad_and_huge_input_keep_the_page_usable(page, tmp_path):
    from playwright.sync_api import expect

    search(page, "a very long description of a photo " * 600)  # about 20,000 characters
    expect(page.locator("#status")).to_contain_text("shortened")
    expect(gallery_images(page)).to_have_count(6)
    assert in_viewport(page, gallery_images(page).first)
    assert len(page.locator("#status").inner_text()) < 300
    shot(page, "long-query")

    notes = tmp_path / "notes.png"
    notes.write_text("not a picture at all")
    open_tab(page, "Image")
    page.locator("#image-query input[type=file]").set_input_files(str(notes))
    page.locator("#image-search").click()
    expect(page.get_by_text("The query image can't be used (not an image)").first).to_be_visible()
    shot(page, "not-an-image")


def test_adding_photos_grows_the_collection(page, tmp_path):
    from playwright.sync_api import expect

    new_photos = write_photos(tmp_path / "upload", 12, start=77)
    open_tab(page, "Add photos")
    expect(page.locator("#collection-info")).to_contain_text("6 photos")
    page.locator("#uploads input[type=file]").set_input_files([str(p) for p in new_photos])
    expect(page.locator("#chosen")).to_contain_text("12 files chosen")
    page.locator("#add-button").click()
    busy = page.locator("[data-testid=status-tracker]:not(.hide)")  # progress drawn over a component
    most = 0
    while "Added" not in page.locator("#add-summary").inner_text():
        if busy.count() > most:
            most = busy.count()
            where = busy.evaluate_all("els => els.map(e => e.parentElement.id || e.parentElement.className)")
        page.wait_for_timeout(20)
    assert most <= 1, f"progress was drawn in {most} places at once: {where}"
    expect(page.locator("#add-summary")).to_contain_text("Added 12")
    expect(page.locator("#collection-info")).to_contain_text("18 photos")
    for _ in range(100):  # the page brings the summary into view once it is written
        if in_viewport(page, page.locator("#add-summary")):
            break
        page.wait_for_timeout(100)
    assert in_viewport(page, page.locator("#add-summary"))
    expect(page.locator("#chosen")).to_have_text("")  # cleared for the next batch
    shot(page, "added")


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def test_dates_order_and_the_map(page):
    from playwright.sync_api import expect

    search(page, "a photo")
    expect(page.locator("#status")).to_contain_text("Showing 6 photos")
    page.locator("#options").get_by_text("Options").first.click()
    page.wait_for_timeout(500)  # the options panel has finished opening
    page.locator("#order").get_by_text("oldest first", exact=True).click()
    expect(page.locator("#results .caption-label").first).to_contain_text("photo number 0")
    assert [text.split(" · ")[-1] for text in captions(page)] == [f"photo number {i}" for i in range(6)]
    page.locator("#order").get_by_text("newest first", exact=True).click()
    expect(page.locator("#results .caption-label").first).to_contain_text("photo number 5")
    before = page.locator("#taken-before input, #taken-before textarea").first
    before.fill("2023-11-16")  # photos 0 and 1 were taken on 14 and 15 November 2023
    before.press("Enter")
    expect(gallery_images(page)).to_have_count(2)
    assert [text.split(" · ")[-1] for text in captions(page)] == ["photo number 1", "photo number 0"]
    shot(page, "dates")
    before.fill("November")
    before.press("Enter")
    expect(page.get_by_text("is not a date").first).to_be_visible()
    before.fill("")
    before.press("Enter")
    expect(gallery_images(page)).to_have_count(6)

    open_tab(page, "Map")
    photos = page.locator(".collection-map [data-map-id]")
    expect(photos).to_have_count(6)
    expect(page.locator(".map-note")).to_contain_text("6 photos laid out by PCA")
    expect(page.locator(".collection-map .map-hit")).to_have_count(6)  # the search's results are ringed
    page.locator("#map-colour input").click()
    page.get_by_role("option", name="photographer").click()
    expect(page.locator(".map-legend")).to_contain_text("Ana Lima")
    picked = photos.last.get_attribute("data-map-id")
    photos.last.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("#viewer-details")).to_contain_text(picked)
    expect(viewer.locator("#viewer-details")).to_contain_text("taken")
    shot(page, "map-viewer")
    before = viewer.locator("#viewer-image img").get_attribute("src")
    page.evaluate("""() => {  // every label the button shows, however briefly
        const button = document.querySelector('#why-matched');
        window.__whyLabels = [];
        new MutationObserver(() => window.__whyLabels.push([button.innerText.trim(), button.disabled]))
            .observe(button, {childList: true, subtree: true, characterData: true, attributes: true});
    }""")
    page.locator("#why-matched").click()  # the heat map of the last search ("a photo") over this photo
    expect(viewer.locator("#viewer-image img")).not_to_have_attribute("src", before or "")
    expect(page.locator("#why-matched")).to_have_text("Why this matched")  # back when the work is done
    expect(page.locator("#why-matched")).to_be_enabled()
    assert ["Working out why…", True] in page.evaluate("window.__whyLabels"), "no sign of the work going on"
    shot(page, "why-this-matched")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    shot(page, "map")


def test_a_region_match_is_boxed_in_the_gallery_and_the_viewer(page, tmp_path):
    from playwright.sync_api import expect

    from test_region_search import small_picture, write_collection

    scenes = write_collection(tmp_path / "scenes")
    small_picture().save(tmp_path / "query.png")
    open_tab(page, "Add photos")
    page.locator("#uploads input[type=file]").set_input_files([str(p) for p in scenes.values()])
    page.locator("#find-regions input").check()
    page.locator("#add-button").click()
    expect(page.locator("#add-summary")).to_contain_text("regions found", timeout=120_000)
    open_tab(page, "Image")
    page.locator("#image-query input[type=file]").set_input_files(str(tmp_path / "query.png"))
    page.locator("#image-search").click()
    expect(page.locator("#results .caption-label").first).to_contain_text("matched in the box")
    first = gallery_images(page).first
    first.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first.element_handle())
    assert "/boxed/" in (first.get_attribute("src") or "")
    shot(page, "region-results")
    gallery_images(page).first.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("#viewer-details")).to_contain_text("matched region")
    expect(viewer.locator("#viewer-details")).to_contain_text("whole photo's score")
    picture = viewer.locator("#viewer-image img")
    assert "/boxed/" in (picture.get_attribute("src") or "")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert picture.evaluate("img => img.naturalWidth") == 640  # the photo at its own size, not the thumbnail's
    shot(page, "region-viewer")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_page_says_the_model_is_loading_then_what_it_reads(settings, tmp_path, viewport):
    """The model's load is held by the engine's own lock, as a slow load holds it."""
    from playwright.sync_api import expect, sync_playwright

    from app import build_app
    from retrieval.engine import Engine
    from retrieval.ui.loading import ModelLoading
    from retrieval.ui.media import MediaFolder
    from retrieval.ui.startup import launch, prepare_collection

    Engine(settings).index([write_photos(tmp_path / "photos", 3)[0].parent])
    engine = Engine(settings)
    media = MediaFolder(settings.media_folder, settings.max_image_pixels)
    engine._load_lock.acquire()
    loading = ModelLoading(lambda: prepare_collection(engine, media)).start()
    app = launch(build_app(engine, media, loading=loading), engine, server_name="127.0.0.1", server_port=None,
                 prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORTS[viewport])
            page.set_default_timeout(30_000)
            page.goto(app.local_url)
            page.viewport_name = viewport
            expect(page.locator("#notice")).to_contain_text("Loading the search model")
            expect(page.locator("#model-note")).to_contain_text("Loading the search model")
            shot(page, "model-loading")
            engine._load_lock.release()
            expect(page.locator("#notice")).to_be_hidden(timeout=20_000)
            expect(page.locator("#model-note")).to_contain_text("Type in English")
            shot(page, "model-loaded")
            browser.close()
    finally:
        if engine._load_lock._is_owned():
            engine._load_lock.release()
        app.close()
