"""Generated test photos: distinct random pictures and every kind of bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def random_photo(seed: int, size=(64, 48)) -> Image.Image:
    """A picture with smooth structure (not pure noise), different for every seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    channels = [
        127 + 120 * np.sin(xs * rng.uniform(0.02, 0.3) + ys * rng.uniform(0.02, 0.3) + rng.uniform(0, 6))
        for _ in range(3)
    ]
    return Image.fromarray(np.stack(channels, axis=-1).clip(0, 255).astype("uint8"), "RGB")


def scene_photo(seed: int, size=(320, 240)) -> Image.Image:
    """Shapes of many colours on a background: broad structure, as a photo has, for perceptual hashes."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = Image.new("RGB", size, tuple(int(x) for x in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        box = (x0, y0, x0 + rng.integers(w // 10, w // 2), y0 + rng.integers(h // 10, h // 2))
        colour = tuple(int(x) for x in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def write_photos(folder: Path, count: int, start: int = 0, size=(64, 48), ext: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"photo_{i:04d}{ext}"
        random_photo(i, size).save(path)
        paths.append(path)
    return paths


def jpeg_bytes(seed: int, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    random_photo(seed, size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_bad_files(folder: Path) -> dict[str, Path]:
    """One file for each way an image can be unusable, keyed by the expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    good = jpeg_bytes(999, size=(200, 150))
    files = {
        "empty file": folder / "empty.jpg",
        "truncated image": folder / "truncated.jpg",
        "corrupt image": folder / "corrupt.png",
        "not an image": folder / "notes.jpg",
        "too many pixels": folder / "huge.png",
    }
    files["empty file"].write_bytes(b"")
    files["truncated image"].write_bytes(good[: len(good) // 2])
    png = io.BytesIO()
    random_photo(5).save(png, "PNG")
    data = bytearray(png.getvalue())
    data[40:60] = b"\x00" * 20  # garbage in the header chunk: starts like a PNG, isn't one
    files["corrupt image"].write_bytes(bytes(data))
    files["not an image"].write_text("these are my holiday notes, not a photo\n")
    # 6000 x 6000 pixels but a tiny file: over a 20-million-pixel cap.
    Image.new("L", (6000, 6000)).save(files["too many pixels"], optimize=True)
    return files
