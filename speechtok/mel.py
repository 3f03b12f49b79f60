"""Log-mel front-end for SiTok: 24 kHz, n_fft 1920, hop 480 (50 Hz), 128 bins, 0–12 kHz.

Framing is *causal*: each frame covers the window that ends one hop after its start, with
``n_fft - hop`` zeros padded on the left only. Frame ``i`` therefore depends on samples up to
``(i + 1) * hop`` and never on what follows. This has two consequences we rely on:
encoding a clip inside a zero-padded batch gives exactly the frames of encoding it alone, and the
front-end can run in streaming mode. ``ceil(T / hop)`` frames come out of ``T`` samples.

Values are ``log(clamp(mel, 1e-5))`` normalised with TaDiCodec's statistics (mean −4.92,
variance 8.14) so that the flow-matching target is roughly zero-mean, unit-variance.
"""
from __future__ import annotations

import math
import torch
from torch import nn

from .mel_config import MelConfig


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    mel = hz / f_sp
    return torch.where(hz >= min_log_hz, min_log_mel + torch.log(hz.clamp(min=1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """Slaney-normalised triangular filters, shape ``[n_mels, n_fft // 2 + 1]``."""
    n_freqs = cfg.n_fft // 2 + 1
    cpu = torch.device("cpu")  # explicit, so that building a model on the meta device still works
    freqs = torch.linspace(0, cfg.sample_rate / 2, n_freqs, dtype=torch.float64, device=cpu)
    edges = _hz_to_mel(torch.tensor([cfg.f_min, cfg.f_max], dtype=torch.float64, device=cpu)).tolist()
    mel_pts = torch.linspace(edges[0], edges[1], cfg.n_mels + 2, dtype=torch.float64, device=cpu)
    hz_pts = _mel_to_hz(mel_pts)
    lower = (freqs[None, :] - hz_pts[:-2, None]) / (hz_pts[1:-1, None] - hz_pts[:-2, None])
    upper = (hz_pts[2:, None] - freqs[None, :]) / (hz_pts[2:, None] - hz_pts[1:-1, None])
    fb = torch.clamp(torch.minimum(lower, upper), min=0.0)
    fb *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return fb.float()


class MelSpectrogram(nn.Module):
    """Batched causal log-mel: ``[B, 1, T]`` waveform → ``[B, n_mels, ceil(T / hop)]``."""

    def __init__(self, cfg: MelConfig = MelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(cfg), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.window.device

    def num_frames(self, num_samples: int) -> int:
        return -(-num_samples // self.cfg.hop_length)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        x = wav.reshape(wav.shape[0], -1).float()
        frames = self.num_frames(x.shape[-1])
        right = frames * cfg.hop_length - x.shape[-1]
        return self.windows(nn.functional.pad(x, (cfg.n_fft - cfg.hop_length, right)))

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel of every whole window of an already padded ``[B, T]`` signal, one per hop:
        ``(T - n_fft) // hop + 1`` frames. The streaming encoder feeds its buffer here."""
        cfg = self.cfg
        spec = torch.stft(
            x, cfg.n_fft, cfg.hop_length, window=self.window, center=False, return_complex=True
        )
        magnitude = spec.abs()
        mel = torch.matmul(self.filterbank, magnitude)
        return self.normalize(torch.log(mel.clamp(min=cfg.log_floor)))

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.cfg.norm_mean) / math.sqrt(self.cfg.norm_var)

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised mel → natural-log mel magnitude."""
        return mel * math.sqrt(self.cfg.norm_var) + self.cfg.norm_mean

    @property
    def silence_value(self) -> float:
        """The normalised value of a silent bin; used to pad mel frames."""
        return (math.log(self.cfg.log_floor) - self.cfg.norm_mean) / math.sqrt(self.cfg.norm_var)
