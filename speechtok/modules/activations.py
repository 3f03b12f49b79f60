"""BigVGAN's periodic activation, applied without aliasing, causally and streamably.

SnakeBeta, ``x + sin²(αx)/β``, gives a waveform decoder a periodic inductive bias. A nonlinearity
creates harmonics above Nyquist that would fold back as aliasing, so it is evaluated at twice the
rate: upsample ×2 with a low-pass filter, apply it, low-pass and downsample ×2. Both filters are
fixed Kaiser-windowed sincs (buffers rebuilt from the config, not trained or saved), applied
causally so the decoder stays causal.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conv import StreamState, conv_window, transposed_window


class SnakeBeta(nn.Module):
    """Per-channel ``x + sin²(αx)/β``; α and β are stored as logarithms so they stay positive."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(channels))
        self.log_beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.log_alpha.exp()[None, :, None]
        beta = self.log_beta.exp()[None, :, None]
        return x + torch.sin(alpha * x).pow(2) / (beta + 1e-9)


def kaiser_sinc(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR ``[kernel_size]`` with unit DC gain: a sinc at ``cutoff`` (cycles/sample) under a Kaiser window.

    The window's β follows the Kaiser design rule for the attenuation that BigVGAN's alias-free
    filters use (``2.285·(K/2 − 1)·π·4·half_width + 7.95`` dB), so our filters equal theirs.
    """
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21.0) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta)
    offset = 0.5 if kernel_size % 2 == 0 else 0.0
    time = torch.arange(kernel_size) - half + offset
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return taps / taps.sum()


class AntiAliasedSnakeBeta(nn.Module):
    """SnakeBeta evaluated at ``ratio``× the rate between causal low-pass filters; length-preserving."""

    def __init__(self, channels: int, *, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        if kernel_size % ratio:
            raise ConfigError(f"anti-alias kernel {kernel_size} must be a multiple of the ratio {ratio}")
        self.ratio, self.kernel_size = ratio, kernel_size
        self.act = SnakeBeta(channels)
        taps = kaiser_sinc(0.5 / ratio, 0.6 / ratio, kernel_size)
        self.register_buffer("filter", taps.view(1, 1, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        b, channels, frames = x.shape
        if frames == 0:
            return x
        taps = self.filter.to(x.dtype).expand(channels, 1, self.kernel_size)
        # Upsample: zero-stuffing + low-pass as one transposed convolution, cut to causal length.
        up, context = transposed_window(x, state, (self, "up"), self.kernel_size // self.ratio - 1)
        up = self.ratio * F.conv_transpose1d(up, taps, stride=self.ratio, groups=channels)
        up = self.act(up[..., context * self.ratio: (context + frames) * self.ratio])
        # Downsample: causal low-pass (edge-replicated start, as BigVGAN) keeping every ratio-th sample.
        up = conv_window(up, state, (self, "down"), left=self.kernel_size - 1, right=0, span=self.kernel_size,
                         stride=self.ratio, replicate=True)
        if up.shape[-1] < self.kernel_size:
            return x.new_zeros(b, channels, 0)
        return F.conv1d(up, taps, stride=self.ratio, groups=channels)
