"""Speaker-similarity judge: cosine of Resemblyzer (GE2E) embeddings; weights ship in the wheel.

Resemblyzer's ``webrtcvad`` dependency imports ``pkg_resources``, hence ``setuptools<81`` in the
``eval`` extra.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np

from ...fileio import sha256_file
from ..errors import JudgeError
from . import JudgeInfo, package_versions, torch_threads


@dataclass(frozen=True)
class SpeakerJudge:
    """Cosine similarity in [-1, 1] between the speaker embeddings of two 16 kHz clips."""

    weights: Path
    sample_rate: int = 16000

    @property
    def info(self) -> JudgeInfo:
        return JudgeInfo("resemblyzer GE2E", package_versions("resemblyzer"), sha256_file(self.weights))

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """GE2E embedding on one torch thread: with two threads the small LSTM slows down 10-40x as
        soon as another process (a training run) competes for the 2 cores (0.3 s vs 4-11 s per clip)."""
        clip = _resemblyzer().preprocess_wav(np.asarray(wav, dtype=np.float32), source_sr=self.sample_rate)
        if clip.size == 0:  # VAD found no speech: embed the raw (normalised) clip instead
            clip = np.asarray(wav, dtype=np.float32)
        with torch_threads(1):
            return _encoder(str(self.weights)).embed_utterance(clip)

    def similarity(self, reference: np.ndarray, degraded: np.ndarray) -> float:
        return embedding_cosine(self.embed(reference), self.embed(degraded))


def embedding_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """SIM: the cosine of two speaker embeddings."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@lru_cache(maxsize=1)
def _resemblyzer() -> ModuleType:
    """Import resemblyzer without its import-time notices (webrtcvad's pkg_resources, scipy.ndimage)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            return importlib.import_module("resemblyzer")
    except ModuleNotFoundError:
        raise JudgeError("resemblyzer not installed: pip install 'speechtok[eval]'") from None


@lru_cache(maxsize=1)
def _encoder(weights: str):  # noqa: ANN202 - resemblyzer.VoiceEncoder, imported lazily
    return _resemblyzer().VoiceEncoder("cpu", verbose=False, weights_fpath=weights)


def load_speaker_judge() -> SpeakerJudge:
    weights = Path(_resemblyzer().__file__).parent / "pretrained.pt"
    if not weights.is_file():
        raise JudgeError(f"{weights}: Resemblyzer weights missing from the installed package")
    return SpeakerJudge(weights)
