"""What every quantiser returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, T, D] with straight-through gradients
    indices: torch.Tensor  # [B, T] int64
    loss: torch.Tensor  # commitment (and codebook) loss, scalar
    perplexity: torch.Tensor  # exp(entropy) of the code distribution over valid positions, scalar


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``[B, T, ...]`` values over positions where ``mask`` ``[B, T]`` is True."""
    if mask is None:
        return values.mean()
    weight = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim()))
    denom = weight.sum() * (values[0, 0].numel() if values.dim() > 2 else 1)
    return (values * weight).sum() / denom.clamp(min=1)


def code_perplexity(indices: torch.Tensor, mask: torch.Tensor | None, codebook_size: int) -> torch.Tensor:
    valid = indices[mask] if mask is not None else indices.reshape(-1)
    if valid.numel() == 0:
        return torch.zeros((), device=indices.device)
    probs = torch.bincount(valid, minlength=codebook_size).float() / valid.numel()
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    return entropy.exp()
