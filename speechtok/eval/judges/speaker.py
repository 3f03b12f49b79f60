"""Speaker-similarity judge: cosine of Resemblyzer (GE2E) embeddings; weights ship in the wheel.

Resemblyzer's ``webrtcvad`` dependency imports ``pkg_resources``, hence ``setuptools<81`` in the
``eval`` extra.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ...fileio import sha256_file
from ..errors import JudgeError
from . import MAX_THREADS, JudgeInfo, package_versions


@dataclass(frozen=True)
class SpeakerJudge:
    """Cosine similarity in [-1, 1] between the speaker embeddings of two 16 kHz clips."""

    weights: Path
    sample_rate: int = 16000

    @property
    def info(self) -> JudgeInfo:
        return JudgeInfo("resemblyzer GE2E", package_versions("resemblyzer"), sha256_file(self.weights))

    def embed(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav

        clip = preprocess_wav(np.asarray(wav, dtype=np.float32), source_sr=self.sample_rate)
        if clip.size == 0:  # VAD found no speech: embed the raw (normalised) clip instead
            clip = np.asarray(wav, dtype=np.float32)
        return _encoder(str(self.weights)).embed_utterance(clip)

    def similarity(self, reference: np.ndarray, degraded: np.ndarray) -> float:
        a, b = self.embed(reference), self.embed(degraded)
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@lru_cache(maxsize=1)
def _encoder(weights: str):  # noqa: ANN202 - resemblyzer.VoiceEncoder, imported lazily
    from resemblyzer import VoiceEncoder

    torch.set_num_threads(min(torch.get_num_threads(), MAX_THREADS))
    return VoiceEncoder("cpu", verbose=False, weights_fpath=weights)


def load_speaker_judge() -> SpeakerJudge:
    try:
        weights = Path(str(resources.files("resemblyzer") / "pretrained.pt"))
    except ModuleNotFoundError:
        raise JudgeError("resemblyzer not installed: pip install 'speechtok[eval]'") from None
    if not weights.is_file():
        raise JudgeError(f"{weights}: Resemblyzer weights missing from the installed package")
    return SpeakerJudge(weights)
