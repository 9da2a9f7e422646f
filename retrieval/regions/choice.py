"""The proposer the ``REGION_PROPOSER`` setting names: ``segments`` (the default: no weights,
offline), ``grid``, or a SAM checkpoint by Hugging Face id or folder (``sam.py``)."""

from __future__ import annotations

from .proposals import PROPOSERS, Proposer


def load_proposer(name: str, device: str = "cpu", threads: int | None = None) -> Proposer:
    key = (name or "segments").strip()
    if key.lower() in PROPOSERS:
        return PROPOSERS[key.lower()]()
    from .sam import SamProposer

    return SamProposer.load(key, device=device, threads=threads)
