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
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..mel_config import MelConfig


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
    # "conv" (the paper's waveform conv stack above) or "mel", a documented deviation that learns far
    # faster on a CPU: the causal log-mel ``encoder_mel`` of the 48 kHz input, causal ConvNeXt blocks
    # (frontend_dim × frontend_layers) at its frame rate, a strided conv to 25 Hz, the same look-ahead.
    encoder_frontend: str = "conv"
    encoder_mel: MelConfig = field(default_factory=lambda: MelConfig(sample_rate=48000, n_fft=3840, hop_length=960))
    frontend_dim: int = 256
    frontend_layers: int = 4
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
    # "bigvgan" (the paper's decoder, the fields above), or one of two documented deviations that
    # are far cheaper on a CPU, both causal ConvNeXt stacks (head_dim × head_layers) at a frame rate:
    # "istft" predicts STFT frames at istft_frames × 25 Hz, inverted by a causal iSTFT (n_fft =
    # istft_overlap × its hop); "mel" predicts the normalised log-mel of ``mel`` (50 Hz), voiced by
    # the Vocos checkpoint ``vocoder`` and brought back to sample_rate. decoder_channels etc. are
    # then unused.
    decoder_head: str = "bigvgan"
    head_dim: int = 256
    head_layers: int = 6
    istft_frames: int = 4  # STFT frames per latent: 100 Hz, hop 480 at 48 kHz
    istft_overlap: int = 4
    mel: MelConfig = field(default_factory=MelConfig)
    vocoder: str = "vocos-24k"  # a bundled name or checkpoint directory whose mel settings equal ``mel``

    def __post_init__(self) -> None:
        if len(self.encoder_channels) != len(self.downsample_rates) + 1:
            raise ConfigError(f"{self.name}: encoder_channels needs one more entry than downsample_rates")
        if len(self.decoder_channels) != len(self.upsample_rates) + 1:
            raise ConfigError(f"{self.name}: decoder_channels needs one more entry than upsample_rates")
        if math.prod(self.downsample_rates) != math.prod(self.upsample_rates):
            raise ConfigError(f"{self.name}: downsample_rates and upsample_rates must have the same product (the hop)")
        if len(self.resblock_kernels) != len(self.resblock_dilations):
            raise ConfigError(f"{self.name}: resblock_kernels and resblock_dilations must have the same length")
        if self.decoder_head not in DECODER_HEADS:
            raise ConfigError(f"{self.name}: decoder_head must be one of {', '.join(DECODER_HEADS)}, got {self.decoder_head!r}")
        if self.encoder_frontend not in ENCODER_FRONTENDS:
            raise ConfigError(f"{self.name}: encoder_frontend must be one of {', '.join(ENCODER_FRONTENDS)}, "
                              f"got {self.encoder_frontend!r}")
        if self.encoder_frontend == "mel" and (self.encoder_mel.sample_rate != self.sample_rate
                                               or self.hop_length % self.encoder_mel.hop_length):
            raise ConfigError(f"{self.name}: encoder_mel must be at {self.sample_rate} Hz with a hop that divides "
                              f"{self.hop_length}")
        if self.decoder_head == "mel" and (self.hop_length * self.mel.sample_rate) % (self.sample_rate * self.mel.hop_length):
            raise ConfigError(f"{self.name}: a latent ({self.hop_length} samples at {self.sample_rate} Hz) must span a "
                              f"whole number of mel frames (hop {self.mel.hop_length} at {self.mel.sample_rate} Hz)")
        if self.decoder_head == "mel" and self.sample_rate % self.mel.sample_rate:
            raise ConfigError(f"{self.name}: sample_rate {self.sample_rate} must be a multiple of the vocoder's "
                              f"{self.mel.sample_rate} Hz")
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

    @property
    def mel_frames_per_latent(self) -> int:
        """The mel head's frames per latent (2: a 50 Hz mel under 25 Hz latents)."""
        return self.hop_length * self.mel.sample_rate // (self.sample_rate * self.mel.hop_length)


DECODER_HEADS = ("bigvgan", "istft", "mel")
ENCODER_FRONTENDS = ("conv", "mel")


PRESETS: dict[str, HoliTokConfig] = {
    "holitok-tiny": HoliTokConfig(),
    "holitok-small": HoliTokConfig(
        name="holitok-small", encoder_channels=(8, 16, 32, 64, 96, 128, 192), encoder_res_units=1,
        bottleneck_dim=256, lstm_layers=2, decoder_channels=(256, 128, 64, 32, 16, 8, 8),
        resblock_kernels=(3,), resblock_dilations=((1, 3),)),
    # holitok-small's encoder and bottleneck with the iSTFT decoder head (decoder 3.6 M parameters).
    "holitok-small-istft": HoliTokConfig(
        name="holitok-small-istft", encoder_channels=(8, 16, 32, 64, 96, 128, 192), encoder_res_units=1,
        bottleneck_dim=256, lstm_layers=2, decoder_head="istft", head_dim=256, head_layers=6),
    # holitok-small's bottleneck between the mel front-end and the mel head with the bundled
    # vocos-24k: what CPU training affords in hours (no waveform to learn to analyse or to synthesise,
    # no discriminator to run). 48 kHz in, 25 Hz × 128 latents, 48 kHz out (band-limited to 12 kHz).
    "holitok-small-mel": HoliTokConfig(
        name="holitok-small-mel", encoder_frontend="mel", frontend_dim=256, frontend_layers=4,
        bottleneck_dim=256, lstm_layers=2, decoder_head="mel", head_dim=256, head_layers=6),
    "holitok-base": HoliTokConfig(
        name="holitok-base", encoder_channels=(12, 24, 48, 96, 192, 384, 768), encoder_res_units=6,
        bottleneck_dim=512, lstm_layers=4, decoder_channels=(1536, 768, 384, 192, 96, 48, 24),
        resblock_kernels=(3, 7, 11), resblock_dilations=((1, 3, 5), (1, 3, 5), (1, 3, 5))),
}


def get_preset(name: str) -> HoliTokConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown HoliTok preset {name!r} (available: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])
