#!/usr/bin/env python
"""Bring a photo collection into the index: the same as ``python -m retrieval load``.

    python scripts/load_dataset.py unsplash-lite --limit 500 --sample random --seed 1
    python scripts/load_dataset.py kaggle:OWNER/DATASET --limit 1000
    python scripts/load_dataset.py hf:DATASET:train --description-column caption
    python scripts/load_dataset.py folder:~/Pictures/trip --metadata trip.csv
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["load", *sys.argv[1:]]))
