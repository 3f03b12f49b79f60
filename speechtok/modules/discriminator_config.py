"""Discriminator settings, apart from their torch code so that configs and presets load without torch."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Multi-period (HiFi-GAN) and multi-resolution (UnivNet) discriminators, width-scalable."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    resolutions: tuple[int, ...] = (512, 1024, 2048)  # STFT sizes; hop = n_fft / 4
    resolution_channels: int = 32
