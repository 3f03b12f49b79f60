"""Conditional flow matching, written once for SiTok's mel decoder and the AR+DiT patch head.

Straight paths from noise (t = 0) to data (t = 1): ``x_t = t·x₁ + (1 − t)·x₀``, target velocity
``x₁ − x₀``. Sampling integrates ``dx/dt = v(x, t)`` with Euler steps; classifier-free guidance
extrapolates from the unconditional velocity towards the conditional one.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the flow time followed by a 2-layer MLP."""

    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.features // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = 1000.0 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class StepEmbedding(TimestepEmbedding):
    """Embedding of a scalar the decoder is told besides t (a shortcut model's Euler step size d, a
    distilled guidance scale), added to the time embedding. Its output layer starts at zero, so a
    decoder fine-tuned with it starts as exactly the decoder without it."""

    def __init__(self, features: int, dim: int) -> None:
        super().__init__(features, dim)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)


def flow_pair(data: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, target velocity)`` for data ``[B, ...]`` at times ``t`` ``[B]``."""
    tt = t.view(-1, *([1] * (data.dim() - 1))).to(data.dtype)
    return tt * data + (1 - tt) * noise, data - noise


def guided(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: scale 1 is the conditional velocity, larger pushes further from the
    unconditional one (a tensor scale broadcasts, e.g. ``[B, 1, 1]`` for one scale per item)."""
    return v_uncond + scale * (v_cond - v_uncond)


def on_prefix_path(velocity: Callable[[torch.Tensor, int], torch.Tensor], prefix: torch.Tensor, noise: torch.Tensor,
                   grid: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """An indexed ``velocity(x, i)`` (see :func:`euler_integrate_indexed`) evaluated with the first
    ``P`` positions (dim 1) of x replaced by the exact path ``t·prefix + (1 − t)·noise[:, :P]`` of known
    data ``prefix`` ``[B, P, ...]`` at ``t = grid[i]``: in-context prompting of a decoder that was never
    trained with prefixes (as TaDiCodec prompts)."""
    length = prefix.shape[1]
    start = noise[:, :length]

    def with_prefix(x: torch.Tensor, i: int) -> torch.Tensor:
        on_path, _ = flow_pair(prefix, grid[i].expand(x.shape[0]), start)
        return velocity(torch.cat([on_path, x[:, length:]], dim=1), i)
    return with_prefix


def euler_integrate(velocity: Velocity, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate from ``noise`` at t = 0 to t = 1 in ``steps`` equal Euler steps of ``velocity(x, t[B])``."""
    return euler_integrate_indexed(
        lambda x, i: velocity(x, torch.full((x.shape[0],), i / steps, device=x.device)), noise, steps)


def euler_integrate_indexed(velocity: Callable[[torch.Tensor, int], torch.Tensor], noise: torch.Tensor,
                            steps: int) -> torch.Tensor:
    """:func:`euler_integrate` for a ``velocity(x, i)`` told the step index (its time is
    ``time_grid(steps)[i]``), so that a sampler can look up what it precomputed for the fixed grid."""
    x = noise
    for i in range(steps):
        x = x + velocity(x, i) / steps
    return x


def time_grid(steps: int, device: torch.device | None = None) -> torch.Tensor:
    """The times ``[steps]`` at which :func:`euler_integrate` evaluates the velocity."""
    return torch.tensor([i / steps for i in range(steps)], device=device)
