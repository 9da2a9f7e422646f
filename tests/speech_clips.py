"""Spoken test clips, made at test time: espeak-ng speaks, ffmpeg converts.

Both are Debian packages installed by ``.ci/run``; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

SENTENCES = [
    "a dog running on the beach",
    "a red car parked in the street",
    "two children playing in the snow",
    "a plate of fresh fruit on a wooden table",
]


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run `apt-get install {tool}` (see .ci/run)"
    return path


def speak(text: str, target: Path, speed: int = 160) -> Path:
    """A wav file of espeak-ng saying ``text`` (22.05 kHz mono).

    The plain "en" voice at 160 words a minute is the one the small Whisper
    model understands best (word error rate about 0.2 on these sentences).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([require("espeak-ng"), "-v", "en", "-s", str(speed), "-w", str(target), text],
                   check=True, capture_output=True)
    return target


def convert(source: Path, target: Path, *options: str) -> Path:
    """Re-encode with ffmpeg; the codec follows from ``target``'s extension unless given."""
    subprocess.run([require("ffmpeg"), "-y", "-loglevel", "error", "-i", str(source), *options, str(target)],
                   check=True, capture_output=True)
    return target


def write_wav(target: Path, samples: np.ndarray, rate: int = 16_000, channels: int = 1) -> Path:
    """Float samples in [-1, 1] (frames x channels for stereo) as 16-bit PCM."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(target), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return target


def pad_with_silence(source: Path, target: Path, seconds: float) -> Path:
    """``source`` followed by ``seconds`` of silence (ffmpeg's apad filter)."""
    return convert(source, target, "-af", f"apad=pad_dur={seconds}")
