"""Bring a reconstruction onto its reference: same rate, codec delay removed, same length.

Intrusive metrics (STOI, PESQ, mel distance, MCD) compare sample by sample or frame by frame, and
pystoi does no alignment of its own: a 20 ms codec delay alone drops Codec2 3200's STOI from 0.86 to
0.66. So every pair is resampled to the judge's rate and shifted by the lag that maximises their
cross-correlation before any metric sees it.

The correlation is taken between short-time amplitude envelopes (10 ms RMS every 1 ms), not raw
samples: parametric codecs (Codec2 700C/450, vocoders) do not keep the waveform's phase, and on
them the raw-sample peak lands tens of ms off (700C: 60 ms instead of 30, STOI 0.45 instead of 0.69).
Envelope lags matched the STOI-maximising lag within 1 ms on Codec2, Speex, AMR-NB and Opus.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from ..audio import resample

#: Largest codec delay searched for, in seconds (codecs here delay by 2-60 ms; vocoders a little more).
MAX_LAG_SECONDS = 0.5
#: Envelope resolution: RMS over ``ENVELOPE_WINDOW_S`` every ``ENVELOPE_HOP_S`` seconds.
ENVELOPE_WINDOW_S, ENVELOPE_HOP_S = 0.010, 0.001


@dataclass(frozen=True)
class AlignedPair:
    """Reference and reconstruction at one rate, equally long, with the delay that was removed."""

    reference: np.ndarray
    degraded: np.ndarray
    sample_rate: int
    delay_samples: int

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self.delay_samples / self.sample_rate

    def at_rate(self, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Both signals resampled to ``sample_rate`` (for PESQ narrow-band at 8 kHz)."""
        ref = resample(self.reference, self.sample_rate, sample_rate)
        deg = resample(self.degraded, self.sample_rate, sample_rate)
        n = min(ref.size, deg.size)
        return ref[:n], deg[:n]


def envelope(wav: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Mean-removed short-time RMS, one value per ``hop`` samples."""
    energy = np.convolve(wav.astype(np.float64) ** 2, np.full(window, 1.0 / window), mode="same")
    env = np.sqrt(np.maximum(energy, 0.0))[::hop]
    return env - env.mean()


def estimate_delay(reference: np.ndarray, degraded: np.ndarray, sample_rate: int, max_lag_seconds: float) -> int:
    """Lag (samples, a multiple of the envelope hop) by which ``degraded`` trails ``reference``."""
    hop, window = round(ENVELOPE_HOP_S * sample_rate), round(ENVELOPE_WINDOW_S * sample_rate)
    ref, deg = envelope(reference, window, hop), envelope(degraded, window, hop)
    corr = scipy.signal.correlate(deg, ref, mode="full", method="fft")
    lags = scipy.signal.correlation_lags(deg.size, ref.size, mode="full")
    allowed = np.abs(lags) <= max_lag_seconds * sample_rate / hop
    return int(lags[allowed][np.argmax(corr[allowed])]) * hop


def align(
    reference: np.ndarray,
    ref_rate: int,
    degraded: np.ndarray,
    deg_rate: int,
    sample_rate: int = 16000,
    max_lag_seconds: float = MAX_LAG_SECONDS,
) -> AlignedPair:
    """Resample both signals to ``sample_rate``, remove the delay, cut to the common length."""
    ref = resample(np.asarray(reference, dtype=np.float32), ref_rate, sample_rate)
    deg = resample(np.asarray(degraded, dtype=np.float32), deg_rate, sample_rate)
    delay = estimate_delay(ref, deg, sample_rate, max_lag_seconds)
    if delay > 0:
        deg = deg[delay:]
    elif delay < 0:
        ref = ref[-delay:]
    n = min(ref.size, deg.size)
    return AlignedPair(ref[:n].copy(), deg[:n].copy(), sample_rate, delay)
