"""Signal metrics of a delay-aligned pair: STOI/ESTOI (pystoi), PESQ (pesq), log-mel distance, MCD.

STOI and PESQ come from their reference libraries; only the two spectral distances are computed
here. All functions take an :class:`~speechtok.eval.align.AlignedPair` so no metric can be fed an
unaligned or differently sampled pair by mistake.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.signal

from .align import AlignedPair

#: Mel front-end of the log-mel distance: 80 bands, 1024-point FFT, 256-sample hop at 16 kHz.
MEL_BANDS, MEL_FFT, MEL_HOP = 80, 1024, 256
#: MCD front-end: 25 ms / 10 ms frames at 16 kHz, 40 mel bands, cepstra c1..c24 (c0 = energy dropped).
MCD_FFT, MCD_WIN, MCD_HOP, MCD_BANDS, MCD_ORDER = 512, 400, 160, 40, 24
#: MCD is averaged over frames of the reference within this many dB of its loudest frame (speech).
MCD_SPEECH_DB = 40.0


def stoi_scores(pair: AlignedPair) -> dict[str, float]:
    """Short-time objective intelligibility, ``{"stoi", "estoi"}``, 0..1.

    pystoi works at 10 kHz and resamples both signals on every call; resampling once with its own
    resampler (``resample_oct``) gives bit-identical scores for both variants at less cost.
    """
    from pystoi import stoi as _stoi
    from pystoi.utils import resample_oct

    rate = 10000
    ref, deg = (resample_oct(x.astype(np.float64), rate, pair.sample_rate) for x in (pair.reference, pair.degraded))
    return {"stoi": float(_stoi(ref, deg, rate)), "estoi": float(_stoi(ref, deg, rate, extended=True))}


def stoi(pair: AlignedPair, extended: bool = False) -> float:
    """STOI (ESTOI when ``extended``) of one pair; see :func:`stoi_scores`."""
    return stoi_scores(pair)["estoi" if extended else "stoi"]


def pesq(pair: AlignedPair, mode: str) -> float:
    """ITU-T P.862 PESQ: ``"wb"`` at 16 kHz, ``"nb"`` at 8 kHz (MOS-LQO, 1.0..4.64)."""
    from pesq import pesq as _pesq

    rate = 16000 if mode == "wb" else 8000
    ref, deg = pair.at_rate(rate)
    return float(_pesq(rate, ref.astype(np.float64), deg.astype(np.float64), mode))


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int, n_fft: int, bands: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=bands, fmin=0.0, fmax=sample_rate / 2)


def _mel_power(wav: np.ndarray, sample_rate: int, n_fft: int, win: int, hop: int, bands: int) -> np.ndarray:
    """Mel power spectrogram ``[frames, bands]`` with a Hann window."""
    _, _, spec = scipy.signal.stft(
        wav, fs=sample_rate, window="hann", nperseg=win, noverlap=win - hop, nfft=n_fft, boundary=None, padded=False
    )
    power = np.abs(spec) ** 2
    return (_mel_basis(sample_rate, n_fft, bands) @ power).T


def mel_distance(pair: AlignedPair) -> float:
    """Mean absolute difference of natural-log mel magnitudes (0 for identical signals)."""
    args = (pair.sample_rate, MEL_FFT, MEL_FFT, MEL_HOP, MEL_BANDS)
    ref = np.log(np.sqrt(_mel_power(pair.reference, *args)) + 1e-5)
    deg = np.log(np.sqrt(_mel_power(pair.degraded, *args)) + 1e-5)
    return float(np.mean(np.abs(ref - deg)))


def _mel_cepstrum(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Cepstra c1..c24 per frame, and each frame's energy in dB for picking speech frames.

    The cepstrum of the log-amplitude mel spectrum is scaled as ``c_d = 1/N sum_n x_n cos(...)``
    (``log|X(w)| = c_0 + 2 sum_d c_d cos(d w)``), the convention the usual MCD formula assumes.
    """
    power = _mel_power(wav, sample_rate, MCD_FFT, MCD_WIN, MCD_HOP, MCD_BANDS)
    log_amplitude = 0.5 * np.log(power + 1e-10)
    cep = scipy.fft.dct(log_amplitude, type=2, axis=1) / (2 * MCD_BANDS)
    return cep[:, 1 : MCD_ORDER + 1], 10.0 * np.log10(power.sum(axis=1) + 1e-10)


def mcd(pair: AlignedPair) -> float:
    """Mel-cepstral distortion in dB over the reference's speech frames (frame-aligned, no DTW).

    ``10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` averaged over frames; the delay is already removed,
    so frames correspond one to one.
    """
    ref, energy = _mel_cepstrum(pair.reference, pair.sample_rate)
    deg, _ = _mel_cepstrum(pair.degraded, pair.sample_rate)
    speech = energy >= energy.max() - MCD_SPEECH_DB
    diff = ref[speech] - deg[speech]
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))
