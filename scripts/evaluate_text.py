#!/usr/bin/env python
"""Finding photos by a held-out caption through their other captions; see ``--help`` and the README."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from retrieval.bench.text_eval import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
