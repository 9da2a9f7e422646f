"""Giving described photos the vector of their descriptions' meaning (``text/meanings.py``), stored
under the photo's id in the collection's companion of meanings (``PhotoStore.meanings``).

It reads records, never files: whatever wrote the description (a metadata table, Unsplash, a
captioning model, OCR) wrote it into the record first. Batch by batch, the vectors are stored
before the photos are stamped with the text they came from (``MEANING_STAMP_FIELD``), so a run
killed mid-batch leaves those photos unstamped and the next run embeds them again; a photo whose
text changed since (a caption added, a description edited) is embedded again too, and one whose
text is gone loses its vector. A companion made by another sentence model is emptied and made
again with this one: vectors of two models can't be compared.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import RetrievalError
from ..store import PhotoStore, StoredRecord
from ..text.meanings import MEANING_STAMP_FIELD, meaning_stamp, meaning_text

if TYPE_CHECKING:
    from ..text.sentences import SentenceModel

log = logging.getLogger(__name__)

BATCH = 128  # texts embedded and committed together


@dataclass
class MeaningReport:
    embedded: int = 0  # photos given a (new) meaning vector in this run
    removed: int = 0  # photos whose text is gone, their vector with it
    seconds: float = 0.0


class MeaningIndexer:
    def __init__(self, store: PhotoStore, model_name: str, load: Callable[[], "SentenceModel"]):
        """``model_name``: the sentence model's name as the setting gives it, compared with the one
        the companion records, so a run with nothing to do never loads the model; ``load``: loads it."""
        self.store, self.model_name, self.load = store, model_name, load

    def run(self, records: Sequence[StoredRecord],
            progress: Callable[[int, int, str], None] | None = None) -> MeaningReport:
        started = time.perf_counter()
        report = MeaningReport()
        companion = self.store.meanings
        recorded = companion.recorded_model()
        same_model = recorded is not None and recorded.get("model") == self.model_name
        owing, emptied = [], []
        for record in records:
            text = meaning_text(record.metadata)
            stamp = meaning_stamp(text)
            if not text:
                if record.metadata.get(MEANING_STAMP_FIELD):
                    emptied.append(record)
            elif not same_model or record.metadata.get(MEANING_STAMP_FIELD) != stamp:
                owing.append((record, text, stamp))
        if emptied:
            companion.delete_records([record.id for record in emptied])
            self._stamp(emptied, [None] * len(emptied))
            report.removed = len(emptied)
        if owing:
            model = self.load()
            self._bind(companion, model)
            for start in range(0, len(owing), BATCH):
                batch = owing[start:start + BATCH]
                vectors = model.embed([text for _record, text, _stamp in batch])
                companion.upsert([record.id for record, _t, _s in batch], vectors,
                                 [{"stamp": stamp} for _r, _t, stamp in batch])
                self._stamp([record for record, _t, _s in batch], [stamp for _r, _t, stamp in batch])
                report.embedded += len(batch)
                if progress is not None:
                    progress(report.embedded, len(owing), str(batch[-1][0].metadata.get("path", "")))
                log.info("committed the meaning of %d photos (%d this run)", len(batch), report.embedded)
        report.seconds = time.perf_counter() - started
        return report

    def _bind(self, companion: PhotoStore, model: "SentenceModel") -> None:
        """Bind the companion to ``model``, emptying it first when another model made it."""
        try:
            companion.bind(model.signature)
            return
        except RetrievalError:
            pass
        stale = [record.id for record in companion.iter_all()]
        log.info("the descriptions' meanings were made by another sentence model: making %d again", len(stale))
        companion.delete_records(stale)
        companion.bind(model.signature)

    def _stamp(self, records: list[StoredRecord], stamps: list[str | None]) -> None:
        """Note on each photo the text its vector came from (None: the note removed)."""
        for record, stamp in zip(records, stamps):
            if stamp is None:
                record.metadata.pop(MEANING_STAMP_FIELD, None)
            else:
                record.metadata[MEANING_STAMP_FIELD] = stamp
        self.store.update_metadata([record.id for record in records],
                                   [{MEANING_STAMP_FIELD: stamp} for stamp in stamps])
