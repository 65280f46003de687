"""Audio for face steps: decode with PyAV, loudness per video frame, phonemes with pocketsphinx."""
from __future__ import annotations

import os
from dataclasses import dataclass

import av
import numpy as np

from vfx.errors import VfxError

RATE = 16000  # pocketsphinx's acoustic model rate
PHONE_FRAME_S = 0.01  # pocketsphinx segments are counted in 10 ms frames


@dataclass(frozen=True)
class Phone:
    phone: str  # ARPAbet without stress, or SIL
    start: float  # seconds
    end: float


def load_audio(path: str, rate: int = RATE) -> np.ndarray:
    """Mono float32 samples in -1..1 at ``rate`` from any file PyAV can decode (first audio stream)."""
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise VfxError(f"{path}: not a readable audio file ({exc})") from None
    with container:
        if not container.streams.audio:
            raise VfxError(f"{path}: has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        except av.FFmpegError as exc:
            raise VfxError(f"{path}: audio cannot be decoded ({exc})") from None
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    if not chunks:
        raise VfxError(f"{path}: the audio stream is empty")
    return np.concatenate(chunks).astype(np.float32)


def loudness(samples: np.ndarray, times: np.ndarray, window: float, rate: int = RATE) -> np.ndarray:
    """Loudness at each time, 0 (silence, -50 dB below the peak) .. 1 (the loudest window)."""
    half = max(1, int(window * rate / 2))
    centres = np.round(np.asarray(times) * rate).astype(int)
    padded = np.pad(samples.astype(np.float64) ** 2, (half, half))
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    lo = np.clip(centres, 0, len(samples))
    power = (csum[lo + 2 * half] - csum[lo]) / (2 * half)
    power[(centres < 0) | (centres >= len(samples))] = 0.0
    db = 10 * np.log10(power + 1e-12)
    peak = db.max() if len(db) else 0.0
    return np.clip((db - (peak - 50.0)) / 50.0, 0.0, 1.0).astype(np.float32)


def phonemes(samples: np.ndarray, rate: int = RATE) -> list[Phone]:
    """Phone segments recognised by pocketsphinx's English phone-loop decoder (offline, bundled model)."""
    from pocketsphinx import Decoder, get_model_path

    if rate != RATE:
        raise VfxError(f"phoneme recognition needs {RATE} Hz audio, got {rate}")
    model = get_model_path()
    decoder = Decoder(hmm=os.path.join(model, "en-us", "en-us"), allphone=os.path.join(model, "en-us", "en-us-phone.lm.bin"),
                      lm=None, lw=2.0, beam=1e-20, pbeam=1e-20, samprate=RATE, loglevel="FATAL")
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    return [Phone(seg.word.rstrip("012"), seg.start_frame * PHONE_FRAME_S, (seg.end_frame + 1) * PHONE_FRAME_S)
            for seg in decoder.seg()]
