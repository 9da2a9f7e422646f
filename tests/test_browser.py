"""End to end in a real headless Chromium: what a person does in the page.

Needs Debian's ``chromium`` (installed by ``.ci/run``) and the ``playwright``
package; Playwright drives that browser, so no browser download is needed.
Screenshots go to ``artifacts/browser/`` (not committed).
"""

from __future__ import annotations

import json
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
    from app import build_app, launch

    paths = write_photos(tmp_path / "photos", 6)
    rows = [{"filename": p.name, "description": f"photo number {i}", "photographer": "Ana Lima",
             "url": f"https://example.org/photos/{i}"} for i, p in enumerate(paths)]
    (tmp_path / "photos.json").write_text(json.dumps(rows))
    engine.index([tmp_path / "photos"], metadata_file=tmp_path / "photos.json")
    app = launch(build_app(engine, notice="Welcome notice"), engine, server_name="127.0.0.1",
                 server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield app.local_url
    finally:
        app.close()


@pytest.fixture
def page(page_url):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed: run `apt-get install chromium` (see .ci/run)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.add_init_script(CAPTURE_SPEECH)
        page.set_default_timeout(30_000)
        page.goto(page_url)
        try:
            yield page
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "last-page.png"), full_page=True)
            browser.close()


def gallery_images(page):
    return page.locator("#results img")


def test_search_details_more_like_this_and_read_aloud(page):
    from playwright.sync_api import expect

    expect(page.locator("#notice")).to_contain_text("Welcome notice")
    page.locator("#text-query textarea").fill("a photo")
    page.locator("#text-query textarea").press("Enter")
    expect(page.locator("#status")).to_contain_text("Showing 6 photos")
    expect(gallery_images(page)).to_have_count(6)
    expect(page.locator("#results")).to_contain_text("by Ana Lima")
    page.screenshot(path=str(_artifact("search.png")), full_page=True)

    page.locator("#read-aloud").click()
    page.wait_for_function("window.__spoken.length > 0")
    spoken = page.evaluate("window.__spoken[0]")
    assert spoken.startswith("6 photos found. Result 1: photo number")

    gallery_images(page).first.click()
    details = page.locator("#details")
    expect(details).to_be_visible()
    expect(details.locator("a", has_text="Open the source page")).to_have_attribute(
        "href", re.compile(r"^https://example\.org/photos/\d$"))
    expect(details.locator("img")).to_be_visible()
    page.screenshot(path=str(_artifact("details.png")), full_page=True)

    page.locator("#more-like-this").click()
    expect(page.locator("#status")).to_contain_text("like the selected one")
    expect(gallery_images(page)).to_have_count(5)  # every photo but the selected one


def test_adding_a_photo_grows_the_collection(page, tmp_path):
    from playwright.sync_api import expect

    new_photo = write_photos(tmp_path / "upload", 1, start=77)[0]
    page.get_by_role("tab", name="Add photos").click()
    expect(page.locator("#collection-info")).to_contain_text("6 photos")
    page.locator("#uploads input[type=file]").set_input_files(str(new_photo))
    page.locator("#add-button").click()
    expect(page.locator("#add-summary")).to_contain_text("Added 1")
    expect(page.locator("#collection-info")).to_contain_text("7 photos")
    page.screenshot(path=str(_artifact("added.png")), full_page=True)


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
