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
