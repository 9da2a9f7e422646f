"""The page's stylesheet and scripts (kept apart from the layout in ``app.py``)."""

CSS = """
/* Results first: a compact search bar, the grid taking the page, the page (not a box) scrolling. */
#title h2 { margin: 0; }
#search-bar { align-items: stretch; }
#results .grid-wrap { max-height: none !important; height: auto !important; overflow: visible !important; }
#results .caption-label {
  white-space: normal !important; overflow: hidden; text-overflow: clip; max-width: calc(100% - 8px);
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; line-height: 1.25;
}
#results .thumbnail-item:hover .caption-label, #results .thumbnail-item:focus .caption-label {
  -webkit-line-clamp: unset; display: block;
}
@media (max-width: 1100px) { #results .grid-container { --grid-cols: 4 !important; } }
@media (max-width: 640px) { #results .grid-container { --grid-cols: 2 !important; } }
/* Above the results, only what a search needs, tightly: two rows of photos fit the first screen. */
#title, #notice, #model-note { margin: 0 !important; }
#modes button[role="tab"] { padding-top: 4px; padding-bottom: 4px; }
#options > button span { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
@media (max-width: 640px) {
  #title { display: none !important; }  /* the browser's tab names the page; the photos need the room */
  #search-bar .block, #without-box .block { padding: 6px !important; }
  .gradio-container .column, .gradio-container .gap { gap: 8px !important; }
  /* The query box the bar's whole width; "without" and the button below it. */
  #search-bar { flex-wrap: wrap !important; flex-direction: row !important; gap: 6px; }
  #search-bar > .form:first-child { flex: 1 1 100% !important; min-width: 100% !important; }
  #without-box { flex: 1 1 0 !important; min-width: 0 !important; }
  #text-search { flex: 0 0 90px !important; min-width: 90px !important; }
  #examples > .label, #examples label, #examples .label { display: none !important; }
  #examples .gallery { flex-wrap: nowrap; overflow-x: auto; }
  #examples .gallery > * { flex: 0 0 auto; }
  #model-note { font-size: 0.75em; }
}

/* The viewer: the selected photo large, over the page, with its details beside or below it. */
#viewer {
  position: fixed !important; inset: 0; z-index: 1000; margin: 0 !important; padding: 12px;
  background: #111 !important; overflow-y: auto; border-radius: 0; border: none !important;
}
#viewer #viewer-image img { width: 100%; height: auto; max-height: 78vh; object-fit: contain; }
#viewer #viewer-image, #viewer #viewer-image * { background: transparent !important; border: none !important; }
#viewer .photo-details, #viewer .photo-details h3, #viewer .photo-details td, #viewer .viewer-position {
  color: #eee !important; background: transparent !important;
}
#viewer .photo-details th { color: #aaa !important; background: transparent !important; }
#viewer .photo-details a { color: #8cf !important; }
@media (max-width: 640px) { #viewer #viewer-image img { max-height: 52vh; } }

.photo-details table { border-collapse: collapse; width: 100%; table-layout: fixed; }
.photo-details td { overflow-wrap: anywhere; }
.photo-details th { text-align: left; padding-right: 1em; vertical-align: top; width: 8em; }
#status { overflow-wrap: anywhere; }
/* A mistake, said next to the field it is in. */
.field-problem, .field-problem p { color: #b42318 !important; font-weight: 600; margin: 2px 0 !important; }
/* A search refused for a mistake leaves the status line as it was (the mistake is said by its field). */
#status [data-testid="status-tracker"]:has(> .error) { display: none !important; }
#model-note { font-size: 0.85em; opacity: 0.75; overflow-wrap: anywhere; }

/* The map: thumbnails framed in their colour; the results ringed, the others faded. */
.offscreen { position: absolute !important; left: -10000px !important; width: 1px !important; height: 1px !important; overflow: hidden !important; }
.collection-map { width: 100%; max-width: 1000px; height: auto; background: #fafafa; border-radius: 8px; }
.collection-map .map-photo { cursor: pointer; }
.collection-map .map-photo:hover image, .collection-map .map-photo:focus image { opacity: 1; }
.collection-map .map-dim { opacity: 0.35; }
.collection-map .map-hit rect { stroke: #111; stroke-width: 5; }
.collection-map .map-photo:hover { opacity: 1; }
.map-legend { font-size: 0.85em; margin: 0.25em 0 0.5em; }
.map-key { margin-right: 0.8em; white-space: nowrap; }
.map-key i { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.25em; vertical-align: middle; }
.map-note { font-size: 0.85em; opacity: 0.8; }

/* Add photos: a count and size instead of one row per chosen file. */
#uploads table, #uploads .file-preview-holder { display: none !important; }
/* On a phone a file box's label wraps over the top of the box: its drop prompt starts below it. */
@media (max-width: 640px) { #uploads, #metadata-file { padding-top: 2.8em !important; } }
"""

# Arrow keys and Esc drive the viewer; browser back returns to the previous search.
HEAD = """
<script>
document.addEventListener("keydown", (event) => {
  const viewer = document.getElementById("viewer");
  if (!viewer || viewer.getClientRects().length === 0) return;
  const target = {ArrowLeft: "viewer-prev", ArrowRight: "viewer-next", Escape: "viewer-close"}[event.key];
  if (!target) return;
  const button = document.getElementById(target);
  if (button) { event.preventDefault(); button.click(); }
});
window.addEventListener("popstate", () => window.location.reload());
// A number typed into a slider's box applies on Enter: Gradio's slider takes it when the box
// loses focus (its "release"), which Enter alone never does.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.matches && event.target.matches("#k input[type=number], #min-score input[type=number]")) {
    event.preventDefault();
    event.target.blur();
  }
});
// A photo picked on the map opens in the viewer (the map is drawn as HTML, outside Gradio's events).
document.addEventListener("click", (event) => {
  const photo = event.target.closest && event.target.closest("[data-map-id]");
  if (!photo) return;
  const box = document.querySelector("#map-pick textarea, #map-pick input");
  const open = document.getElementById("map-open");
  if (!box || !open) return;
  box.value = photo.dataset.mapId;
  box.dispatchEvent(new Event("input", {bubbles: true}));
  setTimeout(() => open.click(), 50);
});
</script>
"""

# As a text search starts the address becomes a link to it (?q=...&k=...); opening such a link runs it.
WRITE_LINK_JS = """(query, k) => {
  const url = new URL(window.location.href);
  if ((query || "").trim() && query.length <= 1500 && (url.searchParams.get("q") !== query || url.searchParams.get("k") !== String(k))) {
    url.searchParams.set("q", query);
    url.searchParams.set("k", String(k));
    window.history.pushState(null, "", url);
  }
  return [];
}"""

READ_ALOUD_JS = """(text) => {
  const synth = window.speechSynthesis;
  if (!synth) { alert("This browser can't read text aloud."); return; }
  synth.cancel();
  synth.speak(new SpeechSynthesisUtterance(text || "Search first; then the results can be read aloud."));
}"""

# After photos are added, what happened is shown, however far down the page the button sat (on a
# phone the checkboxes above it push the summary below the screen).
SHOW_ADD_SUMMARY = """() => {
  // Once the form is laid out again (its height changes when it is cleared), not before.
  setTimeout(() => {
    const summary = document.getElementById("add-summary");
    if (summary) summary.scrollIntoView({block: "nearest"});
  }, 200);
}"""
