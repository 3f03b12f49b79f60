"""A normalising flow over latent sequences, for a VAE's KL term (HoliTok stage II/III).

With a flow ``u = f(z)`` the prior over ``z`` is ``N(f(z); 0, I) · |det ∂f/∂z|`` instead of a plain
standard normal, so the KL regularises the posterior towards a learnable, more flexible density
(as VITS does). The flow is training-only: inference uses the posterior mean or a sample of it.

Form (our choice; the paper does not publish it): ``layers`` affine coupling layers over the
channel dimension, halves swapped between layers, each conditioning on its other half through a
small *causal* convolution stack so that the KL at frame ``t`` depends on frames ``≤ t`` only.
The last layer of every coupling net starts at zero, so the flow starts as the identity and the KL
starts as the plain Gaussian one.
"""
from __future__ import annotations


import torch
from torch import nn


class AffineCoupling(nn.Module):
    def __init__(self, channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        half = channels // 2
        self.pad = kernel_size - 1
        self.net = nn.Sequential(
            nn.Conv1d(half, hidden, kernel_size), nn.SiLU(),
            nn.Conv1d(hidden, hidden, 1), nn.SiLU(),
            nn.Conv1d(hidden, 2 * (channels - half), 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, C, T]`` → ``(u, log|det|)`` with the log-determinant per frame ``[B, T]``."""
        half = z.shape[1] // 2
        keep, change = z[:, :half], z[:, half:]
        shift, log_scale = self.net(nn.functional.pad(keep, (self.pad, 0))).chunk(2, dim=1)
        log_scale = torch.tanh(log_scale)  # bounded scales keep early training stable
        return torch.cat([keep, change * log_scale.exp() + shift], dim=1), log_scale.sum(1)


class LatentFlow(nn.Module):
    def __init__(self, channels: int, layers: int, hidden: int) -> None:
        super().__init__()
        self.couplings = nn.ModuleList(AffineCoupling(channels, hidden) for _ in range(layers))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(z.shape[0], z.shape[-1], device=z.device, dtype=z.dtype)
        for coupling in self.couplings:
            z, ld = coupling(z)
            log_det = log_det + ld
            z = z.flip(1)  # swap which half is transformed next
        return z, log_det


def flow_kl(mean: torch.Tensor, log_std: torch.Tensor, z: torch.Tensor, flow: LatentFlow | None,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Single-sample KL(q(z|x) ‖ p(z)) per latent element, averaged over valid frames.

    ``z = mean + exp(log_std) · ε``; ``p`` is the flow prior, or ``N(0, I)`` without a flow (then
    the closed form is used). ``mask [B, T]`` marks real (unpadded) frames.
    """
    if flow is None:
        kl = 0.5 * (mean ** 2 + (2 * log_std).exp() - 1) - log_std
        per_frame = kl.mean(1)
    else:
        eps = (z - mean) / log_std.exp()
        log_q = (-log_std - 0.5 * eps ** 2).sum(1)
        u, log_det = flow(z)
        log_p = (-0.5 * u ** 2).sum(1) + log_det
        per_frame = (log_q - log_p) / mean.shape[1]  # the 0.5·log 2π terms cancel
    if mask is None:
        return per_frame.mean()
    return (per_frame * mask).sum() / mask.sum().clamp(min=1)


__all__ = ["AffineCoupling", "LatentFlow", "flow_kl"]
