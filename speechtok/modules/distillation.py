"""Frame-level feature distillation: how far a head's predictions point from a teacher's features."""
from __future__ import annotations

import torch
from torch import nn


def cosine_distance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``1 − cos(pred, target)`` over the frames ``mask`` ``[B, T]`` marks, for ``[B, T, D]`` inputs.

    Cosine, not L2: a teacher's feature scale is arbitrary and differs between layers and models."""
    cos = nn.functional.cosine_similarity(pred.float(), target.float(), dim=-1)
    weight = mask.to(cos.dtype)
    return ((1 - cos) * weight).sum() / weight.sum().clamp(min=1)


class FeatureHead(nn.Module):
    """A linear map from a student's states to a teacher's frame features, trained with ``weight`` ×
    :func:`cosine_distance`: dense targets on every frame, where a transcript gives a few letters a
    second. Training-only: nothing downstream reads its predictions."""

    def __init__(self, in_dim: int, teacher_dim: int, weight: float = 1.0) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, teacher_dim)
        self.weight = weight

    def forward(self, states: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``states`` ``[B, T, in_dim]``, ``targets`` ``[B, T, teacher_dim]``, ``mask`` ``[B, T]`` → the weighted loss."""
        return self.weight * cosine_distance(self.proj(states), targets, mask)
