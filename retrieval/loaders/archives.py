"""Unpacking downloaded archives without letting a member escape the target folder."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from ..errors import RetrievalError


def is_archive(path: Path) -> bool:
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


def extract(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target`` once (a marker file records completion)."""
    done = target / ".extracted"
    if done.is_file() and done.read_text() == str(archive.stat().st_size):
        return target
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    if not (root / member).resolve().is_relative_to(root):
                        raise RetrievalError(f"{archive.name} has a file outside its folder ({member}); not extracted.")
                bundle.extractall(target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                bundle.extractall(target, filter="data")  # refuses absolute paths, .., links out
        else:
            raise RetrievalError(f"{archive} is not a zip or tar archive.")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise RetrievalError(f"{archive.name} is damaged ({exc}); delete it and download it again.") from None
    done.write_text(str(archive.stat().st_size))
    return target
