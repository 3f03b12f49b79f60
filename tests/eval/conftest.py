"""Fixtures for the evaluation tests: a few seconds of real speech and the judges, loaded once."""
from __future__ import annotations

import numpy as np
import pytest

from speech_clips import CLIP, add_noise, low_pass
from speechtok.audio import load_audio
from speechtok.eval.codecs import CODECS


@pytest.fixture(scope="session")
def clip() -> tuple[np.ndarray, int]:
    return load_audio(CLIP)


@pytest.fixture(scope="session")
def degraded(clip: tuple[np.ndarray, int]) -> dict[str, tuple[np.ndarray, int]]:
    """The clip degraded three ways: white noise at 5 dB SNR, a 1.5 kHz low-pass, Codec2 1200."""
    wav, rate = clip
    codec = CODECS["codec2-1200"].run(wav, rate)
    return {
        "noise": (add_noise(wav, 5.0), rate),
        "lowpass": (low_pass(wav, rate, 1500.0), rate),
        "codec2": (codec.wav, codec.sample_rate),
    }


@pytest.fixture(scope="session")
def asr_judge():
    from speechtok.eval.judges.asr import whisper_base

    return whisper_base()


@pytest.fixture(scope="session")
def speaker_judge():
    from speechtok.eval.judges.speaker import load_speaker_judge

    return load_speaker_judge()
