"""Teachers: frozen models whose features a tokenizer learns to predict (semantic distillation).

HoliTok's paper distils WavLM and an x-vector model, SiTok's needs none, but with hours rather than
thousands of hours of speech a dense frame-level target from a model trained on far more speech is
what teaches an encoder phonetic content (Mimi and SpeechTokenizer distil WavLM/HuBERT the same
way). A teacher is plugged in by name, ``package.module:factory``; the evaluation's judges (Whisper,
Resemblyzer, DNSMOS) are refused: training against the metric would game it.
"""
from __future__ import annotations

import functools
import importlib
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..audio import resample
from ..errors import ConfigError

FORBIDDEN_TEACHER_MODULES = ("speechtok.eval", "faster_whisper", "resemblyzer", "speechmos")


@runtime_checkable
class Teacher(Protocol):
    """A frozen model whose features the latents should predict (either method may return None)."""

    sample_rate: int
    frame_dim: int  # 0 = no frame-level features
    utterance_dim: int  # 0 = no utterance embedding

    def frame_features(self, wav: torch.Tensor) -> torch.Tensor | None:  # [B, 1, T] → [B, frames, frame_dim]
        ...

    def utterance_embedding(self, wav: torch.Tensor) -> torch.Tensor | None:  # [B, 1, T] → [B, utterance_dim]
        ...


@functools.lru_cache(maxsize=None)
def load_teacher(spec: str) -> Teacher:
    """``package.module:factory`` → a :class:`Teacher` (refusing the evaluation's judges). One instance
    per spec and process: a teacher is frozen, and the recipe asks for it both to size its head and
    to train."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ConfigError(f"teacher {spec!r}: expected 'package.module:factory'")
    if module_name.startswith(FORBIDDEN_TEACHER_MODULES):
        raise ConfigError(f"teacher {spec!r}: the evaluation's judge models must not be trained against")
    try:
        teacher = getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"teacher {spec!r}: cannot import ({exc})") from None
    if not isinstance(teacher, Teacher):
        raise ConfigError(f"teacher {spec!r}: needs sample_rate, frame_dim, utterance_dim, frame_features, utterance_embedding")
    return teacher


def teacher_frames(teacher: Teacher, wav: np.ndarray, rate: int, frames: int) -> torch.Tensor:
    """A teacher's frame features of one mono clip on another frame grid: ``[frames, D]`` float16
    (linear interpolation), so they line up with the frames a student sees (mel or latent frames)."""
    with torch.no_grad():
        audio = torch.from_numpy(np.ascontiguousarray(resample(wav, rate, teacher.sample_rate), dtype=np.float32))
        features = teacher.frame_features(audio[None, None])[0].float()  # [frames', D]
        features = torch.nn.functional.interpolate(features.T[None], size=frames, mode="linear")[0].T
    return features.to(torch.float16).contiguous()
