"""Vocos: a ConvNeXt backbone that predicts STFT magnitude and phase, inverted by one ISTFT.

It works at the frame rate (50 Hz) instead of upsampling to the sample rate like HiFi-GAN, so it
is several times cheaper on a CPU. Input is SiTok's normalised log-mel ``[B, 128, F]``; output is
the 24 kHz waveform ``[B, 1, F · 480]``, aligned with the causal mel frames (frame ``i`` ends at
sample ``(i + 1) · hop``), so that slicing frames slices the waveform at the same place.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import ConfigError
from ..mel_config import MelConfig
from ..models.pretrained import PretrainedMixin
from ..modules.conv import StreamState
from ..modules.convnext import ConvNeXtBlock
from .vocos_config import VocosConfig, get_preset

MODEL_KIND = "vocos"


class Vocos(PretrainedMixin, nn.Module):
    """Normalised log-mel ``[B, n_mels, F]`` → waveform ``[B, 1, F · hop]``."""

    model_kind = MODEL_KIND
    config_class = VocosConfig
    get_preset = staticmethod(get_preset)

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embed = nn.Conv1d(c.mel.n_mels, c.dim, c.kernel_size, padding=c.kernel_size // 2)
        self.embed_norm = nn.LayerNorm(c.dim, eps=1e-6)
        scale = c.layer_scale_init if c.layer_scale_init is not None else 1.0 / c.layers
        self.blocks = nn.ModuleList(ConvNeXtBlock(c.dim, c.intermediate_dim, c.kernel_size, scale)
                                    for _ in range(c.layers))
        self.final_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.head = nn.Linear(c.dim, c.mel.n_fft + 2)  # log-magnitude and phase of n_fft/2+1 bins
        self.register_buffer("window", torch.hann_window(c.mel.n_fft), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.mel.hop_length

    def magnitude_phase(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted STFT as real magnitude and phase ``[B, n_fft/2 + 1, F]`` each (what the ONNX
        export, which has no complex tensors, builds on)."""
        x = self.embed_norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).float()
        log_magnitude, phase = out.chunk(2, dim=1)
        return torch.exp(log_magnitude.clamp(max=self.config.log_magnitude_max)), phase

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """The predicted complex STFT ``[B, n_fft/2 + 1, F]``."""
        return torch.polar(*self.magnitude_phase(mel))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.config.mel.n_mels:
            shape = list(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__
            raise ConfigError(f"mel: expected [B, {self.config.mel.n_mels}, F], got {shape}")
        if mel.shape[-1] == 0:
            raise ConfigError("mel: no frames")
        return self.synthesise(self.spectrum(mel))

    def synthesise(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse STFT with frame ``i`` centred on its own hop, ``[i · hop, (i + 1) · hop)``.

        Overlap-add with window-envelope normalisation, trimmed to exactly ``F · hop`` samples;
        every output sample is covered by at least two windows, so the envelope never vanishes.
        """
        n_fft, hop, frames = self.config.mel.n_fft, self.hop_length, spec.shape[-1]
        pieces = torch.fft.irfft(spec, n=n_fft, dim=1) * self.window[None, :, None]  # [B, n_fft, F]
        length = (frames - 1) * hop + n_fft
        fold = dict(output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop))
        wav = nn.functional.fold(pieces, **fold)[:, 0, 0]
        envelope = nn.functional.fold((self.window ** 2)[None, :, None].expand(1, n_fft, frames), **fold)[0, 0, 0]
        pad = (n_fft - hop) // 2
        return (wav / envelope.clamp(min=1e-8))[:, None, pad: pad + frames * hop]

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, *, chunk_frames: int = 3000) -> torch.Tensor:
        """Inference in chunks of ``chunk_frames`` (60 s) with overlap, so memory stays flat on long input."""
        left, right = self.context_frames()  # each chunk's samples are exact with this much context
        if mel.shape[-1] <= chunk_frames + left + right:
            return self(mel)
        hop, pieces = self.hop_length, []
        for start in range(0, mel.shape[-1], chunk_frames):
            lo, hi = max(0, start - left), min(mel.shape[-1], start + chunk_frames + right)
            wav = self(mel[..., lo:hi])
            pieces.append(wav[..., (start - lo) * hop: (min(start + chunk_frames, mel.shape[-1]) - lo) * hop])
        return torch.cat(pieces, dim=-1)

    def context_frames(self) -> tuple[int, int]:
        """Mel frames before and after frame ``i`` that its samples ``[i·hop, (i+1)·hop)`` depend on:
        the centred convolutions (embedding and blocks) plus the windows that overlap those samples."""
        c = self.config
        convs = (c.kernel_size // 2) * (c.layers + 1)
        n_fft, hop = c.mel.n_fft, self.hop_length
        pad = (n_fft - hop) // 2
        return convs + -(-(n_fft - pad) // hop) - 1, convs + -(-(pad + hop) // hop) - 1

    @torch.inference_mode()
    def stream(self, mel: torch.Tensor, state: StreamState) -> torch.Tensor:
        """Mel frames chunk by chunk → the samples that are final; concatenated, they equal ``self(mel)``.

        The vocoder is not causal: frame ``i``'s samples wait for :meth:`context_frames` ``[1]``
        later frames (0.46 s for vocos-small). Each call reruns the network on the new frames with
        that much context on both sides, so every emitted sample is computed from the same frames as
        offline; ``state.final`` (a stream's flush) emits the rest.
        """
        left, right = self.context_frames()
        memory = state.memory.get(self)
        frames, start, done = (mel, 0, 0) if memory is None else (torch.cat([memory[0], mel], dim=-1), *memory[1:])
        total = start + frames.shape[-1]
        ready = total if state.final else max(done, total - right)
        out = frames.new_zeros(frames.shape[0], 1, 0)
        if ready > done:
            lo = max(start, done - left)
            wav = self(frames[..., lo - start:])
            out = wav[..., (done - lo) * self.hop_length: (ready - lo) * self.hop_length]
        keep = max(start, ready - left)
        state.memory[self] = (frames[..., keep - start:], keep, ready)
        return out


@functools.lru_cache(maxsize=4)
def _cached_vocoder(source: str) -> Vocos:
    return Vocos.from_pretrained(source)


def load_vocoder(source: str, mel: MelConfig) -> Vocos:
    """A Vocos checkpoint whose mel front-end must equal ``mel`` (else the audio would be garbage)."""
    vocoder = _cached_vocoder(str(source))
    if vocoder.config.mel != mel:
        raise ConfigError(f"vocoder {source}: its mel settings differ from the tokenizer's ({vocoder.config.mel} vs {mel})")
    return vocoder
