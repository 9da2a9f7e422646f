"""Metadata tables as people really save them: Excel's BOM, semicolons, broken quotes, long fields."""

from __future__ import annotations

import json

import pytest

from photos import write_photos
from retrieval.errors import RetrievalError
from retrieval.photos.metadata_table import MetadataTable


def descriptions(engine) -> dict[str, str]:
    return {r.metadata["filename"]: r.metadata.get("description") for r in engine.store.iter_all()}


def test_excel_csv_with_byte_order_mark(engine, tmp_path):
    paths = write_photos(tmp_path / "photos", 2)
    table = tmp_path / "excel.csv"
    table.write_bytes("filename,description\n".encode("utf-8-sig")
                      + f"{paths[0].name},Café at dawn\n{paths[1].name},Snow\n".encode())
    report = engine.index([tmp_path / "photos"], metadata_file=table)
    assert descriptions(engine) == {paths[0].name: "Café at dawn", paths[1].name: "Snow"}
    assert report.metadata_warnings == []


def test_semicolon_separated_table(engine, tmp_path):
    paths = write_photos(tmp_path / "photos", 2)
    table = tmp_path / "semicolons.csv"
    table.write_text(f"filename;description;tags\n{paths[0].name};A dog, running;dog,beach\n"
                     f"{paths[1].name};A cat;cat\n")
    engine.index([tmp_path / "photos"], metadata_file=table)
    assert descriptions(engine) == {paths[0].name: "A dog, running", paths[1].name: "A cat"}
    assert engine.search_tags(["beach"])[0].metadata["filename"] == paths[0].name


def test_broken_quoting_is_reported_by_line_and_does_not_swallow_silently(engine, tmp_path):
    paths = write_photos(tmp_path / "photos", 4)
    table = tmp_path / "broken.csv"
    table.write_text("filename,description\n"
                     f"{paths[0].name},fine\n"
                     f"{paths[1].name},\"an unclosed quote\n"
                     f"{paths[2].name},swallowed\n"
                     f"{paths[3].name},also swallowed\n")
    report = engine.index([tmp_path / "photos"], metadata_file=table)
    assert descriptions(engine)[paths[0].name] == "fine"
    assert descriptions(engine)[paths[1].name] is None  # not a description made of three rows
    assert any(w.startswith("lines 3-5: an unclosed quote") for w in report.metadata_warnings)


def test_wrong_column_count_is_reported_by_line(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("filename,description,photographer\na.jpg,one,Ana\nb.jpg,two\nc.jpg,three,Bo\n")
    parsed = MetadataTable.from_file(table)
    assert parsed.problems == ["line 3: 2 columns where the header has 3; the row was left out"]
    assert parsed.lookup(tmp_path / "c.jpg")["photographer"] == "Bo"


def test_a_one_megabyte_field_is_read_and_kept_to_the_field_limit(engine, tmp_path):
    from retrieval.store.field_limits import MAX_TEXT_CHARS

    paths = write_photos(tmp_path / "photos", 1)
    table = tmp_path / "long.csv"
    table.write_text(f"filename,description\n{paths[0].name},\"{'word ' * 220_000}\"\n")
    report = engine.index([tmp_path / "photos"], metadata_file=table)
    kept = descriptions(engine)[paths[0].name]
    assert len(kept) == MAX_TEXT_CHARS and kept.startswith("word word")
    assert report.metadata_warnings == [f"row 1 ({paths[0].name}): 'description' has 1,100,000 characters, "
                                        f"kept {MAX_TEXT_CHARS:,}"]


def test_rows_that_match_no_photo_are_counted(engine, tmp_path):
    paths = write_photos(tmp_path / "photos", 1)
    table = tmp_path / "t.csv"
    table.write_text(f"filename,description\n{paths[0].name},one\nmissing.jpg,two\nother.jpg,three\n")
    report = engine.index([tmp_path / "photos"], metadata_file=table)
    assert report.metadata_warnings == ["2 of 3 rows matched no photo (by file name, stem or photo id)"]


def test_a_table_without_a_file_column_says_which_columns_it_saw(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("name|caption\na.jpg|x\n")
    with pytest.raises(RetrievalError, match="no column naming the photo.*name, caption"):
        MetadataTable.from_file(table)


def test_unreadable_table_is_a_clear_error():
    # A file every read of which fails with an I/O error, even for root.
    from pathlib import Path

    with pytest.raises(RetrievalError, match="can't be read"):
        MetadataTable.from_file(Path("/proc/self/mem"))


def test_a_table_that_is_a_folder_or_missing_is_a_clear_error(tmp_path):
    with pytest.raises(RetrievalError, match="is a folder"):
        MetadataTable.from_file(tmp_path)
    with pytest.raises(RetrievalError, match="does not exist"):
        MetadataTable.from_file(tmp_path / "nope.csv")


def test_several_rows_for_one_photo_are_merged(engine, tmp_path):
    paths = write_photos(tmp_path / "photos", 2)
    table = tmp_path / "captions.tsv"
    table.write_text("image_path\tcaption\n" + "".join(
        f"{p.name}\tcaption {i} of {p.stem}\n" for p in paths for i in range(3)) + "other.jpg\tnot here\n")
    report = engine.index([tmp_path / "photos"], metadata_file=table)
    assert report.metadata_warnings == [
        "1 of 7 rows matched no photo (by file name, stem or photo id)",
        "4 rows name a photo that an earlier row already named; they were merged (every description kept in "
        "captions, every tag kept)"]
    records = {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}
    for p in paths:
        assert records[p.name]["description"] == f"caption 0 of {p.stem}"
        assert records[p.name]["captions"] == [f"caption {i} of {p.stem}" for i in range(3)]


def test_merged_rows_keep_the_first_value_of_each_field_and_every_tag():
    from retrieval.photos.metadata_table import merge_rows

    rows = [{"description": "a dog", "tags": ["dog"], "photographer": "Ana"},
            {"description": "a dog", "tags": ["dog", "grass"], "photographer": "Bo", "url": "https://x"},
            {"description": "a puppy on grass", "tags": ["puppy"]}]
    assert merge_rows(rows) == {"description": "a dog", "captions": ["a dog", "a puppy on grass"],
                                "tags": ["dog", "grass", "puppy"], "photographer": "Ana", "url": "https://x"}
    assert merge_rows(rows[:1]) == rows[0]


def test_messages_name_the_users_file_and_print_no_binary(engine, tmp_path):
    """An upload reaches the page as the server's temporary copy: messages use the name the person
    chose, and a binary header shows as printable text."""
    from retrieval.ui.handlers import SearchPage
    from retrieval.ui.media import MediaFolder

    cache = tmp_path / "gradio" / "5f2a9c0e1b7d4e6fa8b3c2d1e0f9a8b7c6d5e4f3"
    cache.mkdir(parents=True)
    table = cache / "my photos.csv"
    table.write_bytes(b"\x89PNG\x00\x01\x02\xff,\x1b[2Jcolour\nx,y\n")
    photo = write_photos(tmp_path / "photos", 1)[0]
    page = SearchPage(engine, MediaFolder(engine.settings.media_folder, engine.settings.max_image_pixels))
    with pytest.raises(RetrievalError) as caught:
        page.add_photos([str(photo)], str(table))
    message = str(caught.value)
    assert "Metadata file my photos.csv has no column naming the photo" in message
    assert str(cache) not in message and "gradio" not in message
    assert all(c.isprintable() for c in message) and "\x1b" not in message


def test_columns_the_product_has_no_field_for_are_kept_and_listed(engine, tmp_path):
    """COCO's own table: flickr_url becomes the source link, image_license and date_captured are kept,
    and a column named like a fact of the photo itself (width) never overwrites it."""
    paths = write_photos(tmp_path / "photos", 2)
    table = tmp_path / "coco.json"
    table.write_text(json.dumps([
        {"file_name": paths[0].name, "flickr_url": "http://farm4.staticflickr.com/1/2.jpg", "Image License": 4,
         "date_captured": "2013-11-14 17:02:52", "width": 9999, "nested": {"a": 1}},
        {"file_name": paths[1].name, "coco_url": "http://images.cocodataset.org/val2017/2.jpg"},
    ]))
    report = engine.index([tmp_path / "photos"], metadata_file=table)
    stored = {r.metadata["filename"]: r.metadata for r in engine.store.iter_all()}
    first = stored[paths[0].name]
    assert first["url"] == "http://farm4.staticflickr.com/1/2.jpg" and first["image_license"] == 4
    assert first["date_captured"] == "2013-11-14 17:02:52" and first["width"] == 64 and "nested" not in first
    assert stored[paths[1].name]["url"] == "http://images.cocodataset.org/val2017/2.jpg"
    notes = " | ".join(report.metadata_warnings)
    assert "columns kept as they are: Image License (as image_license), date_captured, nested" not in notes
    assert "columns kept as they are: Image License (as image_license), date_captured" in notes
    assert "read as the source link: flickr_url, coco_url" in notes
    assert "columns left out, named like what the photo itself says: width" in notes
