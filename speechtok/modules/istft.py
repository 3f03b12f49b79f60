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
        window = torch.hann_window(n_fft, dtype=torch.float64)
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        weight = torch.full_like(bins, 2.0)
        weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in a real inverse DFT
        angle = 2 * math.pi * bins[:, None] * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
        inverse = torch.cat([weight[:, None] * angle.cos(), -weight[:, None] * angle.sin()]) * window / n_fft
        self.register_buffer("inverse_dft", inverse[:, None, :].float(), persistent=False)  # [2·bins, 1, n_fft]
        self.register_buffer("window", window.float(), persistent=False)
        self.envelope = float((window ** 2).view(-1, hop).sum(0).mean())  # constant: 1.5 at n_fft = 4·hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, log_magnitude: torch.Tensor, phase: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        b, _, frames = log_magnitude.shape
        tail_len = self.n_fft - self.hop
        if frames:
            magnitude = torch.exp(log_magnitude.float().clamp(max=self.log_magnitude_max))
            phase = phase.float()
            spectrum = torch.cat([magnitude * phase.cos(), magnitude * phase.sin()], dim=1)
            wav = nn.functional.conv_transpose1d(spectrum, self.inverse_dft, stride=self.hop)[:, 0]
        else:  # a stream call before any frame is ready
            wav = log_magnitude.new_zeros(b, tail_len, dtype=torch.float32)
        if state is not None:  # add what earlier frames left beyond their own blocks
            carried = state.memory.get(self)
            if carried is not None:
                wav = torch.cat([wav[:, :tail_len] + carried, wav[:, tail_len:]], dim=1)
            state.memory[self] = wav[:, frames * self.hop:]
        return (wav[:, None, : frames * self.hop] / self.envelope).to(log_magnitude.dtype)
