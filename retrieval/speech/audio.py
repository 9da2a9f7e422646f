"""Audio files -> 16 kHz mono float32 samples, the input every Whisper backend takes.

PyAV (FFmpeg's libraries, bundled in its wheel) reads wav, mp3, flac, ogg, webm,
m4a and what browsers record, at any sample rate and channel layout, with no
system ffmpeg. Decoding stops at the length cap, so a two-hour upload costs no
more than a clip of the cap's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RetrievalError

SAMPLE_RATE = 16_000


@dataclass
class Clip:
    samples: np.ndarray  # float32 in [-1, 1], mono, SAMPLE_RATE
    duration: float  # seconds kept
    trimmed: bool  # the file was longer than the cap

    @property
    def peak(self) -> float:
        return float(np.abs(self.samples).max()) if self.samples.size else 0.0


def load_clip(path: str | Path, max_seconds: float) -> Clip:
    """Decode up to ``max_seconds`` of an audio file, mixed to mono and resampled."""
    import av  # imported here: only voice search needs it

    path = Path(path)
    if not path.is_file():
        raise RetrievalError(f"The audio file {path} does not exist.")
    if path.stat().st_size == 0:
        raise RetrievalError(f"{path.name} is empty: record or choose a clip with speech in it.")
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    kept = 0
    trimmed = False
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise RetrievalError(f"{path.name} has no audio in it.")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    kept += chunks[-1].size
                if kept > limit:
                    trimmed = True
                    break
            else:
                for out in resampler.resample(None):  # what the resampler still holds
                    chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise RetrievalError(
            f"{path.name} can't be read as audio ({exc.strerror or type(exc).__name__}). "
            "Use a wav, mp3, flac, ogg, webm or m4a recording."
        ) from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if samples.size > limit:
        samples, trimmed = samples[:limit], True
    samples = samples.astype(np.float32) / 32768.0
    if samples.size == 0:
        raise RetrievalError(f"{path.name} contains no audio samples.")
    return Clip(samples=samples, duration=samples.size / SAMPLE_RATE, trimmed=trimmed)
