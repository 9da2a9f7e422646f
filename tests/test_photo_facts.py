"""Photo facts: capture time, camera and place read at indexing; date, camera and place
filters; date sorting; facts added to a collection indexed before they were read."""

from __future__ import annotations

import json
import os
from datetime import datetime

import numpy as np
import pytest

from cli_runs import run_in_process
from exif_photos import write_exif_photo
from photos import write_photos
from retrieval.engine import Engine
from retrieval.errors import RetrievalError
from retrieval.search.fact_filters import Place, date_range, distance_km, parse_date
from retrieval.photos.facts import FACTS_FIELDS, wall_clock_seconds
from retrieval.search.searcher import QueryTerm, SearchRequest

EIFFEL = (48.8584, 2.2945, 35.0)
LOUVRE = (48.8606, 2.3376, 40.0)  # 3.2 km from the tower
SYDNEY = (-33.8568, 151.2153, -4.5)  # south and east; below sea level for the test
LIMA = (-12.0464, -77.0428, 150.0)  # south and west


@pytest.fixture
def library(tmp_path):
    """Photos with known facts, and one without EXIF (its file time is set)."""
    folder = tmp_path / "library"
    photos = {
        "paris_tower.jpg": dict(taken="2024:06:01 14:03:07", offset="+02:00", make="Canon", model="Canon EOS R5",
                                lens="RF24-105mm F4 L IS USM", focal=50, gps=EIFFEL),
        "paris_museum.jpg": dict(taken="2024:06:02 09:30:00", offset="+02:00", make="Canon", model="Canon EOS R5",
                                 gps=LOUVRE),
        "sydney.png": dict(taken="2023:12:31 23:59:59", offset="+11:00", make="NIKON CORPORATION",
                           model="NIKON Z 6", gps=SYDNEY),
        "lima.jpg": dict(taken="2019:03:15 08:00:00", offset="-05:00", make="Apple", model="iPhone 12", gps=LIMA),
        "no_offset.jpg": dict(taken="2024:06:30 23:00:00", make="FUJIFILM", model="X-T4"),
    }
    for number, (name, facts) in enumerate(photos.items()):
        write_exif_photo(folder / name, number, **facts)
    plain = write_photos(folder, 1, start=50)[0]
    moment = datetime(2021, 2, 3, 4, 5, 6).timestamp()
    os.utime(plain, (moment, moment))
    return folder


def by_name(engine: Engine) -> dict[str, dict]:
    return {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}


def test_facts_are_read_when_indexing(clip_settings, library):
    engine = Engine(clip_settings)
    engine.index([library])
    facts = by_name(engine)
    tower = facts["paris_tower.jpg"]
    assert tower["taken"] == "2024-06-01 14:03:07 +02:00"
    assert tower["taken_utc"] == "2024-06-01T12:03:07Z"
    assert tower["taken_at"] == wall_clock_seconds(datetime(2024, 6, 1, 14, 3, 7))
    assert tower["taken_from"] == "exif"
    assert (tower["camera_make"], tower["camera_model"], tower["camera"]) == ("Canon", "Canon EOS R5", "Canon EOS R5")
    assert tower["lens"] == "RF24-105mm F4 L IS USM" and tower["focal_length_mm"] == 50
    assert tower["gps_lat"] == pytest.approx(EIFFEL[0], abs=1e-5)
    assert tower["gps_lon"] == pytest.approx(EIFFEL[1], abs=1e-5)
    assert tower["gps_alt"] == pytest.approx(35.0)
    sydney, lima = facts["sydney.png"], facts["lima.jpg"]
    assert sydney["gps_lat"] < 0 < sydney["gps_lon"] and sydney["gps_alt"] == pytest.approx(-4.5)
    assert lima["gps_lat"] < 0 and lima["gps_lon"] < 0
    assert lima["taken_utc"] == "2019-03-15T13:00:00Z"  # 08:00 at -05:00
    assert sydney["camera"] == "NIKON Z 6"  # the make's first word is not repeated
    assert facts["no_offset.jpg"]["taken"] == "2024-06-30 23:00:00" and "taken_utc" not in facts["no_offset.jpg"]
    plain = facts["photo_0050.jpg"]
    assert plain["taken_from"] == "file time"
    assert plain["taken"] == "2021-02-03 04:05:06"
    assert not {"camera", "gps_lat", "lens"} & set(plain)


def test_malformed_exif_gives_no_facts_and_never_fails_the_photo(clip_settings, tmp_path):
    folder = tmp_path / "odd"
    write_exif_photo(folder / "zeros.jpg", 1, taken="0000:00:00 00:00:00", gps=(0.0, 0.0, 0.0))
    write_exif_photo(folder / "bad.jpg", 2, taken="sometime in June", offset="+99:00", model="\x00\x00")
    engine = Engine(clip_settings)
    report = engine.index([folder])
    assert len(report.added) == 2 and not report.skipped
    for metadata in by_name(engine).values():
        assert metadata["taken_from"] == "file time"
        assert "gps_lat" not in metadata and "camera" not in metadata


def test_exif_text_is_stored_printable_and_short():
    from PIL import Image

    from exif_photos import exif_block
    from retrieval.photos.facts import MAX_FACT_CHARS, read_facts

    import io
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif_block(
        make="Canon\x1b[31m\x07\r\nEvil\tCorp", model="X" * 30_000, lens="Lens\x00 50mm\x0b"))
    facts = read_facts(Image.open(buffer))
    assert facts["camera_make"] == "Canon [31m Evil Corp"
    assert len(facts["camera_model"]) == MAX_FACT_CHARS and facts["camera_model"].endswith("…")
    assert facts["lens"] == "Lens 50mm"
    assert all(c.isprintable() for value in facts.values() if isinstance(value, str) for c in value)


def test_cameras_are_found_as_people_name_them(clip_settings, library):
    engine = Engine(clip_settings)
    engine.index([library])
    write_exif_photo(library / "phone.jpg", 9, make="Apple", model="iPhone 15 Pro")
    engine.index([library])

    def found(camera):
        return {r.metadata["filename"] for r in engine.search(SearchRequest(filters={"camera": camera}, k=20))}

    assert found("iPhone 15 Pro") == found("iphone 15 pro") == {"phone.jpg"}  # stored as "Apple iPhone 15 Pro"
    assert found("canon") == {"paris_tower.jpg", "paris_museum.jpg"}
    assert found("apple") == {"phone.jpg", "lima.jpg"}
    assert found("nikon corporation") == {"sydney.png"}  # the make, not repeated in the camera's name
    assert found("Apple iPhone 12") == found("iPhone 12") == {"lima.jpg"}
    with pytest.raises(RetrievalError, match="No camera in this collection matches 'Leica M6'. The closest:"):
        found("Leica M6")
    code, out, err = run_in_process(clip_settings, "search", "--camera", "canon eos")
    assert code == 0 and "paris_tower.jpg" in out, err
    code, _, err = run_in_process(clip_settings, "search", "--camera", "Canonn EOS R5")
    assert code == 1 and "The closest: Canon EOS R5" in err


def test_date_parsing_and_ranges():
    assert parse_date("2024") == datetime(2024, 1, 1)
    assert parse_date("2024-06") == datetime(2024, 6, 1)
    assert parse_date(" 2024-06-01 14:30 ") == datetime(2024, 6, 1, 14, 30)
    for bad in ("June", "2024-13", "2024-02-30", "24-06-01", ""):
        with pytest.raises(RetrievalError, match="not a date"):
            parse_date(bad)
    with pytest.raises(RetrievalError, match="earlier one"):
        date_range("2024-07", "2024-06")
    assert date_range(None, " ") is None
    assert distance_km(*EIFFEL[:2], *LOUVRE[:2]) == pytest.approx(3.2, abs=0.1)
    with pytest.raises(RetrievalError, match="LAT,LON"):
        Place.parse("Paris", 2)
    with pytest.raises(RetrievalError, match="positive"):
        Place.parse("48.8,2.3", -1)


def run_cli(settings, *arguments) -> list[dict]:
    code, out, err = run_in_process(settings, "search", *arguments, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("arguments, expected", [
    (["--after", "2024-06"], {"paris_tower.jpg", "paris_museum.jpg", "no_offset.jpg"}),
    (["--after", "2024-06-02", "--before", "2024-07"], {"paris_museum.jpg", "no_offset.jpg"}),
    (["--before", "2020"], {"lima.jpg"}),
    (["--after", "2021-02-03", "--before", "2021-02-04"], {"photo_0050.jpg"}),  # the file time
    (["--camera", "Canon EOS R5"], {"paris_tower.jpg", "paris_museum.jpg"}),
    (["--near", "48.8584,2.2945", "--within", "1"], {"paris_tower.jpg"}),
    (["--near", "48.8584,2.2945", "--within", "5"], {"paris_tower.jpg", "paris_museum.jpg"}),
    (["--near=-33.86,151.21", "--within", "50", "--after", "2023"], {"sydney.png"}),
    (["--near=-12.05,-77.04", "--within", "10"], {"lima.jpg"}),
])
def test_filters_keep_what_the_facts_say(clip_settings, library, arguments, expected):
    Engine(clip_settings).index([library])
    with_query = run_cli(clip_settings, "a photo", "-k", "20", *arguments)
    assert {r["filename"] for r in with_query} == expected
    browsed = run_cli(clip_settings, "-k", "20", *arguments)  # a filter alone lists what it keeps
    assert {r["filename"] for r in browsed} == expected


def test_sorting_by_date(clip_settings, library):
    Engine(clip_settings).index([library])
    oldest_first = [r["filename"] for r in run_cli(clip_settings, "a photo", "-k", "20", "--sort", "date")]
    assert oldest_first == ["lima.jpg", "photo_0050.jpg", "sydney.png", "paris_tower.jpg", "paris_museum.jpg",
                            "no_offset.jpg"]
    newest_first = [r["filename"] for r in run_cli(clip_settings, "a photo", "-k", "20", "--sort=-date")]
    assert newest_first == oldest_first[::-1]
    by_score = run_cli(clip_settings, "a photo", "-k", "20")
    assert [r["score"] for r in by_score] == sorted((r["score"] for r in by_score), reverse=True)
    # Pages of a date-sorted search follow on from each other.
    pages = [r["filename"] for offset in (0, 2, 4)
             for r in run_cli(clip_settings, "a photo", "-k", "2", "--offset", str(offset), "--sort", "date")]
    assert pages == oldest_first
    # With no query, a filter lists its photos newest first.
    browsed = [r["filename"] for r in run_cli(clip_settings, "--after", "2000")]
    assert browsed == newest_first


def test_place_search_reads_past_the_box_corners(clip_settings, tmp_path):
    """Photos in the box's corners (within the box, outside the circle) don't take places on the page."""
    folder = tmp_path / "ring"
    centre = (10.0, 20.0)
    for i in range(12):  # 8 in the corners, 4 near the centre
        corner = i < 8
        lat = centre[0] + (0.0085 if corner else 0.001) * (1 if i % 2 else -1)
        lon = centre[1] + (0.0086 if corner else 0.001) * (1 if i % 4 < 2 else -1)
        write_exif_photo(folder / f"p{i:02d}.jpg", i, gps=(lat, lon, 0.0))
    engine = Engine(clip_settings)
    engine.index([folder])
    request = SearchRequest(terms=[QueryTerm("text", "a photo")], k=4, place=Place(*centre, km=1.0))
    found = engine.search(request)
    assert sorted(r.metadata["filename"] for r in found) == [f"p{i:02d}.jpg" for i in range(8, 12)]


def test_an_older_collection_gains_facts_without_embedding_again(clip_settings, library):
    engine = Engine(clip_settings)
    engine.index([library])
    # As a collection indexed before facts were read: the same records without them.
    records = list(engine.store.iter_all(with_embeddings=True))
    ids = [r.id for r in records]
    before = np.stack([r.embedding for r in records])
    stripped = [{k: v for k, v in r.metadata.items() if k not in FACTS_FIELDS and k != "phash"} for r in records]
    engine.store.upsert(ids, before, stripped)
    assert not any("taken_from" in r.metadata for r in engine.store.iter_all())

    later = Engine(clip_settings)
    report = later.index([library])
    assert report.added == [] and report.facts_read == len(ids)
    assert later._embedder is None, "no model was loaded: nothing was embedded"
    after = {r.id: r for r in later.store.iter_all(with_embeddings=True)}
    np.testing.assert_allclose(np.stack([after[i].embedding for i in ids]), before, atol=1e-6)
    assert after[ids[0]].metadata["taken_from"] in ("exif", "file time")
    assert by_name(later)["paris_tower.jpg"]["camera"] == "Canon EOS R5"
    assert later.index([library]).facts_read == 0  # once
