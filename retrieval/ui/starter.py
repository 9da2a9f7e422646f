"""A starter gallery for an empty collection, from photos installed packages ship.

scikit-image bundles a handful of public-domain / CC0 photos with
``skimage.data``; they need no download, so a first run offline still shows
something to search. Descriptions and credits come from scikit-image's own notes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..engine import Engine
from ..indexing.ingest import IndexReport

log = logging.getLogger(__name__)

STARTER_SOURCE = "starter"

# file in skimage/data -> (description, credit, tags)
STARTER_PHOTOS: dict[str, tuple[str, str, list[str]]] = {
    "astronaut.png": ("Astronaut Eileen Collins in an orange flight suit in front of the US flag",
                      "NASA", ["portrait", "woman", "astronaut", "space"]),
    "camera.png": ("Black and white photo of a man with a camera on a tripod",
                   "Lav Varshney", ["portrait", "man", "camera", "black and white"]),
    "chelsea.png": ("Chelsea the tabby cat lying down", "Stefan van der Walt", ["cat", "animal", "pet"]),
    "coffee.png": ("A cup of coffee on a saucer on a wooden table", "Rachel Michetti",
                   ["coffee", "cup", "drink", "table"]),
    "coins.png": ("Ancient Greek coins from Pompeii on a grey background", "Brooklyn Museum",
                  ["coins", "museum", "black and white"]),
    "horse.png": ("Black silhouette of a horse", "Andreas Preuss", ["horse", "animal", "silhouette"]),
    "hubble_deep_field.jpg": ("Distant galaxies in the Hubble eXtreme Deep Field", "NASA",
                              ["space", "galaxies", "stars", "night"]),
    "ihc.png": ("Stained colon tissue under a microscope", "CMMI", ["microscope", "science", "medicine"]),
    "moon.png": ("Craters on the surface of the moon", "NASA", ["moon", "space", "black and white"]),
    "page.png": ("A scanned page of printed text", "scikit-image", ["text", "document", "black and white"]),
    "rocket.jpg": ("A SpaceX Falcon 9 rocket lifting off from the launch pad", "SpaceX",
                   ["rocket", "space", "launch", "sky"]),
    "retina.jpg": ("Photograph of the back of a human eye, the retina", "Mikael Häggström",
                   ["eye", "medicine", "science"]),
    "brick.png": ("A brick wall", "CC0 Textures", ["texture", "wall", "black and white"]),
    "grass.png": ("Close-up of grass", "linolafett", ["texture", "grass", "nature", "black and white"]),
    "gravel.png": ("Close-up of gravel", "CC0 Textures", ["texture", "stones", "black and white"]),
}


def skimage_data_folder() -> Path | None:
    try:
        import skimage.data
    except ImportError:
        return None
    return Path(skimage.data.__file__).parent


def add_starter_gallery(engine: Engine, target: Path) -> IndexReport | None:
    """Copy the starter photos to ``target`` and index them; None when unavailable."""
    shipped = skimage_data_folder()
    if shipped is None:
        log.warning("scikit-image is not installed, so there is no starter gallery")
        return None
    target.mkdir(parents=True, exist_ok=True)
    for name in STARTER_PHOTOS:
        if (shipped / name).is_file() and not (target / name).is_file():
            shutil.copyfile(shipped / name, target / name)

    def describe(path: Path) -> dict:
        description, credit, tags = STARTER_PHOTOS.get(path.name, (path.stem, "", []))
        return {"description": description, "photographer": credit, "tags": tags}

    report = engine.index([target], metadata=describe, source=STARTER_SOURCE)
    log.info("added %d starter photos from scikit-image", len(report.added))
    return report
