"""Monotonic alignment search (Glow-TTS, Grad-TTS): the most likely hard, monotonic path from text
units to frames under a per-(unit, frame) log-likelihood.

Why: an autoregressive model learns *where* in the text it is only from a very weak signal on a few
hours of speech. A hard-EM aligner finds that alone: the path is searched with the current
likelihoods, the likelihoods are trained on the path, and from almost any start the path settles on
the diagonal the speech follows. Every frame goes to exactly one unit, units keep their order, and
every unit gets at least one frame.
"""
from __future__ import annotations

import torch

_UNREACHABLE = -1e30


@torch.no_grad()
def monotonic_alignment(log_likelihood: torch.Tensor, text_lengths: torch.Tensor,
                        frame_lengths: torch.Tensor) -> torch.Tensor:
    """``log_likelihood [B, N, M]`` (unit × frame) → the best path as a 0/1 tensor of the same shape.

    Row b uses its first ``text_lengths[b]`` units and ``frame_lengths[b]`` frames (it needs at least
    as many frames as units); the rest of its path is 0. Dynamic programming over frames, vectorised
    over the batch and the units: ``score[i, j] = ll[i, j] + max(score[i, j-1], score[i-1, j-1])``."""
    if log_likelihood.dim() != 3:
        raise ValueError(f"log_likelihood must be [B, N, M], got {tuple(log_likelihood.shape)}")
    batch, units, frames = log_likelihood.shape
    text_lengths, frame_lengths = text_lengths.long().cpu(), frame_lengths.long().cpu()
    if bool((text_lengths < 1).any()) or bool((text_lengths > frame_lengths).any()) \
            or int(frame_lengths.max()) > frames or int(text_lengths.max()) > units:
        raise ValueError("every row needs 1 <= text length <= frame length, within the tensor's N and M")
    ll = log_likelihood.detach().float().cpu()
    if not bool(torch.isfinite(ll).all()):
        raise ValueError("the log-likelihood has NaN or infinite values")
    score = torch.full((batch, units), _UNREACHABLE)
    score[:, 0] = ll[:, 0, 0]
    moved = torch.zeros(batch, units, frames, dtype=torch.bool)  # reached (i, j) from (i-1, j-1)
    for j in range(1, frames):
        stay = score
        advance = torch.cat([torch.full((batch, 1), _UNREACHABLE), score[:, :-1]], dim=1)
        moved[:, :, j] = advance > stay
        score = torch.maximum(stay, advance) + ll[:, :, j]
    path = torch.zeros(batch, units, frames)
    unit = text_lengths - 1
    rows = torch.arange(batch)
    for j in range(frames - 1, -1, -1):
        active = j < frame_lengths
        path[rows[active], unit[active], j] = 1.0
        if j > 0:
            unit = unit - (active & moved[rows, unit, j]).long()
    return path.to(log_likelihood.device)


def durations(path: torch.Tensor) -> torch.Tensor:
    """Frames per unit of a path ``[B, N, M]`` → ``[B, N]``."""
    return path.sum(-1)


def expand(path: torch.Tensor, per_unit: torch.Tensor) -> torch.Tensor:
    """Per-unit values ``[B, N, D]`` → per frame ``[B, M, D]`` along a path ``[B, N, M]`` (0 where a
    padded frame has no unit)."""
    return path.transpose(-2, -1).to(per_unit.dtype) @ per_unit
