"""Causal 1-D convolutions that run offline or chunk by chunk with identical results.

Offline, a layer pads its whole input: on the left (zeros, or the first sample repeated) and, for a
layer with a fixed look-ahead, with zeros on the right. In a stream the left padding is replaced by
the layer's memory of its past input, kept in a :class:`StreamState`, and the right padding is added
only when the stream is flushed. Every output is therefore computed from exactly the same input
values as offline, whatever the chunk sizes, and is emitted as soon as that input exists.
"""
from __future__ import annotations

import math

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..errors import ConfigError


class StreamState:
    """The memory of every streaming layer for one stream; ``final`` is set for the flush call."""

    def __init__(self) -> None:
        self.memory: dict[Any, Any] = {}
        self.final = False


def conv_window(x: torch.Tensor, state: StreamState | None, owner: Any, *, left: int, right: int, span: int,
                stride: int, replicate: bool = False) -> torch.Tensor:
    """The padded input from which a convolution of receptive field ``span`` computes its outputs.

    Offline that is all of ``x`` padded; in a stream it is the stored past plus ``x``, cut after the
    last output whose window is complete. The rest is kept for the next call. Shorter than ``span``
    means no output is ready yet.
    """
    if state is None:
        return _padded(x, left, right, replicate)
    past = state.memory.get(owner)
    if past is None:
        if x.shape[-1] == 0:
            return x  # a replicate pad needs the first sample: start the memory with the first real input
        past = x[..., :1].expand(*x.shape[:-1], left) if replicate else x.new_zeros(*x.shape[:-1], left)
    buffer = _joined(past, x)
    if state.final and right:
        buffer = F.pad(buffer, (0, right))
    ready = (buffer.shape[-1] - span) // stride + 1 if buffer.shape[-1] >= span else 0
    state.memory[owner] = buffer[..., ready * stride:]
    return buffer[..., : (ready - 1) * stride + span] if ready else buffer[..., :0]


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _joined(past: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``past`` then ``x`` along time, in ``x``'s memory layout (cat would not keep channels-last)."""
    if not _is_channels_last(x):
        return torch.cat([past, x], dim=-1)
    buffer = torch.empty(*x.shape[:-1], past.shape[-1] + x.shape[-1], dtype=x.dtype, device=x.device,
                         memory_format=torch.channels_last)
    buffer[..., : past.shape[-1]] = past
    buffer[..., past.shape[-1]:] = x
    return buffer


def _padded(x: torch.Tensor, left: int, right: int, replicate: bool) -> torch.Tensor:
    """``x`` with ``left``/``right`` samples of zeros (or edge copies) around its last dimension.

    Written into a buffer of ``x``'s own memory layout: on a channels-last ``[B, C, 1, T]`` signal
    (HoliTok's inference decoder) F.pad, its replicate mode and cat each cost more than the
    convolution they feed.
    """
    if not _is_channels_last(x):
        return F.pad(x, (left, right), mode="replicate" if replicate else "constant")
    padded = torch.empty(*x.shape[:-1], x.shape[-1] + left + right, dtype=x.dtype, device=x.device,
                         memory_format=torch.channels_last)
    end = padded.shape[-1] - right
    padded[..., left:end] = x
    padded[..., :left] = x[..., :1] if replicate else 0.0
    padded[..., end:] = x[..., -1:] if replicate else 0.0
    return padded


def transposed_window(x: torch.Tensor, state: StreamState | None, owner: Any, context: int) -> tuple[torch.Tensor, int]:
    """``x`` with the ``context`` previous input frames in front (zeros at a stream's start) and their count.

    A transposed convolution whose kernel spans ``context + 1`` strides mixes each output block with
    that many earlier frames; offline those are simply part of ``x``.
    """
    if state is None or context == 0:
        return x, 0
    past = state.memory.get(owner)
    if past is None:
        past = x.new_zeros(*x.shape[:-1], context)
    buffer = _joined(past, x)
    state.memory[owner] = buffer[..., buffer.shape[-1] - context:]
    return buffer, context


def scaled_init_(conv: nn.Module, gain: float, fan_in: int) -> None:
    """Weights ~ N(0, gain²/fan_in), bias 0: a gain of 1 keeps the signal's scale through the layer.

    PyTorch's default shrinks the signal about 3× per layer and its biases dominate a deep stack at
    initialisation; see the HoliTok decoder for why that matters.
    """
    nn.init.normal_(conv.weight, 0.0, gain / math.sqrt(fan_in))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class CausalConv1d(nn.Module):
    """Weight-normalised Conv1d whose output ``t`` sees inputs up to ``t·stride + lookahead``.

    Output length is ``ceil(T / stride)``. ``lookahead`` frames of future input (zero-padded at the
    end) give a fixed algorithmic delay instead of full non-causality.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 dilation: int = 1, lookahead: int = 0, bias: bool = True, init_gain: float | None = None) -> None:
        super().__init__()
        self.span = dilation * (kernel_size - 1) + 1
        if not 0 <= lookahead < self.span:
            raise ConfigError(f"lookahead {lookahead} must be in 0..{self.span - 1} for kernel {kernel_size}")
        self.stride, self.lookahead = stride, lookahead
        self.out_channels = out_channels
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias)
        if init_gain is not None:
            scaled_init_(conv, init_gain, fan_in=in_channels * kernel_size)
        self.conv = weight_norm(conv)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = conv_window(x, state, self, left=self.span - 1 - self.lookahead, right=self.lookahead,
                        span=self.span, stride=self.stride)
        if x.shape[-1] < self.span:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        return self.conv(x)


class CausalConvTranspose1d(nn.Module):
    """Weight-normalised upsampling by ``stride`` with kernel ``2·stride``; output block ``t`` sees inputs ≤ ``t``.

    The tail that a plain transposed convolution spills past the input is cut, so the output is
    exactly ``T·stride`` long.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, init_gain: float | None = None) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = out_channels
        conv = nn.ConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride)
        if init_gain is not None:
            scaled_init_(conv, init_gain, fan_in=2 * in_channels)  # each output sample sums 2 taps per channel
        self.conv = weight_norm(conv)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        frames = x.shape[-1]
        if frames == 0:
            return x.new_zeros(x.shape[0], self.out_channels, 0)
        x, context = transposed_window(x, state, self, 1)
        return self.conv(x)[..., context * self.stride: (context + frames) * self.stride]
