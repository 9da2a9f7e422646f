"""Transcription speed: a 5-second clip with the model already loaded."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
import wave
from pathlib import Path

import numpy as np

from ..speech.audio import SAMPLE_RATE, load_clip
from ..settings import Settings
from ..speech.recognizer import SpeechRecognizer
from .report import Report

CLIP_SECONDS = 5.0
TARGET_S = 1.5
SENTENCE = "show me a dog running along the beach at sunset, with waves and a few people in the distance"


def five_second_clip(work: Path, source: Path | None) -> Path:
    """Exactly five seconds: the given recording cut (or padded), or espeak-ng speaking."""
    if source is None:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            raise RuntimeError("no --speech-clip given and espeak-ng is not installed")
        source = work / "spoken.wav"
        subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(source), SENTENCE], check=True,
                       capture_output=True)
    samples = load_clip(source, CLIP_SECONDS).samples
    target_length = int(CLIP_SECONDS * SAMPLE_RATE)
    samples = np.pad(samples, (0, max(0, target_length - samples.size)))[:target_length]
    clip = work / "five-seconds.wav"
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return clip


def run(report: Report, settings: Settings, work: Path, source: Path | None, repeats: int = 5) -> None:
    clip = five_second_clip(work, source)
    recognizer = SpeechRecognizer(settings)
    began = time.perf_counter()
    recognizer.backend  # load
    loaded = time.perf_counter() - began
    recognizer.transcribe(clip)  # warm-up
    timings, text = [], ""
    for _ in range(repeats):
        began = time.perf_counter()
        text = recognizer.transcribe(clip).text  # decoding the file included
        timings.append(time.perf_counter() - began)
    median = statistics.median(timings)
    label = f"speech ({recognizer.backend.description}, {settings.asr_compute_type})"
    report.add(label, "load the model", loaded, "s")
    report.add(label, "transcribe a 5 s clip (median)", median, "s", target=f"<= {TARGET_S:g}",
               met=median <= TARGET_S)
    report.add(label, "real-time factor", median / CLIP_SECONDS, "x", baseline="clip length",
               ratio=median / CLIP_SECONDS)
    report.details["speech"] = {"model": recognizer.backend.description, "seconds": timings, "text": text}
