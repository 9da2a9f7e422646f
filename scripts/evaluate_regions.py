#!/usr/bin/env python
"""Regions measured on COCO: the proposers' box recall, or (``pasted ...``) objects pasted into
other photos found with their box; see ``--help`` of each and the README."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    if sys.argv[1:2] == ["pasted"]:
        from retrieval.bench.pasted_scenes import main

        sys.exit(main(sys.argv[2:]))
    from retrieval.bench.box_recall import main

    sys.exit(main(sys.argv[1:]))
