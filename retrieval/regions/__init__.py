"""Regions of a photo: boxes proposed as places an object may be (``proposals.py``), and how
well a proposer finds real objects (``bench/box_recall.py``)."""
