"""What a store records about the model that made its vectors, and what names a model file (no
model code here, so the store and the commands that never embed stay free of torch)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def file_fingerprint(path: Path) -> str:
    """A model file's content, in 20 hex digits: what a derived model was made from, or which
    detector read a photo."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class ModelSignature:
    name: str
    dim: int
    fingerprint: str  # a hash of the projection weights: same weights, same vectors

    @classmethod
    def from_facts(cls, facts: dict) -> "ModelSignature":
        """The signature a collection (or an export's manifest) recorded (``store.contract.model_facts``)."""
        return cls(str(facts["model"]), int(facts["dim"]), str(facts.get("fingerprint") or ""))
