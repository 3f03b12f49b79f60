"""GAN discriminators for waveform generators (the Vocos vocoder, HoliTok's stage I).

* Multi-period (HiFi-GAN): the waveform folded into ``[T / p, p]`` for several primes ``p``, so
  each sub-discriminator sees periodic structure (pitch harmonics) with 2-D convolutions.
* Multi-resolution (UnivNet): log-magnitude spectrograms at several STFT sizes, so the generator
  is judged on spectral detail at several time/frequency trade-offs.

Each sub-discriminator returns its logits and the list of its hidden feature maps (for the
feature-matching loss).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .discriminator_config import DiscriminatorConfig

Judgement = tuple[torch.Tensor, list[torch.Tensor]]


def _judge(convs: nn.ModuleList, out: nn.Module, x: torch.Tensor) -> Judgement:
    """Leaky-ReLU conv stack, then the logit conv; every intermediate map is kept for feature matching."""
    features = []
    for conv in convs:
        x = nn.functional.leaky_relu(conv(x), 0.1)
        features.append(x)
    x = out(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (5, 1), (3 if i < len(channels) - 1 else 1, 1), (2, 0)))
            for i in range(len(channels)))
        self.out = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> Judgement:
        b, _, t = wav.shape
        pad = (-t) % self.period
        x = nn.functional.pad(wav, (0, pad), mode="reflect" if pad < t else "constant")
        return _judge(self.convs, self.out, x.view(b, 1, -1, self.period))


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, c, (7, 5), padding=(3, 2))),
            weight_norm(nn.Conv2d(c, c, (5, 3), stride=(2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(c, c, (5, 3), stride=(2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(c, c, (5, 3), stride=(2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(c, c, 3, padding=1)),
        ])
        self.out = weight_norm(nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> Judgement:
        spec = torch.stft(wav[:, 0].float(), self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        return _judge(self.convs, self.out, torch.log(spec.abs().clamp(min=1e-5))[:, None])  # [B, 1, freq, time]


class Discriminators(nn.Module):
    """All sub-discriminators; ``forward`` returns one judgement per sub-discriminator."""

    def __init__(self, periods: tuple[int, ...], period_channels: tuple[int, ...],
                 resolutions: tuple[int, ...], resolution_channels: int) -> None:
        super().__init__()
        self.period = nn.ModuleList(PeriodDiscriminator(p, period_channels) for p in periods)
        self.resolution = nn.ModuleList(ResolutionDiscriminator(n, resolution_channels) for n in resolutions)

    @classmethod
    def from_config(cls, c: DiscriminatorConfig) -> "Discriminators":
        return cls(c.periods, c.period_channels, c.resolutions, c.resolution_channels)

    def forward(self, wav: torch.Tensor) -> tuple[list[Judgement], list[Judgement]]:
        return [d(wav) for d in self.period], [d(wav) for d in self.resolution]
