"""Finding image files under folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from .errors import RetrievalError
from .images import IMAGE_EXTENSIONS


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk_images(roots: Iterable[Path]) -> Iterator[Path]:
    """Image files under each root (recursively), or the root itself if it is a file.

    Paths are absolute and yielded in a stable (sorted) order, so a resumed run
    visits files in the same order as the run it continues.
    """
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists():
            raise RetrievalError(f"{root} does not exist: give a folder of photos or an image file.")
        root = root.resolve()
        if root.is_file():
            yield root
            continue
        for folder, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(folder) / name
                if is_image_path(path) and not name.startswith("."):
                    yield path


def is_under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
