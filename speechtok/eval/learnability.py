"""Latent "learnability": how well a small causal model predicts the next latent frame.

A representation that a downstream language model can model well is one whose next frame is
predictable from its past. The probe: normalise the latents per dimension with training-set
statistics, train a 2-layer causal transformer (our shared stack) to predict frame ``t + 1`` from
frames ``≤ t`` with MSE for a fixed budget and seed, and report the validation MSE. Lower is more
learnable. The copy-last-frame MSE is reported beside it as a reference point. Every
representation gets the same probe, budget and data, so the numbers compare across tokenizers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..modules.transformer import Transformer, TransformerConfig


@dataclass(frozen=True)
class ProbeResult:
    valid_mse: float
    copy_last_mse: float
    initial_valid_mse: float
    steps: int


class NextFramePredictor(nn.Module):
    def __init__(self, dim: int, width: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, width)
        self.body = Transformer(TransformerConfig(width, layers, max(1, width // 64), 4 * width, causal=True))
        self.out = nn.Linear(width, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # [B, T, D] → predictions of frames 1..T
        return self.out(self.body(self.inp(z)))


def _crops(sequences: list[torch.Tensor], frames: int, batch: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for i in rng.integers(0, len(sequences), size=batch):
        seq = sequences[i]
        start = int(rng.integers(0, max(1, seq.shape[0] - frames) + 1))
        crop = seq[start:start + frames]
        out.append(nn.functional.pad(crop, (0, 0, 0, frames - crop.shape[0])))
    return torch.stack(out)


def _valid_mse(model: nn.Module, sequences: list[torch.Tensor]) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for seq in sequences:
            if seq.shape[0] < 2:
                continue
            pred = model(seq[None, :-1])[0]
            total += float(((pred - seq[1:]) ** 2).sum())
            count += seq[1:].numel()
    return total / max(1, count)


def probe(train: list[torch.Tensor], valid: list[torch.Tensor], *, steps: int = 500, frames: int = 100,
          batch: int = 16, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> ProbeResult:
    """``train``/``valid``: latent sequences ``[T, D]``. Returns the probe's validation MSE."""
    stacked = torch.cat(train)
    mean, std = stacked.mean(0), stacked.std(0).clamp(min=1e-5)
    train = [(s - mean) / std for s in train]
    valid = [(s - mean) / std for s in valid]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = NextFramePredictor(train[0].shape[1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    initial = _valid_mse(model, valid)
    for _ in tqdm(range(steps), disable=not progress, desc="probe", unit="step"):
        x = _crops(train, frames + 1, batch, rng)
        loss = nn.functional.mse_loss(model(x[:, :-1]), x[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    copy_last = sum(float(((s[1:] - s[:-1]) ** 2).sum()) for s in valid) / max(1, sum(s[1:].numel() for s in valid))
    return ProbeResult(_valid_mse(model, valid), copy_last, initial, steps)
