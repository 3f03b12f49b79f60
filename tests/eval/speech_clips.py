"""Real speech clips and degradations shared by the evaluation tests (a module, so tests can import it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SPK84 = SHARED_DATA / "librispeech_dev_clean_spk84"
#: 3.99 s, speaker 84 (female), transcribed.
CLIP = SPK84 / "84-121123-0001.flac"
CLIP_TEXT = "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED BENEATH AN EXTRAORDINARY WEIGHT"
#: Same speaker, another sentence; and a different (male) speaker from train-clean-100.
SAME_SPEAKER = SPK84 / "84-121123-0004.flac"
OTHER_SPEAKER = SHARED_DATA / "librispeech_train_clean_100_251spk_untranscribed" / "118-121721-0000.flac"


def add_noise(wav: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at ``snr_db`` relative to the clip's mean power."""
    noise = np.random.default_rng(seed).standard_normal(wav.size)
    scale = np.sqrt(np.mean(wav**2) / 10 ** (snr_db / 10))
    return (wav + scale * noise).astype(np.float32)


def low_pass(wav: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    sos = scipy.signal.butter(8, cutoff_hz, fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, wav).astype(np.float32)
