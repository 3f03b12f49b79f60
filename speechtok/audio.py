"""Audio files: load any common file as mono at a chosen rate, save safely; NumPy only (no torch),
so commands that only read or write audio start fast.

Loading mixes all channels down to mono (said once per process) and resamples with soxr (high
quality, no torchaudio). Every failure raises :class:`~speechtok.errors.AudioError` whose message
names the file and the problem. Saving is atomic (temp file + rename) and peak-safe (scaled down if
it would clip). Model-side waveform tensors are in :mod:`speechtok.waveform`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError
from .fileio import atomic_path

log = logging.getLogger("speechtok")
#: Output formats ``save_audio`` writes, by suffix.
AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
_mixdown_said = False

#: Longest audio accepted by default; longer inputs are almost always a mistake (wrong file, raw PCM
#: read with a wrong header) and would exhaust memory in the mel front-end.
MAX_SECONDS = 3600.0
#: Shortest audio accepted: one STFT hop at 24 kHz.
MIN_SAMPLES = 1


RESAMPLE_QUALITY = "HQ"


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 array with soxr; a no-op when the rates match."""
    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    return soxr.resample(wav.astype(np.float32, copy=False), sr_in, sr_out, quality=RESAMPLE_QUALITY).astype(np.float32)


def resample_stream(sr_in: int, sr_out: int) -> soxr.ResampleStream:
    """soxr's stateful resampler with :func:`resample`'s settings. Fed chunk by chunk (the last call with
    ``last=True``), its outputs concatenate to exactly :func:`resample` of the whole signal: measured
    sample for sample, tests/test_sitok_stream.py."""
    return soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)


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
    if data.shape[1] > 1:
        _say_mixdown(path, data.shape[1])
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate is not None:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), int(rate)


def save_audio(path: str | os.PathLike[str], wav: Any, sample_rate: int) -> Path:
    """Write mono audio (a NumPy array or torch tensor) atomically; scale down if the peak exceeds
    0.999 so nothing clips."""
    if hasattr(wav, "detach"):  # a torch.Tensor, without importing torch here
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


def _format_for(path: Path) -> str:
    if path.is_dir():
        raise AudioError(f"{path}: is a directory; give an audio file name (.wav, .flac or .ogg)")
    suffix = path.suffix.lower()
    if suffix not in AUDIO_FORMATS:
        shown = f"'{suffix}'" if suffix else "(no suffix)"
        raise AudioError(f"{path}: unsupported output format {shown} (use .wav, .flac or .ogg)")
    return AUDIO_FORMATS[suffix]


def _say_mixdown(path: Path, channels: int) -> None:
    """Tell the user once per process that multi-channel input is averaged to mono."""
    global _mixdown_said
    if not _mixdown_said:
        _mixdown_said = True
        log.warning(f"note: {path} has {channels} channels; speechtok mixes every input down to mono"
                    " (said once)")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
