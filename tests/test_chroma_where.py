"""Chroma's ``get`` by ids applies the filter itself (Chroma takes half a second for ids and a where
clause together): its answers must be the ones Chroma's own where clause gives."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.model_signature import ModelSignature
from retrieval.store import open_store
from retrieval.store.chroma import chroma_where, holds_where
from retrieval.store.filters import AllOf, Compare, OneOf, TagRule

METADATA = [
    {"width": 640, "photographer": "Ana", "tags": ["dog", "beach"], "portrait": True, "year": 2021, "score": 0.5},
    {"width": 1024, "photographer": "Ben", "tags": ["dog"], "portrait": False, "year": 2019},
    {"width": "640", "photographer": "Cy", "year": 2024, "score": 2},  # a width stored as text
    {"photographer": "Ana", "tags": ["beach", "sun", "sky"], "year": 2020.0},
    {"width": 320, "portrait": True},
]
FILTERS = [
    ({"width": 640}, None), ({"width": Compare("=", 640, "640")}, None), ({"width": Compare("!=", 640, "640")}, None),
    ({"width": Compare(">", 500)}, None), ({"width": Compare("<=", 640)}, None), ({"year": AllOf.between(2020, 2024)}, None),
    ({"photographer": ["Ana", "Cy"]}, None), ({"photographer": OneOf(("Ana", 3))}, None), ({"portrait": True}, None),
    ({"portrait": False}, None), ({"score": Compare(">=", 1)}, None), ({"year": 2020}, None),
    ({}, TagRule.all_of(["dog", "beach"])), ({}, TagRule.any_of(["sun", "dog"])), ({}, TagRule(("dog", "beach", "sun"), 2)),
    ({"photographer": "Ana"}, TagRule.any_of(["beach"])), ({"photographer": "Nobody"}, None),
]


@pytest.mark.parametrize("filters, tags", FILTERS)
def test_the_filter_applied_here_is_chromas_own(tmp_path, filters, tags):
    from retrieval.settings import Settings

    store = open_store(Settings(chroma_path=tmp_path / "store"))
    store.bind(ModelSignature("hand-made", 3, "f00d"))
    ids = [f"p{i}" for i in range(len(METADATA))]
    store.upsert(ids, np.eye(len(METADATA), 3, dtype=np.float32) + 0.1, METADATA)
    where = chroma_where(filters, tags)
    with store._reading() as collection:
        chroma = set(collection.get(where=where, include=[])["ids"])
    assert {r.id for r in store.get(ids, filters=filters, tags=tags)} == chroma
    assert {i for i, m in zip(ids, METADATA) if holds_where({k: v for k, v in m.items()}, where)} == chroma
