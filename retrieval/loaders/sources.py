"""Each kind of source turned into the same thing: image files on disk, each with
its metadata, ready for the indexer.

A source first lists what it has (cheaply), the caller samples that list, and
only then are the chosen photos downloaded or written out.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import RetrievalError
from ..photos.files import walk_images
from ..photos.metadata_table import MetadataTable, normalise_row
from ..photos.tags import parse_tags
from . import unsplash
from .archives import extract, is_archive
from .download import Downloader, DownloadFailure
from .sampling import sample

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
_TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


@dataclass
class LoadOptions:
    dest: Path  # where downloads and extracted files go
    limit: int | None = None
    sample: str = "first"
    seed: int = 0
    width: int | None = 640  # Unsplash photos are fetched at this width (0: original)
    min_confidence: float = unsplash.DEFAULT_MIN_CONFIDENCE
    metadata: Path | None = None  # folder / kaggle: a metadata table
    archive: Path | None = None  # kaggle: an archive downloaded already
    image_column: str | None = None  # hf
    description_column: str | None = None  # hf
    tags_column: str | None = None  # hf
    downloader: Downloader = field(default_factory=Downloader)


@dataclass
class Prepared:
    """What a source hands to the indexer."""

    label: str  # stored as each photo's ``source``
    available: int  # photos in the whole source
    files: list[Path]  # the chosen photos that are on disk
    metadata: dict[str, dict[str, Any]]  # file name -> metadata
    selected: int = 0  # photos chosen by --limit/--sample (on disk or not)
    downloaded: int = 0
    already_on_disk: int = 0
    failures: list[DownloadFailure] = field(default_factory=list)

    def lookup(self, path: Path) -> dict[str, Any]:
        return self.metadata.get(path.name, {})


# -- folder ---------------------------------------------------------------------

def from_folder(folder: Path, options: LoadOptions, label: str = "folder") -> Prepared:
    folder = folder.expanduser()
    if not folder.is_dir():
        raise RetrievalError(f"{folder} is not a folder.")
    every_file = list(walk_images([folder]))
    files = sample(every_file, options.limit, options.sample, options.seed)
    table_path = options.metadata or _find_table(folder)
    table = MetadataTable.from_file(table_path) if table_path else None
    if table_path:
        log.info("metadata from %s", table_path)
    metadata = {f.name: table.lookup(f) for f in files} if table else {}
    return Prepared(label, len(every_file), files, metadata, selected=len(files), already_on_disk=len(files))


def _find_table(folder: Path) -> Path | None:
    """The one metadata table in a folder tree, if there is exactly one."""
    tables = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES
              and not p.name.startswith(".")]
    if len(tables) > 1:
        log.warning("several metadata tables in %s (%s); give one with --metadata",
                    folder, ", ".join(p.name for p in tables[:5]))
    return tables[0] if len(tables) == 1 else None


# -- Unsplash Lite ----------------------------------------------------------------

def from_unsplash(location: str | None, options: LoadOptions, progress: Progress | None) -> Prepared:
    folder = _unsplash_folder(location or unsplash.DEFAULT_URL, options)
    rows = unsplash.read_photos(folder, options.min_confidence)
    chosen = sample(rows, options.limit, options.sample, options.seed)
    photos = options.dest / "photos"
    jobs, metadata = [], {}
    for row in chosen:
        name = f"{_safe_name(row['photo_id'])}.jpg"
        jobs.append((unsplash.sized_image_url(row["photo_image_url"], options.width), photos / name))
        metadata[name] = normalise_row(row)
    report = options.downloader.fetch_all(jobs, progress)
    files = [target for _, target in jobs if target.is_file()]
    return Prepared("unsplash-lite", len(rows), files, metadata, selected=len(chosen),
                    downloaded=report.downloaded, already_on_disk=report.already_there, failures=report.failures)


def _unsplash_folder(location: str, options: LoadOptions) -> Path:
    """The extracted data set: from a folder, an archive, or a URL to download it from."""
    if location.startswith(("http://", "https://")):
        archive = options.dest / "unsplash-lite.zip"
        if not archive.is_file():
            log.info("downloading the Unsplash Lite archive from %s", location)
            archive.parent.mkdir(parents=True, exist_ok=True)
            big = Downloader(workers=1, retries=options.downloader.retries, timeout=options.downloader.timeout,
                             max_bytes=5_000_000_000, backoff=options.downloader.backoff)
            try:
                big.fetch(location, archive)
            except Exception as exc:  # noqa: BLE001 - DownloadError and anything below it
                raise RetrievalError(f"Could not download the Unsplash Lite archive from {location}: {exc}. "
                                     "Download it in a browser and give its path instead.") from None
        return extract(archive, options.dest / "dataset")
    path = Path(location).expanduser()
    if path.is_dir():
        return path
    if is_archive(path):
        return extract(path, options.dest / "dataset")
    raise RetrievalError(f"{location} is neither the Unsplash Lite folder, its archive, nor a URL.")


def _safe_name(photo_id: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in photo_id)
    if not name:
        raise RetrievalError(f"Photo id {photo_id!r} can't be used as a file name.")
    return name


# -- Kaggle ---------------------------------------------------------------------------

def kaggle_credentials_problem() -> str | None:
    """Why the Kaggle API can't authenticate, or None when some credentials are there."""
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    if os.environ.get("KAGGLE_API_TOKEN") or (config / "access_token").is_file():
        return None
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return None
    if (config / "kaggle.json").is_file():
        return None
    return (f"No Kaggle credentials. Create an API token at https://www.kaggle.com/settings/api and "
            f"save it as {config / 'kaggle.json'} (or {config / 'access_token'}), or set KAGGLE_USERNAME "
            "and KAGGLE_KEY (or KAGGLE_API_TOKEN). Or download the archive in a browser and pass --archive.")


def from_kaggle(dataset: str, options: LoadOptions) -> Prepared:
    if dataset.count("/") != 1:
        raise RetrievalError(f"kaggle:{dataset}: expected kaggle:OWNER/DATASET.")
    archive = options.archive
    if archive is None:
        archive = _kaggle_download(dataset, options.dest)
    elif not is_archive(archive):
        raise RetrievalError(f"--archive {archive} is not a zip or tar file.")
    folder = extract(archive, options.dest / "extracted")
    return from_folder(folder, options, label=f"kaggle:{dataset}")


def _kaggle_download(dataset: str, dest: Path) -> Path:
    problem = kaggle_credentials_problem()
    if problem:
        raise RetrievalError(problem)
    dest.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on import
        from kaggle.api.kaggle_api_extended import KaggleApi
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(dataset, path=str(dest), quiet=False, unzip=False)
    except SystemExit as exc:  # the package exits on bad credentials
        raise RetrievalError(f"Kaggle refused the credentials ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - network and API errors of several kinds
        raise RetrievalError(f"Could not download kaggle:{dataset}: {exc}") from None
    archives = sorted(dest.glob("*.zip"), key=lambda p: p.stat().st_mtime)
    if not archives:
        raise RetrievalError(f"Kaggle sent no archive for {dataset}.")
    return archives[-1]


# -- Hugging Face datasets --------------------------------------------------------------

_DESCRIPTION_GUESSES = ("caption", "description", "text", "alt", "title", "sentence", "prompt")
_TAG_GUESSES = ("tags", "keywords", "labels", "label")


def from_huggingface(spec: str, options: LoadOptions, progress: Progress | None) -> Prepared:
    name, _, split = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    table = _open_hf(name, split or "train")
    image_column = options.image_column or _image_column(table)
    import datasets

    if image_column not in table.column_names:
        raise RetrievalError(f"No column '{image_column}' in {name}; columns: {', '.join(table.column_names)}.")
    table = table.cast_column(image_column, datasets.Image(decode=False))  # raw bytes, no re-encoding
    description = options.description_column or _guess(table.column_names, _DESCRIPTION_GUESSES)
    tags = options.tags_column or _guess(table.column_names, _TAG_GUESSES)
    indices = sample(range(len(table)), options.limit, options.sample, options.seed)
    folder = options.dest / "images"
    folder.mkdir(parents=True, exist_ok=True)
    files, metadata, written, existing = [], {}, 0, 0
    label_names = _label_names(table, tags)
    for index in indices:
        row = table[int(index)]
        target = folder / f"{index:07d}{_image_suffix(row[image_column])}"
        if target.is_file():
            existing += 1
        elif _write_image(row[image_column], target):
            written += 1
        else:
            continue
        files.append(target)
        metadata[target.name] = _hf_metadata(row, index, description, tags, label_names)
        if progress:
            progress(1)
    return Prepared(f"hf:{name}", len(table), files, metadata, selected=len(indices), downloaded=written,
                    already_on_disk=existing)


def _open_hf(name: str, split: str):
    import datasets

    path = Path(name).expanduser()
    try:
        if path.is_file() and path.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files=str(path), split="train")
        if path.is_dir():
            if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
                loaded = datasets.load_from_disk(str(path))
                return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
            parquet = sorted(str(p) for p in path.rglob("*.parquet"))
            if parquet:
                return datasets.load_dataset("parquet", data_files=parquet, split="train")
            return datasets.load_dataset("imagefolder", data_dir=str(path), split=split)
        return datasets.load_dataset(name, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise RetrievalError(f"Could not open the Hugging Face dataset '{name}' (split {split}): "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Offline, "
                             "give a local dataset folder or parquet file.") from None
    except Exception as exc:  # noqa: BLE001 - the hub client raises its own kinds
        raise RetrievalError(f"Could not open the Hugging Face dataset '{name}': {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def _image_column(table) -> str:
    import datasets

    for column, feature in table.features.items():
        if isinstance(feature, datasets.Image):
            return column
    raise RetrievalError(f"No image column found (columns: {', '.join(table.column_names)}); "
                         "name it with --image-column.")


def _guess(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _label_names(table, column: str | None) -> list[str] | None:
    import datasets

    feature = table.features.get(column) if column else None
    if isinstance(feature, datasets.ClassLabel):
        return feature.names
    if isinstance(feature, datasets.Sequence) and isinstance(feature.feature, datasets.ClassLabel):
        return feature.feature.names
    return None


def _image_suffix(value: dict) -> str:
    suffix = Path(str(value.get("path") or "")).suffix.lower()
    return suffix if suffix in {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} else ".jpg"


def _write_image(value: dict, target: Path) -> bool:
    partial = target.with_name(target.name + ".part")
    if value.get("bytes"):
        partial.write_bytes(value["bytes"])
    elif value.get("path") and Path(value["path"]).is_file():
        shutil.copyfile(value["path"], partial)
    else:
        return False
    partial.replace(target)
    return True


def _hf_metadata(row: dict, index: int, description: str | None, tags: str | None,
                 label_names: list[str] | None) -> dict[str, Any]:
    found: dict[str, Any] = {"photo_id": str(row.get("photo_id") or row.get("id") or index)}
    if description and row.get(description) not in (None, ""):
        text = row[description]
        found["description"] = str(text[0] if isinstance(text, list) and text else text)
    if tags and row.get(tags) not in (None, ""):
        value = row[tags]
        values = value if isinstance(value, list) else [value]
        if label_names:
            values = [label_names[v] if isinstance(v, int) and 0 <= v < len(label_names) else v for v in values]
        found["tags"] = parse_tags([str(v) for v in values])
    return {k: v for k, v in found.items() if v not in (None, "", [])}


__all__ = ["LoadOptions", "Prepared", "from_folder", "from_unsplash", "from_kaggle", "from_huggingface",
           "kaggle_credentials_problem"]
