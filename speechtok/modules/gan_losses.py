"""Losses for waveform generators: multi-resolution log-mel L1, hinge adversarial, feature matching."""
from __future__ import annotations

import torch
from torch import nn

from ..mel import MelConfig, mel_filterbank
from .discriminators import Discriminators, Judgement


class MultiResolutionMelLoss(nn.Module):
    """Mean L1 between log-mel spectrograms at several STFT sizes (hop n_fft/4, n_fft/16 mel bins).

    One resolution cannot be sharp in time and frequency at once; averaging several penalises
    both smeared transients and smeared harmonics.
    """

    def __init__(self, sample_rate: int, resolutions: tuple[int, ...]) -> None:
        super().__init__()
        self.resolutions = resolutions
        for n_fft in resolutions:
            cfg = MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4,
                            n_mels=max(32, n_fft // 16), f_max=sample_rate / 2)
            self.register_buffer(f"fb_{n_fft}", mel_filterbank(cfg), persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, wav: torch.Tensor, n_fft: int) -> torch.Tensor:
        spec = torch.stft(wav[:, 0].float(), n_fft, n_fft // 4, window=getattr(self, f"window_{n_fft}"),
                          return_complex=True)
        return torch.log(torch.matmul(getattr(self, f"fb_{n_fft}"), spec.abs()).clamp(min=1e-5))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        losses = [nn.functional.l1_loss(self.log_mel(fake, n), self.log_mel(real, n)) for n in self.resolutions]
        return torch.stack(losses).mean()


def discriminator_hinge(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """Mean over sub-discriminators of E[relu(1 − D(x))] + E[relu(1 + D(G(z)))]."""
    losses = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake, strict=True)]
    return torch.stack(losses).mean()


def generator_hinge(fake: list[Judgement]) -> torch.Tensor:
    return torch.stack([torch.relu(1 - f).mean() for f, _ in fake]).mean()


def feature_matching(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """Mean L1 between the discriminator's hidden features of real and generated audio."""
    losses = [nn.functional.l1_loss(f, r.detach())
              for (_, real_maps), (_, fake_maps) in zip(real, fake, strict=True)
              for r, f in zip(real_maps, fake_maps, strict=True)]
    return torch.stack(losses).mean()


def _split(judgements: list[Judgement], n: int) -> tuple[list[Judgement], list[Judgement]]:
    """Judgements of ``real ‖ fake`` → (real judgements, fake judgements)."""
    real = [(logits[:n], [f[:n] for f in feats]) for logits, feats in judgements]
    fake = [(logits[n:], [f[n:] for f in feats]) for logits, feats in judgements]
    return real, fake


def discriminator_loss(discriminator: Discriminators, real: torch.Tensor, fake: torch.Tensor,
                       resolution_weight: float) -> torch.Tensor:
    """Hinge loss of the period + ``resolution_weight`` × resolution discriminators.

    Real and (detached) fake audio go through one call, which keeps DDP to one forward per backward.
    """
    period, resolution = discriminator(torch.cat([real, fake.detach()]))
    n = real.shape[0]
    return discriminator_hinge(*_split(period, n)) + resolution_weight * discriminator_hinge(*_split(resolution, n))


def generator_gan_losses(discriminator: Discriminators, real: torch.Tensor, fake: torch.Tensor,
                         resolution_weight: float) -> dict[str, torch.Tensor]:
    """The generator's adversarial (hinge) and feature-matching losses, resolution terms weighted."""
    period, resolution = discriminator(torch.cat([real, fake]))
    n = real.shape[0]
    real_p, fake_p = _split(period, n)
    real_r, fake_r = _split(resolution, n)
    return {"adv": generator_hinge(fake_p) + resolution_weight * generator_hinge(fake_r),
            "fm": feature_matching(real_p, fake_p) + resolution_weight * feature_matching(real_r, fake_r)}
