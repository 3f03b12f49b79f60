"""Vocos: a ConvNeXt backbone that predicts STFT magnitude and phase, inverted by one ISTFT.

It works at the frame rate (50 Hz) instead of upsampling to the sample rate like HiFi-GAN, so it
is several times cheaper on a CPU. Input is SiTok's normalised log-mel ``[B, 128, F]``; output is
the 24 kHz waveform ``[B, 1, F · 480]``, aligned with the causal mel frames (frame ``i`` ends at
sample ``(i + 1) · hop``), so that slicing frames slices the waveform at the same place.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..models.pretrained import PretrainedMixin
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
        overlap = self.config.kernel_size * (self.config.layers + 1)
        if mel.shape[-1] <= chunk_frames + 2 * overlap:
            return self(mel)
        hop, pieces = self.hop_length, []
        for start in range(0, mel.shape[-1], chunk_frames):
            lo, hi = max(0, start - overlap), min(mel.shape[-1], start + chunk_frames + overlap)
            wav = self(mel[..., lo:hi])
            pieces.append(wav[..., (start - lo) * hop: (min(start + chunk_frames, mel.shape[-1]) - lo) * hop])
        return torch.cat(pieces, dim=-1)
