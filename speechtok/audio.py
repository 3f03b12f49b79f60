"""Audio input/output: load any common file as mono at a chosen rate, validate tensors, save safely.

Loading mixes all channels down to mono and resamples with soxr (high quality, no torchaudio).
Every failure raises :class:`~speechtok.errors.AudioError` whose message names the file and the
problem. Saving is atomic (temp file + rename) and peak-safe (scaled down if it would clip).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from .errors import AudioError, ConfigError
from .fileio import atomic_path

#: Longest audio accepted by default; longer inputs are almost always a mistake (wrong file, raw PCM
#: read with a wrong header) and would exhaust memory in the mel front-end.
MAX_SECONDS = 3600.0
#: Shortest audio accepted: one STFT hop at 24 kHz.
MIN_SAMPLES = 1


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 array with soxr; a no-op when the rates match."""
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    return soxr.resample(wav.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


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


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    *,
    max_seconds: float = MAX_SECONDS,
) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32, resampled to ``sample_rate`` when given.

    Returns ``(wav, rate)`` with ``wav`` of shape ``[T]``.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError with C-level text
        raise AudioError(f"{path}: cannot read audio (corrupt or unsupported format: {_short(exc)})") from None
    if info.channels < 1:
        raise AudioError(f"{path}: no audio channels")
    if info.frames == 0:
        raise AudioError(f"{path}: empty audio (zero samples)")
    if info.frames / info.samplerate > max_seconds:
        raise AudioError(
            f"{path}: audio is {info.frames / info.samplerate:.0f} s long, over the {max_seconds:.0f} s limit"
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio (corrupt file: {_short(exc)})") from None
    if data.shape[0] < MIN_SAMPLES:
        raise AudioError(f"{path}: empty audio (zero samples)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate is not None:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), int(rate)


def save_audio(path: str | os.PathLike[str], wav: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write mono audio atomically; scale down if the peak exceeds 0.999 so nothing clips."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        raise AudioError(f"{path}: refusing to write empty audio")
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: refusing to write audio containing NaN or Inf")
    peak = float(np.abs(wav).max())
    if peak > 0.999:
        wav = wav * (0.999 / peak)
    path = Path(path)
    fmt = _format_for(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wav, sample_rate, format=fmt, subtype="PCM_16" if fmt in ("WAV", "FLAC") else None)
    return path


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


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
    if suffix not in formats:
        raise AudioError(f"{path}: unsupported output format '.{suffix}' (use .wav, .flac or .ogg)")
    return formats[suffix]


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
