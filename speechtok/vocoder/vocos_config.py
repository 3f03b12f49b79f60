"""The Vocos vocoder's typed configuration and named presets.

The vocoder reads SiTok's normalised 24 kHz / hop 480 / 128-bin log-mel, so its STFT head uses
SiTok's frame (n_fft 1920, hop 480) and one network frame maps to exactly one mel frame.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..mel_config import MelConfig
from ..modules.discriminator_config import DiscriminatorConfig


@dataclass(frozen=True)
class VocosConfig:
    name: str = "vocos-tiny"
    mel: MelConfig = field(default_factory=MelConfig)
    dim: int = 32
    intermediate_dim: int = 64
    layers: int = 2
    kernel_size: int = 7
    layer_scale_init: float | None = None  # None = 1 / layers, as Vocos
    log_magnitude_max: float = 6.0  # exp() of larger predictions would overflow fp16; Vocos clips at 1e2
    discriminator: DiscriminatorConfig = field(default_factory=lambda: DiscriminatorConfig(
        periods=(2, 3), period_channels=(4, 8, 8), resolutions=(512,), resolution_channels=4))
    # Losses (Vocos): 45 × multi-resolution mel L1 + adversarial (hinge) + 2 × feature matching.
    mel_weight: float = 45.0
    feature_weight: float = 2.0
    resolution_weight: float = 0.1  # the multi-resolution discriminator's share, as Vocos
    loss_resolutions: tuple[int, ...] = (512, 1024, 2048)
    adversarial_start: int = 0  # steps of mel-only pre-training before the GAN losses start

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"{self.name}: kernel_size must be odd, got {self.kernel_size}")


PRESETS: dict[str, VocosConfig] = {
    "vocos-tiny": VocosConfig(),
    # ~3 M parameters, 6 MB in fp16. Its discriminators are narrowed (8…128 channels, 0.7 M) so a
    # GAN step costs ~3 s on 2 CPU cores instead of ~8 s at 16…256.
    "vocos-small": VocosConfig(
        name="vocos-small", dim=256, intermediate_dim=768, layers=6,
        discriminator=DiscriminatorConfig(period_channels=(8, 32, 64, 128, 128), resolution_channels=8),
        adversarial_start=1000),
    # Vocos' published size (dim 512, MLP 1536, 8 blocks; ~13.5 M) at SiTok's frame.
    "vocos-base": VocosConfig(name="vocos-base", dim=512, intermediate_dim=1536, layers=8,
                              discriminator=DiscriminatorConfig()),
}


def get_preset(name: str) -> VocosConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown vocoder preset {name!r} (available: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])
