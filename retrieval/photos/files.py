"""Finding image files under folders, and accounting for everything else found there."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import RetrievalError
from .formats import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS, SkipReason

# In an indexed folder, gitignore-style lines naming what is never indexed (and pruned if it was).
IGNORE_FILE = ".photoignore"


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
    excluded: int = 0  # files and folders left out by --exclude or an ignore file


class Exclusions:
    """What is left out under one indexed folder: ``--exclude`` patterns and the folder's
    ignore file, both gitignore-style and relative to the folder (``raw/``, ``*.tmp``,
    ``2019/**/private``; a pattern without a slash matches at any depth)."""

    def __init__(self, root: Path, patterns: Iterable[str] = ()):
        lines = [p for p in patterns if p.strip()]
        ignore_file = root / IGNORE_FILE
        if ignore_file.is_file():
            try:
                lines += ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as exc:
                raise RetrievalError(f"Could not read {ignore_file}: {exc.strerror or exc}.") from None
        self.root = root
        self.spec = None
        if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            import pathspec  # only when there is something to leave out: a plain walk needs no package

            self.spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def __bool__(self) -> bool:
        return self.spec is not None

    def leaves_out(self, path: Path, is_dir: bool = False) -> bool:
        if self.spec is None:
            return False
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            return False
        return self.spec.match_file(relative + "/" if is_dir else relative)


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


def scan_folders(roots: Iterable[Path], exclude: Iterable[str] = ()) -> FolderScan:
    """Image files under each root (recursively), or the root itself if it is a file.

    Paths are absolute and in a stable (sorted) order, so a resumed run visits
    files in the same order as the run it continues. Hidden files and folders
    (names starting with a dot) are left out, and so is what ``exclude`` and
    each folder's ignore file name (:class:`Exclusions`); every other file that
    is not indexed, and every folder that can't be read, is listed with the reason.
    """
    scan = FolderScan()
    exclude = list(exclude)
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

        rules = Exclusions(root, exclude)
        for folder, dirnames, filenames in os.walk(root, onerror=unreadable):
            here = Path(folder)
            kept = sorted(d for d in dirnames if not d.startswith("."))
            dirnames[:] = [d for d in kept if not rules.leaves_out(here / d, is_dir=True)]
            scan.excluded += len(kept) - len(dirnames)
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if rules.leaves_out(here / name):
                    scan.excluded += 1
                else:
                    _classify(here / name, scan)
    return scan


def walk_images(roots: Iterable[Path]) -> list[Path]:
    """Just the image files of :func:`scan_folders`."""
    return scan_folders(roots).images


def is_under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
