"""What a store records about the model that made its vectors (no model code here,
so the store and the commands that never embed stay free of torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSignature:
    name: str
    dim: int
    fingerprint: str  # a hash of the projection weights: same weights, same vectors

    @classmethod
    def from_facts(cls, facts: dict) -> "ModelSignature":
        """The signature a collection (or an export's manifest) recorded (``store.contract.model_facts``)."""
        return cls(str(facts["model"]), int(facts["dim"]), str(facts.get("fingerprint") or ""))
