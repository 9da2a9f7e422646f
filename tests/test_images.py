"""Decoding: every Pillow mode to the RGB a person would expect, bad files named."""

import io

import numpy as np
import pytest
from PIL import Image

from photos import random_photo, write_bad_files
from retrieval.photos.images import ImageRejected, decode_image, open_image_file, to_rgb


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_transparent_areas_become_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # black, fully transparent
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgb = np.asarray(decode_image(encode(rgba, "PNG"), 10**6).image)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[3, 3]) == (255, 255, 255)


def test_palette_with_transparency_becomes_white():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.info["transparency"] = 0
    rgb = np.asarray(decode_image(encode(palette, "PNG", transparency=0), 10**6).image)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[1, 1]) == (10, 200, 30)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    array = np.full((4, 4), 32768, dtype=np.uint16)  # mid grey in 16 bits
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    rgb = np.asarray(to_rgb(image))
    assert abs(int(rgb[0, 0, 0]) - 128) <= 1


def test_exif_orientation_is_applied():
    photo = random_photo(1, size=(60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    decoded = decode_image(encode(photo, "JPEG", exif=exif), 10**6)
    assert (decoded.width, decoded.height) == (30, 60)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    rgb = np.asarray(decode_image(data, 10**6).image)
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 2] < 50


@pytest.mark.parametrize("mode", ["L", "LA", "CMYK", "P", "RGBA", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb(mode):
    image = random_photo(2).convert("RGBA" if mode == "LA" else "RGB")
    image = image.convert(mode) if mode not in ("I;16",) else Image.fromarray(
        (np.asarray(image.convert("L"), dtype=np.uint16) * 257))
    assert to_rgb(image).mode == "RGB"


def test_bad_files_are_rejected_with_their_reason(tmp_path):
    for reason, path in write_bad_files(tmp_path).items():
        with pytest.raises(ImageRejected) as caught:
            open_image_file(path, max_pixels=20_000_000)
        assert caught.value.reason.value == reason, path


def test_pixel_cap_is_a_setting():
    data = encode(random_photo(3, size=(100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageRejected):
        decode_image(data, max_pixels=9_999)
