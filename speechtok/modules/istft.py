"""A causal, streamable inverse STFT: frame ``i`` is overlap-added at samples ``[i·hop, i·hop + n_fft)``.

Vocos centres each frame on its own hop, so an output sample waits for frames up to half a window
ahead. Placing frame ``i`` to start at its hop instead makes the samples ``[i·hop, (i + 1)·hop)``
complete as soon as frame ``i`` exists (earlier frames cover the rest), so a causal network in front
of it streams: a stream keeps the ``n_fft − hop`` samples that later frames still add to. The
network learns to predict each frame's window of audio that lies ahead of it; what it can know of
that future is its own look-ahead.

The window is a periodic Hann; its squared overlap-add is constant when ``n_fft / hop ≥ 3`` (an
integer), so the output is divided by that constant, and the first ``n_fft − hop`` samples, which
fewer frames cover, are simply what the network learns to produce there.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .conv import StreamState


def inverse_dft_kernel(n_fft: int) -> torch.Tensor:
    """The real inverse DFT times a periodic Hann window, as a transposed-convolution kernel ``[2·bins, 1, n_fft]``.

    Applied with :func:`overlap_add` to ``real ‖ imaginary`` spectra it inverts, windows and
    overlap-adds every frame in one operation, with no complex tensors (so ONNX exports it).
    """
    window = torch.hann_window(n_fft, dtype=torch.float64)
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    weight = torch.full_like(bins, 2.0)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in a real inverse DFT (their imaginary part is ignored)
    angle = 2 * math.pi * bins[:, None] * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
    inverse = torch.cat([weight[:, None] * angle.cos(), -weight[:, None] * angle.sin()]) * window / n_fft
    return inverse[:, None, :].float()


def overlap_add(magnitude: torch.Tensor, phase: torch.Tensor, kernel: torch.Tensor, hop: int) -> torch.Tensor:
    """Spectra ``[B, bins, F]`` (magnitude, phase) → windowed overlap-add ``[B, 1, (F − 1)·hop + n_fft]``."""
    spectrum = torch.cat([magnitude * phase.cos(), magnitude * phase.sin()], dim=1)
    return nn.functional.conv_transpose1d(spectrum, kernel, stride=hop)


class CausalISTFT(nn.Module):
    """Log-magnitude and phase ``[B, n_fft/2 + 1, F]`` each → waveform ``[B, 1, F·hop]``.

    The inverse real DFT, the window and the overlap-add are one transposed convolution with a fixed
    kernel: no complex tensors, so training, streaming and the ONNX export share this code.
    """

    def __init__(self, n_fft: int, hop: int, *, log_magnitude_max: float = 6.0) -> None:
        super().__init__()
        if n_fft % hop or n_fft // hop < 3 or n_fft % 2:
            raise ConfigError(f"causal iSTFT: n_fft {n_fft} must be an even multiple of hop {hop}, at least 3×")
        self.n_fft, self.hop, self.log_magnitude_max = n_fft, hop, log_magnitude_max
        self.register_buffer("inverse_dft", inverse_dft_kernel(n_fft), persistent=False)
        window = torch.hann_window(n_fft, dtype=torch.float64)
        self.envelope = float((window ** 2).view(-1, hop).sum(0).mean())  # constant: 1.5 at n_fft = 4·hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, log_magnitude: torch.Tensor, phase: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        b, _, frames = log_magnitude.shape
        tail_len = self.n_fft - self.hop
        if frames:
            magnitude = torch.exp(log_magnitude.float().clamp(max=self.log_magnitude_max))
            wav = overlap_add(magnitude, phase.float(), self.inverse_dft, self.hop)[:, 0]
        else:  # a stream call before any frame is ready
            wav = log_magnitude.new_zeros(b, tail_len, dtype=torch.float32)
        if state is not None:  # add what earlier frames left beyond their own blocks
            carried = state.memory.get(self)
            if carried is not None:
                wav = torch.cat([wav[:, :tail_len] + carried, wav[:, tail_len:]], dim=1)
            state.memory[self] = wav[:, frames * self.hop:]
        return (wav[:, None, : frames * self.hop] / self.envelope).to(log_magnitude.dtype)
