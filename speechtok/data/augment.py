"""Speaker augmentation that keeps the words: new pseudo-speakers from few real and synthetic voices.

A :class:`Profile` is one pseudo-speaker: a pitch scale, a vocal-tract (formant) warp and a mild
room, EQ tilt and noise floor, all fixed for every utterance of that pseudo-speaker so it sounds
like one person. Per utterance only the speaking rate varies (0.85–1.15). Pitch, formants and rate
are changed together in one WORLD analysis–resynthesis (``pyworld``): F0 is scaled, the spectral
envelope's frequency axis is warped, and the frame period is stretched, so neither pitch nor
formants move with the rate.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..audio import resample
from ..errors import DataError
from .moonshine import INSTALL_HINT

#: WORLD works at this rate at most: faster and enough for the 12 kHz band the tokenizers model.
MAX_RATE = 24000
_FRAME_MS = 5.0


@dataclass(frozen=True)
class Profile:
    """A pseudo-speaker's fixed transformation."""

    name: str
    pitch: float  # F0 multiplier
    formant: float  # spectral-envelope frequency warp (>1: shorter vocal tract, brighter)
    room_rt60: float  # seconds of synthetic reverberation tail; 0 = dry
    room_wet: float  # share of the reverberant signal
    tilt_db: float  # spectral tilt across the band, dB (+: brighter)
    snr_db: float  # noise floor below the speech level


def draw_profiles(count: int, seed: int) -> list[Profile]:
    """``count`` pseudo-speakers from ``seed``. Pitch and formant move together part of the way
    (as between real people), so a low pitch seldom comes with a tiny vocal tract."""
    rng = np.random.default_rng([seed, 0x617567])
    profiles = []
    for k in range(count):
        shift = rng.uniform(-1.0, 1.0)
        pitch = float(np.exp(0.35 * shift + rng.normal(0, 0.08)))  # about 0.65–1.5×
        formant = float(np.exp(0.08 * shift + rng.normal(0, 0.03)))  # about 0.9–1.1×
        profiles.append(Profile(
            name=f"aug{k:02d}",
            pitch=round(pitch, 3), formant=round(formant, 3),
            room_rt60=round(float(rng.uniform(0.1, 0.45)) if rng.random() < 0.6 else 0.0, 3),
            room_wet=round(float(rng.uniform(0.1, 0.3)), 3),
            tilt_db=round(float(rng.uniform(-6, 6)), 2),
            snr_db=round(float(rng.uniform(25, 45)), 1),
        ))
    return profiles


def augment(wav: np.ndarray, sample_rate: int, profile: Profile, speed: float, seed: int) -> tuple[np.ndarray, int]:
    """Apply ``profile`` at speaking rate ``speed``; returns float32 audio and its rate (≤ 24 kHz)."""
    rate = min(sample_rate, MAX_RATE)
    x = resample(np.asarray(wav, np.float32), sample_rate, rate).astype(np.float64)
    y = _world(x, rate, profile.pitch, profile.formant, speed)
    rng = np.random.default_rng(seed)
    y = _tilt(y, rate, profile.tilt_db)
    if profile.room_rt60 > 0:
        y = _room(y, rate, profile.room_rt60, profile.room_wet, rng)
    level = np.sqrt(np.mean(y ** 2)) + 1e-9
    y = y + rng.standard_normal(y.size) * level * 10 ** (-profile.snr_db / 20)
    return (y / max(1.0, float(np.abs(y).max()) / 0.95)).astype(np.float32), rate


def _world(x: np.ndarray, rate: int, pitch: float, formant: float, speed: float) -> np.ndarray:
    try:
        with warnings.catch_warnings():  # pyworld 0.3.5 imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import pyworld
    except ImportError:
        raise DataError(f"speaker augmentation needs pyworld: {INSTALL_HINT}") from None
    f0, times = pyworld.dio(x, rate, frame_period=_FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, rate)
    envelope = pyworld.cheaptrick(x, f0, times, rate)
    aperiodicity = pyworld.d4c(x, f0, times, rate)
    bins = envelope.shape[1]
    # Output bin k takes the envelope at frequency k / formant: a formant > 1 moves resonances up.
    source = np.clip(np.arange(bins) / formant, 0, bins - 1)
    warped = np.stack([np.interp(source, np.arange(bins), frame) for frame in envelope])
    y = pyworld.synthesize(f0 * pitch, np.ascontiguousarray(warped), aperiodicity, rate,
                           frame_period=_FRAME_MS / speed)
    return y


def _tilt(y: np.ndarray, rate: int, tilt_db: float) -> np.ndarray:
    """A linear-in-log-frequency EQ tilt, applied in the frequency domain (no phase change)."""
    spectrum = np.fft.rfft(y)
    freqs = np.fft.rfftfreq(y.size, 1 / rate)
    octaves = np.log2(np.maximum(freqs, 100.0) / 1000.0) / np.log2(rate / 2 / 1000.0)
    return np.fft.irfft(spectrum * 10 ** (tilt_db * octaves / 20), n=y.size)


def _room(y: np.ndarray, rate: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Mix in a synthetic room: exponentially decaying noise as the impulse response (60 dB over rt60)."""
    try:
        from scipy.signal import fftconvolve
    except ImportError:
        raise DataError(f"room augmentation needs scipy: {INSTALL_HINT}") from None

    t = np.arange(int(rt60 * rate)) / rate
    response = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    response /= np.sqrt(np.sum(response ** 2)) + 1e-9
    reverberant = fftconvolve(y, response)[: y.size]
    return (1 - wet) * y + wet * reverberant
