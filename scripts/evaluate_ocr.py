#!/usr/bin/env python
"""Searching for words painted on real photos (OCR and the text channel); see ``--help`` and the README."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.bench.ocr_eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
