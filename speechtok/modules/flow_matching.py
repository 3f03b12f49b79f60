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
    """Embedding of a shortcut model's Euler step size d, added to the time embedding. Its output
    layer starts at zero, so a decoder fine-tuned with it starts as exactly the decoder without it."""

    def __init__(self, features: int, dim: int) -> None:
        super().__init__(features, dim)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)


def flow_pair(data: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, target velocity)`` for data ``[B, ...]`` at times ``t`` ``[B]``."""
    tt = t.view(-1, *([1] * (data.dim() - 1))).to(data.dtype)
    return tt * data + (1 - tt) * noise, data - noise


def guided(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: scale 1 is the conditional velocity, larger pushes further from the
    unconditional one."""
    return v_uncond + scale * (v_cond - v_uncond)


def on_prefix_path(velocity: Velocity, prefix: torch.Tensor, noise: torch.Tensor) -> Velocity:
    """``velocity`` evaluated with the first ``P`` positions (dim 1) of x replaced by the exact path
    ``t·prefix + (1 − t)·noise[:, :P]`` of known data ``prefix`` ``[B, P, ...]``: in-context prompting
    of a decoder that was never trained with prefixes (as TaDiCodec prompts)."""
    length = prefix.shape[1]
    start = noise[:, :length]

    def with_prefix(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        on_path, _ = flow_pair(prefix, t, start)
        return velocity(torch.cat([on_path, x[:, length:]], dim=1), t)
    return with_prefix


def euler_integrate(velocity: Velocity, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate from ``noise`` at t = 0 to t = 1 in ``steps`` equal Euler steps of ``velocity(x, t[B])``."""
    x = noise
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps, device=x.device)
        x = x + velocity(x, t) / steps
    return x
