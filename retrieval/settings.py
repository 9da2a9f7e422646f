"""Settings: one place, read from environment variables with documented defaults.

The CLI overrides individual fields with flags (see ``cli.py``); the app and the
scripts read the same variables, so a setting means the same thing everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import RetrievalError

# Files bigger than this are skipped unread (a runaway file, or not a photo); MAX_FILE_MB overrides it.
DEFAULT_MAX_FILE_MB = 500
MAX_REGIONS_PER_PHOTO = 64  # region records one photo may have (REGIONS_PER_PHOTO, --regions-per-photo)

DEFAULT_MODEL = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
DEFAULT_CHROMA_PATH = "chroma_store"
DEFAULT_COLLECTION = "photos"
DEFAULT_ASR_MODEL = "base"  # multilingual, so other languages can be translated to English


def _int(name: str, default: int | None, minimum: int = 1) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise RetrievalError(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise RetrievalError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise RetrievalError(f"{name}={raw!r} should be 1 or 0 (true or false).")


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RetrievalError(f"{name}={raw!r} is not a number.") from None
    if not 0.0 <= value <= 1.0:
        raise RetrievalError(f"{name} must be between 0 and 1, got {value}.")
    return value


def _language(raw: str) -> str | None:
    """``ASR_LANGUAGE``: empty or "auto" to detect, else a language code such as en or de."""
    code = raw.strip().lower()
    if code in ("", "auto"):
        return None
    if not code.isalpha() or not 2 <= len(code) <= 3:
        raise RetrievalError(f"ASR_LANGUAGE={raw!r}: use a language code such as en, de, fr, or auto.")
    return code


def _regions_per_photo(value: int) -> int:
    if value > MAX_REGIONS_PER_PHOTO:
        raise RetrievalError(f"REGIONS_PER_PHOTO can be at most {MAX_REGIONS_PER_PHOTO}, got {value}.")
    return value


def parse_store(raw: str) -> str:
    """``STORE``: ``chroma`` (default; CHROMA_PATH or CHROMA_HOST say where), ``milvus:PATH``
    (Milvus Lite in a local folder) or ``milvus://HOST:PORT`` (a Milvus server or cluster)."""
    value = raw.strip()
    if value in ("", "chroma"):
        return "chroma"
    if value.startswith("milvus://") and len(value) > len("milvus://"):
        return value
    if value.startswith("milvus:") and not value.startswith("milvus://") and len(value) > len("milvus:"):
        return value
    raise RetrievalError(f"STORE={raw!r}: use chroma, milvus:FOLDER (Milvus Lite, a local folder) "
                         "or milvus://HOST:PORT (a Milvus server).")


def model_setting(env) -> str:
    """MODEL as given ("" when unset); CLIP_MODEL, its earlier name, keeps working."""
    return env.get("MODEL", "").strip() or env.get("CLIP_MODEL", "").strip()


@dataclass(frozen=True)
class Settings:
    model: str = DEFAULT_MODEL  # any supported image-text model: Hugging Face id or local folder
    store: str = "chroma"  # the backend: chroma, milvus:FOLDER, milvus://HOST:PORT (see parse_store)
    milvus_token: str | None = None  # "user:password" or an API key for a Milvus server
    chroma_path: Path = Path(DEFAULT_CHROMA_PATH)
    chroma_host: str | None = None
    chroma_port: int = 8000
    collection: str = DEFAULT_COLLECTION
    batch_size: int = 32
    torch_threads: int | None = None
    decode_workers: int = 2
    max_image_pixels: int = 100_000_000
    max_file_mb: int = DEFAULT_MAX_FILE_MB  # bigger files are skipped unread
    precision: str = "auto"  # model arithmetic: auto, float32, bfloat16, float16 (see embedder/runtime.py)
    device: str = "auto"  # where the model runs: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, mps
    text_export: bool = True  # text queries through the model's checked ONNX export (embedder/text_export.py)
    media_path: Path | None = None  # None: a "media" folder inside the local store
    collection_import: str | None = None  # the app starts from this export (folder or hf:OWNER/NAME)
    max_upload_mb: int = 50
    starter_gallery: bool = True
    asr_backend: str = "faster-whisper"
    asr_model: str = DEFAULT_ASR_MODEL
    asr_compute_type: str = "int8"
    asr_max_seconds: float = 30.0
    asr_language: str | None = None  # None: detect; else a Whisper language code ("en", "de"...)
    asr_temperature: float = 0.0  # 0: deterministic decoding; higher values sample (not reproducible)
    app_concurrency: int = 4  # searches the app runs at once
    regions: bool = False  # index objects and regions of each photo too (index --regions)
    region_proposer: str = "segments"  # segments, grid, or a SAM model (Hugging Face id or folder)
    regions_per_photo: int = 16

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        return cls(
            model=model_setting(env) or DEFAULT_MODEL,
            store=parse_store(env.get("STORE", "")),
            milvus_token=env.get("MILVUS_TOKEN", "").strip() or None,
            chroma_path=Path(env.get("CHROMA_PATH", "").strip() or DEFAULT_CHROMA_PATH),
            chroma_host=env.get("CHROMA_HOST", "").strip() or None,
            chroma_port=_int("CHROMA_PORT", 8000),
            collection=env.get("CHROMA_COLLECTION", "").strip() or DEFAULT_COLLECTION,
            batch_size=_int("BATCH_SIZE", 32),
            torch_threads=_int("TORCH_THREADS", None),
            decode_workers=_int("DECODE_WORKERS", 2),
            max_image_pixels=_int("MAX_IMAGE_PIXELS", 100_000_000),
            max_file_mb=_int("MAX_FILE_MB", DEFAULT_MAX_FILE_MB),
            precision=env.get("PRECISION", "").strip().lower() or "auto",
            device=env.get("DEVICE", "").strip().lower() or "auto",
            text_export=_flag("TEXT_EXPORT", True),
            media_path=Path(env["MEDIA_PATH"].strip()) if env.get("MEDIA_PATH", "").strip() else None,
            collection_import=env.get("COLLECTION_IMPORT", "").strip() or None,
            max_upload_mb=_int("MAX_UPLOAD_MB", 50),
            starter_gallery=_flag("STARTER_GALLERY", True),
            asr_backend=env.get("ASR_BACKEND", "").strip().lower() or "faster-whisper",
            asr_model=env.get("ASR_MODEL", "").strip() or DEFAULT_ASR_MODEL,
            asr_compute_type=env.get("ASR_COMPUTE_TYPE", "").strip() or "int8",
            asr_max_seconds=float(_int("ASR_MAX_SECONDS", 30)),
            asr_language=_language(env.get("ASR_LANGUAGE", "")),
            asr_temperature=_float("ASR_TEMPERATURE", 0.0),
            app_concurrency=_int("APP_CONCURRENCY", 4),
            regions=_flag("REGIONS", False),
            region_proposer=env.get("REGION_PROPOSER", "").strip() or "segments",
            regions_per_photo=_regions_per_photo(_int("REGIONS_PER_PHOTO", 16)),
        )

    def with_overrides(self, **changes) -> "Settings":
        """A copy with the given fields replaced; ``None`` values keep the current one."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1_000_000

    @property
    def store_backend(self) -> str:
        return "milvus" if self.store.startswith("milvus") else "chroma"

    @property
    def milvus_lite_path(self) -> Path | None:
        """The Milvus Lite folder, or ``None`` for a Milvus server (or Chroma)."""
        if self.store.startswith("milvus:") and not self.store.startswith("milvus://"):
            return Path(self.store[len("milvus:"):]).expanduser()
        return None

    @property
    def store_location(self) -> str:
        if self.store_backend == "milvus":
            lite = self.milvus_lite_path
            return str(lite.resolve()) if lite is not None else self.store
        if self.chroma_host:
            return f"http://{self.chroma_host}:{self.chroma_port}"
        return str(self.chroma_path.resolve())

    @property
    def media_folder(self) -> Path:
        """Where the app keeps uploads, thumbnails and the starter photos."""
        if self.media_path is not None:
            return self.media_path.expanduser().resolve()
        return (self.chroma_path / "media").resolve()
