"""Indexing on a Ray cluster: the pipeline's stages and embed step as a Ray Data pipeline.

The indexer (``indexing/ingest.py``) and its writer still run here: they scan the folders,
skip what is stored already (so a run resumes where the last one stopped) and tell moves
and duplicates apart. What costs time, the stages (read, decode, preprocess, facts, hash:
the same stage objects as on this process's threads, ``stages.photo_stages``) and the model,
happens in a pool of Ray actors, each holding the model once. With a
store every worker can reach (a Milvus server or cluster) each worker also stores
the photos it embeds, so no vector passes through this process and the writes
spread over the cluster; with an embedded store (Chroma, Milvus Lite) this
process is its one writer. A killed actor is restarted by Ray and its batch is run
again; the vectors are the ones a single process would make (same preprocessing,
same model).

``address``: ``local`` starts a Ray instance on this machine (all its CPUs, or
``num_cpus``), anything else is given to ``ray.init`` (``auto``, ``HOST:6379``,
``ray://HOST:10001``). With GPUs in the cluster each actor takes one.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import RetrievalError
from ..settings import Settings

log = logging.getLogger(__name__)

LOCAL = "local"
_PACKAGE = Path(__file__).resolve().parent


def looks_like_address(value: str) -> bool:
    """``index --ray [ADDRESS] FOLDER``: whether the word after --ray is a cluster address."""
    if value in (LOCAL, "auto") or "://" in value:
        return True
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and not Path(value).exists()


def connect(address: str, num_cpus: int | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise RetrievalError("index --ray needs Ray: pip install 'ray[data]'") from None
    if ray.is_initialized():
        return
    try:
        if address == LOCAL:
            # Ray gives its own control server 30 s to start; on a busy machine it has taken longer.
            os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
            # Workers import this package from where it is, as the driver does.
            paths = [str(_PACKAGE.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}})
        else:
            ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": [str(_PACKAGE)]})
    except Exception as exc:  # noqa: BLE001 - ray raises many kinds for a cluster that isn't there
        raise RetrievalError(f"Could not connect to the Ray cluster at {address} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}). Check the address "
                             "(`ray status` on the head node), or use --ray local.") from None


_COLUMNS = ("path", "id", "size", "mtime", "width", "height", "reason", "detail", "fields", "failed", "timings")


def _row(photo) -> dict[str, Any]:
    """A prepared photo as one row of a Ray batch (plain values: what crosses between processes)."""
    rejected = photo.rejected
    return {"path": str(photo.path), "id": photo.id, "size": photo.size, "mtime": photo.mtime,
            "width": photo.width, "height": photo.height, "reason": rejected.reason.value if rejected else "",
            "detail": rejected.detail if rejected else "", "fields": json.dumps(photo.fields),
            "failed": json.dumps(photo.failed), "timings": json.dumps(photo.timings)}


def _photo(batch: dict[str, np.ndarray], i: int):
    """Row ``i`` of a batch the workers sent back, as the ``Photo`` the writer takes."""
    from ..photos.images import ImageRejected, SkipReason
    from .photo import Photo

    photo = Photo(path=Path(str(batch["path"][i])), size=int(batch["size"][i]), mtime=float(batch["mtime"][i]),
                  id=str(batch["id"][i]), width=int(batch["width"][i]), height=int(batch["height"][i]),
                  fields=json.loads(str(batch["fields"][i])), failed=json.loads(str(batch["failed"][i])),
                  timings=json.loads(str(batch["timings"][i])))
    if batch["reason"][i]:
        photo.rejected = ImageRejected(SkipReason(str(batch["reason"][i])), str(batch["detail"][i]))
    elif "written" in batch:
        photo.written = bool(batch["written"][i])
        photo.metadata = json.loads(str(batch["metadata"][i])) if photo.written else {}
    else:
        photo.vector = np.asarray(batch["vector"][i], dtype=np.float32)
    return photo


class EmbedFiles:
    """One Ray actor: the model and the stages built once; each call runs a batch of files
    through the stages and the model (and, with ``writes``, stores the new photos)."""

    def __init__(self, settings: Settings, threads: int, writes=None):
        """``writes``: an ``ingest.WorkerWrites`` when this worker stores what it embeds."""
        from ..embedder import load_embedder
        from .stages import photo_stages

        self.settings = settings
        self.embedder = load_embedder(settings.model, threads, settings.precision, settings.device,
                                      text_export=False, image_export=settings.image_export,
                                      image_int8=settings.image_int8)
        ocr = None
        if settings.ocr:
            from ..text.ocr import OcrReader

            ocr = OcrReader.of(settings)
        captioner = None
        if settings.captions:
            from ..text.captions import TransformersCaptioner

            captioner = TransformersCaptioner(settings.caption_model, threads)
        self.stages = photo_stages(self.embedder, max_image_pixels=settings.max_image_pixels,
                                   max_file_bytes=settings.max_file_bytes, ocr=ocr, captioner=captioner)
        self.writes, self.store = writes, None
        if writes is not None:
            from ..store import open_store

            self.store = open_store(settings)
            self.store.bind(self.embedder.signature)  # the model guard holds on every worker too

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import time

        from .photo import Photo
        from .stages import run_stages

        photos = [run_stages(Photo(path=Path(str(path))), self.stages) for path in batch["path"]]
        good = [n for n, photo in enumerate(photos) if not photo.finished_early]
        vectors = np.zeros((len(photos), self.embedder.dim), dtype=np.float32)
        if good:
            started = time.perf_counter()
            vectors[good] = self.embedder.embed_pixels([photos[n].pixels for n in good])
            each = (time.perf_counter() - started) / len(good)
            for n in good:
                photos[n].timings["embed"] = each
        rows = [_row(photo) for photo in photos]
        columns = {name: np.asarray([row[name] for row in rows]) for name in _COLUMNS}
        if self.writes is not None:
            return {**columns, **self._store_batch(photos, vectors, good)}
        return {**columns, "vector": vectors}

    def _store_batch(self, photos: list, vectors: np.ndarray, good: list[int]) -> dict[str, Any]:
        """Store the batch's new photos here; send back what the indexer needs, without vectors."""
        from .writer import new_record_metadata

        writes = self.writes
        new, seen = [], set()
        for n in good:
            record_id = photos[n].id
            if record_id not in writes.stored_ids and record_id not in seen:  # a copy is the indexer's to judge
                seen.add(record_id)
                new.append(n)
        metadata = ["" for _ in photos]
        if new:
            records = [new_record_metadata(photos[n], writes.source, writes.added_at, writes.metadata(photos[n].path))
                       for n in new]
            self.store.upsert([photos[n].id for n in new], vectors[new], records)
            for n, record in zip(new, records):
                metadata[n] = json.dumps(record)
        written = np.zeros(len(photos), dtype=bool)
        written[new] = True
        return {"written": written, "metadata": np.asarray(metadata)}


class RayCluster:
    """``Indexer(cluster=...)``: files in, each file's prepared ``Photo`` out, as the cluster
    finishes them, in the order given."""

    def __init__(self, settings: Settings, address: str = LOCAL, workers: int | None = None,
                 num_cpus: int | None = None, precision: Callable[[], str] | None = None):
        """``precision``: the arithmetic this process's model settled on (``PRECISION=auto`` times
        bfloat16 against float32 on a CPU); CPU workers use it rather than each timing its own."""
        self.settings, self.address, self.workers, self.num_cpus = settings, address, workers, num_cpus
        self.precision = precision

    def workers_can_write(self) -> bool:
        """Whether every worker can reach the store: a Milvus server or cluster (an embedded
        store lives in one process)."""
        return self.settings.store_backend == "milvus" and self.settings.milvus_lite_path is None

    def prepare(self, paths: list[Path], writes=None) -> Iterator:
        """``writes`` (``ingest.WorkerWrites``): let the workers store what they embed, when they can."""
        if not paths:
            return
        import ray
        import ray.data

        connect(self.address, self.num_cpus)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the indexer shows its own progress
        context.print_on_execution_start = False
        context.execution_options.preserve_order = True  # files come back in scan order, as claimed alone
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        workers = self.workers or (gpus or cpus)
        threads = 1 if gpus else max(1, cpus // workers)
        settings = self.settings if gpus else self.settings.with_overrides(device="cpu")
        if not gpus and settings.precision == "auto" and self.precision is not None:
            arithmetic = self.precision()  # the same vectors as here (INT8 follows IMAGE_INT8 instead)
            if arithmetic in ("float32", "bfloat16"):
                settings = settings.with_overrides(precision=arithmetic)
        if not self.workers_can_write():
            writes = None
        log.info("embedding %d files on Ray: %d workers, %s%s", len(paths), workers,
                 f"{gpus} GPUs" if gpus else f"{threads} CPU threads each",
                 ", each storing what it embeds" if writes is not None else "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray's notice that these remote arguments will be renamed
            dataset = ray.data.from_items([{"path": str(p)} for p in paths]).map_batches(
                EmbedFiles, fn_constructor_kwargs={"settings": settings, "threads": threads, "writes": writes},
                batch_size=self.settings.batch_size, compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=0 if gpus else threads, num_gpus=1 if gpus else 0,
                # A worker that dies is started again and its batch run again.
                max_restarts=-1, max_task_retries=-1,
            )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["path"])):
                yield _photo(batch, i)
