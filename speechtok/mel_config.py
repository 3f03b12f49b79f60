"""The mel front-end's settings, apart from its torch code so that configs and presets load without torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 24000
    n_fft: int = 1920
    hop_length: int = 480
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 12000.0
    log_floor: float = 1e-5
    norm_mean: float = -4.92
    norm_var: float = 8.14

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length
