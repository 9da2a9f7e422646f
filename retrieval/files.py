"""Finding image files under folders, and accounting for everything else found there."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import RetrievalError
from .formats import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS, SkipReason


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class PassedOver:
    path: Path
    reason: SkipReason
    detail: str = ""


@dataclass
class FolderScan:
    images: list[Path] = field(default_factory=list)
    passed_over: list[PassedOver] = field(default_factory=list)  # what was found but can't be indexed


def _classify(path: Path, scan: FolderScan) -> None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        try:
            mode = path.stat().st_mode  # follows links: a link to /dev/zero is a device
        except OSError as exc:
            scan.passed_over.append(PassedOver(path, SkipReason.UNREADABLE, exc.strerror or str(exc)))
            return
        if stat.S_ISREG(mode):
            scan.images.append(path)
        else:
            kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or socket"
            scan.passed_over.append(PassedOver(path, SkipReason.NOT_A_FILE, kind))
    elif suffix in UNSUPPORTED_IMAGE_EXTENSIONS:
        scan.passed_over.append(PassedOver(path, SkipReason.UNSUPPORTED,
                                           f"{UNSUPPORTED_IMAGE_EXTENSIONS[suffix]} can't be read yet"))
    else:
        scan.passed_over.append(PassedOver(path, SkipReason.NOT_AN_IMAGE,
                                           f"'{suffix or path.name}' is not an image file extension"))


def scan_folders(roots: Iterable[Path]) -> FolderScan:
    """Image files under each root (recursively), or the root itself if it is a file.

    Paths are absolute and in a stable (sorted) order, so a resumed run visits
    files in the same order as the run it continues. Hidden files and folders
    (names starting with a dot) are left out; every other file that is not
    indexed, and every folder that can't be read, is listed with the reason.
    """
    scan = FolderScan()
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists() and not root.is_symlink():
            raise RetrievalError(f"{root} does not exist: give a folder of photos or an image file.")
        root = root.absolute() if root.is_symlink() and not root.exists() else root.resolve()
        if not root.is_dir():
            scan.images.append(root)  # named by the user: tried whatever it is, with a reason if unusable
            continue

        def unreadable(error: OSError) -> None:
            scan.passed_over.append(PassedOver(Path(error.filename or root), SkipReason.UNREADABLE_FOLDER,
                                               error.strerror or str(error)))

        for folder, dirnames, filenames in os.walk(root, onerror=unreadable):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith("."):
                    _classify(Path(folder) / name, scan)
    return scan


def walk_images(roots: Iterable[Path]) -> list[Path]:
    """Just the image files of :func:`scan_folders`."""
    return scan_folders(roots).images


def is_under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
