"""Griffin-Lim phase reconstruction: the explicit, documented fallback vocoder.

It needs no training, so it works for any checkpoint, but it sounds phasey and metallic; a trained
neural vocoder is always preferred. The model only uses it when asked by name (``griffin-lim``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..mel import MelConfig, mel_filterbank


class GriffinLim(nn.Module):
    def __init__(self, cfg: MelConfig, iterations: int = 32, momentum: float = 0.99) -> None:
        super().__init__()
        self.cfg = cfg
        self.iterations = iterations
        self.momentum = momentum
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("inverse_fb", torch.linalg.pinv(mel_filterbank(cfg)), persistent=False)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Natural-log mel magnitude ``[B, n_mels, F]`` → waveform ``[B, 1, F · hop]``."""
        cfg = self.cfg
        magnitude = (self.inverse_fb @ log_mel.float().exp()).clamp(min=1e-8)
        frames = magnitude.shape[-1]
        length = frames * cfg.hop_length
        generator = torch.Generator(device="cpu").manual_seed(0)
        angles = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=generator)).to(magnitude.device)
        previous = torch.zeros_like(angles)
        wav = torch.zeros(magnitude.shape[0], length, device=magnitude.device)
        for _ in range(self.iterations):
            wav = torch.istft(magnitude * angles, cfg.n_fft, cfg.hop_length, window=self.window, length=length)
            spec = torch.stft(wav, cfg.n_fft, cfg.hop_length, window=self.window, return_complex=True)[..., :frames]
            rebuilt = spec - self.momentum / (1 + self.momentum) * previous
            previous = spec
            angles = rebuilt / rebuilt.abs().clamp(min=1e-8)
        wav = torch.istft(magnitude * angles, cfg.n_fft, cfg.hop_length, window=self.window, length=length)
        # The front-end's frames are causal (frame i ends at (i+1)·hop) while istft centres frame i at
        # i·hop, one hop late: shift back by one hop.
        wav = torch.nn.functional.pad(wav[:, cfg.hop_length:], (0, cfg.hop_length))
        return wav[:, None, :]
