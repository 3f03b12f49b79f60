"""A stand-in teacher for the distillation tests (plugged in as ``toy_teacher:toy_teacher``)."""
from __future__ import annotations

import torch


class ToyTeacher:
    """A frozen random projection of 20 ms log-magnitude spectra: like a real teacher's features it is
    a function of the sound (so predictable from a mel), not of the waveform's phase."""

    sample_rate = 16000
    frame_dim = 12
    utterance_dim = 6

    def __init__(self) -> None:
        self.proj = torch.randn(161, 12, generator=torch.Generator().manual_seed(0))

    def frame_features(self, wav: torch.Tensor) -> torch.Tensor:
        frames = wav[:, 0, : wav.shape[-1] // 320 * 320].reshape(wav.shape[0], -1, 320)
        return torch.log(torch.fft.rfft(frames, dim=-1).abs() + 1e-3) @ self.proj

    def utterance_embedding(self, wav: torch.Tensor) -> torch.Tensor:
        return self.frame_features(wav).mean(1)[:, :6]


def toy_teacher() -> ToyTeacher:
    return ToyTeacher()
