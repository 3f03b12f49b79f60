"""Integer-factor upsampling by a fixed windowed-sinc filter that streams with offline-identical output.

HoliTok's mel head is voiced by a 24 kHz vocoder while the model's contract is 48 kHz audio. soxr
would do, but not inside a :class:`~speechtok.modules.conv.StreamState` stream; a zero-stuffed
signal filtered by a symmetric FIR does: the filter is a convolution with a fixed look-ahead of
``half_width`` input samples (×2: 64 output samples, 1.3 ms at 48 kHz), so the same window mechanism
as every streaming conv makes a stream equal the one-shot call.
"""
from __future__ import annotations

import torch
from torch import nn

from .conv import StreamState, conv_window


def lowpass_kernel(factor: int, half_width: int, cutoff: float, beta: float = 8.0) -> torch.Tensor:
    """Kaiser-windowed sinc, ``2·half_width + 1`` taps, cut off at ``cutoff`` × the input's Nyquist,
    with gain ``factor`` so the zero-stuffed signal keeps its level."""
    n = torch.arange(-half_width, half_width + 1, dtype=torch.float64)
    fc = cutoff / (2 * factor)  # cycles per output sample
    taps = 2 * fc * torch.special.sinc(2 * fc * n) * torch.kaiser_window(2 * half_width + 1, periodic=False, beta=beta,
                                                                          dtype=torch.float64)
    return (factor * taps / taps.sum()).float()


class Upsampler(nn.Module):
    """``[B, 1, T]`` → ``[B, 1, factor·T]``; streams with ``state`` (each call returns what is final)."""

    def __init__(self, factor: int, *, half_width: int = 32, cutoff: float = 0.95) -> None:
        super().__init__()
        self.factor, self.half_width = factor, half_width * factor
        self.register_buffer("kernel", lowpass_kernel(factor, self.half_width, cutoff)[None, None], persistent=False)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        if self.factor == 1:
            return x
        zeros = torch.zeros_like(x).unsqueeze(-1).expand(*x.shape, self.factor - 1)
        stuffed = torch.cat([x.unsqueeze(-1), zeros], dim=-1).flatten(-2)  # x0 0 x1 0 …, and exportable
        span = 2 * self.half_width + 1
        window = conv_window(stuffed, state, self, left=self.half_width, right=self.half_width, span=span, stride=1)
        if window.shape[-1] < span:
            return x.new_zeros(x.shape[0], x.shape[1], 0)
        return nn.functional.conv1d(window, self.kernel.to(window.dtype))

