"""HoliTok's BigVGAN decoder folded for inference: the same function at a fraction of the CPU time.

Training needs weight normalisation, channel-first ``[B, C, T]`` signals and autograd; decoding
needs none of them, and on a CPU they cost most of the time (profiled on holitok-base, 1 thread):
weight normalisation is recomputed over all 128 M decoder weights at every call, PyTorch's
channel-first depthwise convolutions (the anti-alias filters around every SnakeBeta) take a slow
path, and narrow late-stage convolutions run at a fraction of the machine's matmul speed.

:class:`InferenceDecoder` reads a trained decoder once (weight norm folded into plain weights,
SnakeBeta's α and β^-½ precomputed) and keeps every signal channels-last as ``[B, C, 1, T]``, the
layout in which oneDNN runs both the dense and the depthwise convolutions fast. It honours the
same :class:`StreamState` as the reference decoder, so streaming decode uses it too, and its output
equals the reference's up to float rounding (``tests/test_holitok_inference.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..modules.conv import StreamState, conv_window

if TYPE_CHECKING:  # the reference modules, read once; importing them at run time would be circular
    from ..modules.activations import AntiAliasedSnakeBeta
    from ..modules.conv import CausalConv1d, CausalConvTranspose1d
    from .holitok import AMPBlock, Decoder

_CHANNELS_LAST = torch.channels_last


def _folded(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A conv weight ``[O, I, k]`` (weight norm already applied) as a channels-last ``[O, I, 1, k]``."""
    return weight.detach().to(dtype).unsqueeze(2).contiguous(memory_format=_CHANNELS_LAST)


class _Conv:
    """A folded :class:`CausalConv1d`: same padding, look-ahead and stream memory."""

    def __init__(self, layer: "CausalConv1d", dtype: torch.dtype) -> None:
        conv = layer.conv
        self.weight = _folded(conv.weight, dtype)
        self.bias = None if conv.bias is None else conv.bias.detach().to(dtype)
        self.stride, self.dilation = conv.stride[0], conv.dilation[0]
        self.span, self.lookahead = layer.span, layer.lookahead

    def __call__(self, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        x = conv_window(x, state, self, left=self.span - 1 - self.lookahead, right=self.lookahead,
                        span=self.span, stride=self.stride)
        if x.shape[-1] < self.span:
            return x.new_zeros(x.shape[0], self.weight.shape[0], 1, 0)
        return F.conv2d(x, self.weight, self.bias, stride=(1, self.stride), dilation=(1, self.dilation))


class _Upsample:
    """A folded :class:`CausalConvTranspose1d` (×s, kernel 2s) as a kernel-2 convolution to s·C channels.

    Output sample ``t·s + r`` is ``W[..., r]ᵀ·x[t] + W[..., s + r]ᵀ·x[t − 1]``: one dense
    convolution whose channels are ordered (r, c). Channels-last, its memory ``[t][r][c]`` already
    is the upsampled signal ``[t·s + r][c]``, so the shuffle is a free view. (oneDNN has no fast
    channels-last transposed convolution; the 1536-channel one took half a second on 2 s.)
    """

    def __init__(self, layer: "CausalConvTranspose1d", dtype: torch.dtype) -> None:
        weight = layer.conv.weight.detach().to(dtype)  # [C_in, C_out, 2s]
        s, c_out = layer.stride, weight.shape[1]
        taps = torch.stack([weight[..., s:], weight[..., :s]], dim=-1)  # [C_in, C_out, s, 2]: x[t-1], x[t]
        self.weight = taps.permute(2, 1, 0, 3).reshape(s * c_out, weight.shape[0], 1, 2).contiguous(
            memory_format=_CHANNELS_LAST)
        bias = layer.conv.bias
        self.bias = None if bias is None else bias.detach().to(dtype).repeat(s)
        self.stride, self.out_channels = s, c_out

    def __call__(self, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        x = conv_window(x, state, self, left=1, right=0, span=2, stride=1)
        if x.shape[-1] < 2:
            return x.new_zeros(x.shape[0], self.out_channels, 1, 0)
        y = F.conv2d(x, self.weight, self.bias).contiguous(memory_format=_CHANNELS_LAST)
        b, _, _, frames = y.shape
        # [B, s·C, 1, T] channels-last is [B, 1, T, s, C] in memory: read it as [B, C, 1, T·s].
        return y.permute(0, 2, 3, 1).reshape(b, 1, frames * self.stride, self.out_channels).permute(0, 3, 1, 2)


class _AntiAliasedSnake:
    """A folded :class:`AntiAliasedSnakeBeta`, channels-last, SnakeBeta in place.

    The ×2 upsampling is computed as its two polyphase depthwise filters written into alternate
    samples of one buffer: oneDNN has no channels-last depthwise transposed convolution, and a
    layout conversion of the upsampled signal cost more than every convolution around it.
    """

    def __init__(self, layer: "AntiAliasedSnakeBeta", dtype: torch.dtype) -> None:
        channels, ratio, size = layer.act.log_alpha.numel(), layer.ratio, layer.kernel_size
        taps = layer.filter.detach().to(dtype).view(-1)
        self.down = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1).contiguous(memory_format=_CHANNELS_LAST)
        # Phase p of the upsampled signal: out[ratio·n + p] = ratio · Σ_j taps[p + ratio·j] · x[n − j].
        self.phases = [(ratio * taps[p::ratio].flip(0)).view(1, 1, 1, -1).expand(channels, 1, 1, -1)
                       .contiguous(memory_format=_CHANNELS_LAST) for p in range(ratio)]
        self.alpha = layer.act.log_alpha.detach().exp().to(dtype).view(1, -1, 1, 1)
        self.inv_sqrt_beta = (layer.act.log_beta.detach().exp() + 1e-9).rsqrt().to(dtype).view(1, -1, 1, 1)
        self.ratio, self.kernel_size, self.channels = ratio, size, channels

    def __call__(self, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        b, _, _, frames = x.shape
        if frames == 0:
            return x
        window = conv_window(x, state, (self, "up"), left=self.kernel_size // self.ratio - 1, right=0,
                             span=self.kernel_size // self.ratio, stride=1)
        # Offline, the buffer already holds the down filter's left edge (filled below); in a stream
        # conv_window supplies it from the stream's memory.
        edge = self.kernel_size - 1 if state is None else 0
        buffer = torch.empty(b, self.channels, 1, edge + frames * self.ratio, dtype=x.dtype, device=x.device,
                             memory_format=_CHANNELS_LAST)
        up = buffer[..., edge:]
        interleaved = up.permute(0, 2, 3, 1).view(b, 1, frames, self.ratio, self.channels)  # memory order
        for p, phase in enumerate(self.phases):
            interleaved[:, :, :, p] = F.conv2d(window, phase, groups=self.channels).permute(0, 2, 3, 1)
        wave = torch.mul(up, self.alpha).sin_().mul_(self.inv_sqrt_beta)  # x + sin²(αx)/β, in the buffer
        up.addcmul_(wave, wave)
        if state is None:
            buffer[..., :edge] = up[..., :1]  # BigVGAN's edge-replicated start
        else:
            buffer = conv_window(up, state, (self, "down"), left=self.kernel_size - 1, right=0,
                                 span=self.kernel_size, stride=self.ratio, replicate=True)
            if buffer.shape[-1] < self.kernel_size:
                return x.new_zeros(b, self.channels, 1, 0)
        return F.conv2d(buffer, self.down, stride=(1, self.ratio), groups=self.channels)


class _AMPBlock:
    def __init__(self, block: "AMPBlock", dtype: torch.dtype) -> None:
        self.layers = [(_AntiAliasedSnake(a1, dtype), _Conv(c1, dtype), _AntiAliasedSnake(a2, dtype), _Conv(c2, dtype))
                       for a1, c1, a2, c2 in zip(block.acts1, block.convs1, block.acts2, block.convs2)]

    def __call__(self, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        for act1, conv1, act2, conv2 in self.layers:
            x = conv2(act2(conv1(act1(x, state), state), state), state).add_(x)
        return x


class InferenceDecoder:
    """A snapshot of a :class:`Decoder` for decoding: ``[B, latent_dim, T']`` → ``[B, 1, T'·hop]``.

    A snapshot: rebuild it when the decoder's weights change (``HoliTok`` does this itself).
    """

    def __init__(self, decoder: "Decoder", dtype: torch.dtype = torch.float32) -> None:
        with torch.no_grad():
            self.conv_pre = _Conv(decoder.conv_pre, dtype)
            self.stages = [(_Upsample(stage.up, dtype), [_AMPBlock(b, dtype) for b in stage.resblocks])
                           for stage in decoder.stages]
            self.act_post = _AntiAliasedSnake(decoder.act_post, dtype)
            self.conv_post = _Conv(decoder.conv_post, dtype)
        self.dtype = dtype

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        out_dtype = x.dtype
        x = x.to(self.dtype).unsqueeze(2).contiguous(memory_format=_CHANNELS_LAST)
        x = self.conv_pre(x, state)
        for upsample, blocks in self.stages:
            x = upsample(x, state)
            total = blocks[0](x, state)
            for block in blocks[1:]:
                total.add_(block(x, state))
            x = total.div_(len(blocks))
        wav = self.conv_post(self.act_post(x, state), state).clamp(-1.0, 1.0)
        return wav.squeeze(2).to(out_dtype).contiguous()
