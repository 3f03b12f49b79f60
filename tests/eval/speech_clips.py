"""Real speech clips and degradations shared by the evaluation tests (a module, so tests can import it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal

from speechtok.assets import SAMPLE_SPEECH, SAMPLE_TRANSCRIPT

#: Real speech shipped with the tests (see tests/data/CREDITS.md).
TEST_DATA = Path(__file__).resolve().parents[1] / "data"
#: 3.99 s, LibriSpeech speaker 84 (female), transcribed: the package's bundled sample.
CLIP = SAMPLE_SPEECH
CLIP_TEXT = SAMPLE_TRANSCRIPT
#: Same speaker, another sentence; and a different (male) speaker from train-clean-100.
SAME_SPEAKER = TEST_DATA / "84-121123-0004.flac"
OTHER_SPEAKER = TEST_DATA / "118-121721-0000.flac"


def add_noise(wav: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at ``snr_db`` relative to the clip's mean power."""
    noise = np.random.default_rng(seed).standard_normal(wav.size)
    scale = np.sqrt(np.mean(wav**2) / 10 ** (snr_db / 10))
    return (wav + scale * noise).astype(np.float32)


def low_pass(wav: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    sos = scipy.signal.butter(8, cutoff_hz, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, wav).astype(np.float32)
