"""Photos as files: which files are photos, decoding them (HEIC, AVIF, camera RAW), the facts
they carry (capture time, camera, place), their perceptual hash and near-duplicates, the
metadata tables beside them, tags, and which of their URLs may be shown."""
