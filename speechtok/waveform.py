"""Waveform tensors for the models: validation and zero-padded ``[B, 1, T]`` batches.

Every model's ``encode`` takes channel-first ``[B, 1, T]`` audio at any sample rate, plus optional
per-item ``lengths`` for a batch of unequal clips; :func:`prepare_batch` is that shared first step.
"""
from __future__ import annotations

import numpy as np
import torch

from .audio import resample
from .errors import AudioError, ConfigError


def pad_batch(items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono float32 arrays → zero-padded ``[B, 1, T]`` CPU batch and their lengths."""
    lengths = torch.tensor([len(x) for x in items], dtype=torch.long)
    out = np.zeros((len(items), 1, int(lengths.max())), dtype=np.float32)
    for i, x in enumerate(items):
        out[i, 0, : len(x)] = x
    return torch.from_numpy(out), lengths


def resample_batch(wav: torch.Tensor, lengths: torch.Tensor, sr_in: int, sr_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample each item of a ``[B, 1, T]`` batch over its own ``lengths`` (padding never leaks into
    the filter) and zero-pad the results to the longest; returns a CPU batch and the new lengths."""
    return pad_batch([resample(wav[i, 0, : int(n)].cpu().numpy(), sr_in, sr_out) for i, n in enumerate(lengths)])


def prepare_batch(wav: torch.Tensor, sample_rate: int, target_rate: int,
                  lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an API batch and bring it to ``target_rate``: what every model's ``encode`` does first.

    ``lengths`` (samples at ``sample_rate``) marks padding in a batch of unequal clips; each item is
    resampled over its own length. Returns ``[B, 1, T]`` and the lengths at ``target_rate``.
    """
    wav = check_waveform(wav, sample_rate)
    if lengths is None:
        lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if lengths.shape != (wav.shape[0],) or bool((lengths <= 0).any()) or bool((lengths > wav.shape[-1]).any()):
        raise ConfigError(f"lengths must be {wav.shape[0]} values in 1..{wav.shape[-1]}, got {lengths.tolist()}")
    if sample_rate == target_rate:
        return wav, lengths
    return resample_batch(wav, lengths, sample_rate, target_rate)


def check_waveform(wav: torch.Tensor, sample_rate: int, *, name: str = "audio") -> torch.Tensor:
    """Validate an API waveform and return it as float32 ``[B, 1, T]``.

    Accepts ``[T]`` (one mono clip) and ``[B, 1, T]``. Rejects multi-channel input, empty input,
    non-finite samples and non-positive sample rates with a one-line :class:`AudioError`.
    """
    if not isinstance(wav, torch.Tensor):
        raise AudioError(f"{name}: expected a torch.Tensor, got {type(wav).__name__}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise AudioError(f"{name}: sample_rate must be a positive integer, got {sample_rate!r}")
    if wav.dim() == 1:
        wav = wav[None, None]
    if wav.dim() != 3:
        raise AudioError(f"{name}: expected shape [B, 1, T] (or [T]), got {list(wav.shape)}")
    if wav.shape[1] != 1:
        raise AudioError(
            f"{name}: expected mono audio [B, 1, T], got {wav.shape[1]} channels; mix down to mono first"
        )
    if wav.shape[0] == 0 or wav.shape[-1] == 0:
        raise AudioError(f"{name}: empty audio, shape {list(wav.shape)}")
    if not torch.isfinite(wav).all():
        raise AudioError(f"{name}: audio contains NaN or Inf samples")
    return wav.float()
