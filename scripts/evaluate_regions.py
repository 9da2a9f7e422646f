#!/usr/bin/env python
"""Box recall of region proposers on COCO's object boxes; see ``--help`` and the README."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.bench.box_recall import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
