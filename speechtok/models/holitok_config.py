"""HoliTok's typed configuration and named presets.

``holitok-base`` is the architecture of the official release (bovod-sjtu/HoliTok, 48 kHz preset):
encoder channels 12…768 with 6 dilated residual units per stage, a 4-layer LSTM(512) variational
bottleneck, and a BigVGAN decoder 1536…24 with AMP blocks of kernels 3/7/11 × dilations 1/3/5. It
reproduces the paper's Table 6 sizes (encoder 36M, bottleneck 17M, decoder 128M). The smaller
presets keep every rate (48 kHz, hop 1920, 25 Hz, 128-d latents) and the look-ahead, and shrink
widths and depths only.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class HoliTokConfig:
    name: str = "holitok-tiny"
    sample_rate: int = 48000
    latent_dim: int = 128
    # Encoder: input conv to encoder_channels[0], then one strided block per downsample rate.
    encoder_channels: tuple[int, ...] = (8, 8, 8, 16, 16, 32, 32)
    downsample_rates: tuple[int, ...] = (2, 2, 2, 4, 6, 10)
    encoder_res_units: int = 1  # dilated residual units per block, dilations dilation_base**i
    encoder_dilation_base: int = 2
    encoder_lookahead: int = 2  # latent frames of future audio seen by the output conv (80 ms)
    # Variational bottleneck: Linear → LSTM (with skip) → Linear, on each side of the latent.
    bottleneck_dim: int = 32
    lstm_layers: int = 1
    # Decoder: conv_pre to decoder_channels[0], then one upsampling stage per rate.
    decoder_channels: tuple[int, ...] = (32, 32, 16, 16, 8, 8, 8)
    upsample_rates: tuple[int, ...] = (10, 6, 4, 2, 2, 2)
    resblock_kernels: tuple[int, ...] = (3,)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3),)
    decoder_lookahead: int = 2  # latent frames of look-ahead in the decoder's first conv
    anti_alias_kernel: int = 12  # taps of the fixed ×2 up/down low-pass filters around SnakeBeta
    # "bigvgan" (the paper's decoder, the fields above) or "istft": a documented deviation that is
    # far cheaper on a CPU: causal ConvNeXt blocks at istft_frames × 25 Hz predict STFT frames,
    # inverted by a causal iSTFT (n_fft = istft_overlap × its hop); decoder_channels etc. are unused.
    decoder_head: str = "bigvgan"
    istft_dim: int = 256
    istft_layers: int = 6
    istft_frames: int = 4  # STFT frames per latent: 100 Hz, hop 480 at 48 kHz
    istft_overlap: int = 4

    def __post_init__(self) -> None:
        if len(self.encoder_channels) != len(self.downsample_rates) + 1:
            raise ConfigError(f"{self.name}: encoder_channels needs one more entry than downsample_rates")
        if len(self.decoder_channels) != len(self.upsample_rates) + 1:
            raise ConfigError(f"{self.name}: decoder_channels needs one more entry than upsample_rates")
        if math.prod(self.downsample_rates) != math.prod(self.upsample_rates):
            raise ConfigError(f"{self.name}: downsample_rates and upsample_rates must have the same product (the hop)")
        if len(self.resblock_kernels) != len(self.resblock_dilations):
            raise ConfigError(f"{self.name}: resblock_kernels and resblock_dilations must have the same length")
        if self.decoder_head not in ("bigvgan", "istft"):
            raise ConfigError(f"{self.name}: decoder_head must be 'bigvgan' or 'istft', got {self.decoder_head!r}")
        if self.hop_length % self.istft_frames:
            raise ConfigError(f"{self.name}: istft_frames {self.istft_frames} must divide the hop {self.hop_length}")
        if self.sample_rate % self.hop_length:
            raise ConfigError(f"{self.name}: sample_rate {self.sample_rate} is not a multiple of the hop {self.hop_length}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsample_rates)

    @property
    def latent_rate(self) -> float:
        return self.sample_rate / self.hop_length


PRESETS: dict[str, HoliTokConfig] = {
    "holitok-tiny": HoliTokConfig(),
    "holitok-small": HoliTokConfig(
        name="holitok-small", encoder_channels=(8, 16, 32, 64, 96, 128, 192), encoder_res_units=1,
        bottleneck_dim=256, lstm_layers=2, decoder_channels=(256, 128, 64, 32, 16, 8, 8),
        resblock_kernels=(3,), resblock_dilations=((1, 3),)),
    # holitok-small's encoder and bottleneck with the iSTFT decoder head (decoder 3.6 M parameters).
    "holitok-small-istft": HoliTokConfig(
        name="holitok-small-istft", encoder_channels=(8, 16, 32, 64, 96, 128, 192), encoder_res_units=1,
        bottleneck_dim=256, lstm_layers=2, decoder_head="istft", istft_dim=256, istft_layers=6),
    "holitok-base": HoliTokConfig(
        name="holitok-base", encoder_channels=(12, 24, 48, 96, 192, 384, 768), encoder_res_units=6,
        bottleneck_dim=512, lstm_layers=4, decoder_channels=(1536, 768, 384, 192, 96, 48, 24),
        resblock_kernels=(3, 7, 11), resblock_dilations=((1, 3, 5), (1, 3, 5), (1, 3, 5))),
}


def get_preset(name: str) -> HoliTokConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown HoliTok preset {name!r} (available: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])
