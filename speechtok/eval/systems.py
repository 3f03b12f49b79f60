"""Systems under evaluation: anything that turns a waveform into a reconstruction.

A system name resolves, in order, to: ``identity`` (the reference itself, so every table shows the
judges' floor), a classical codec from :mod:`~speechtok.eval.codecs`, ``vocoder:<griffin-lim or a
vocoder checkpoint>`` (copy synthesis of the reference's mel: the vocoder's ceiling), or a
checkpoint (a directory or bundled name) of SiTok or HoliTok.

A SiTok checkpoint may carry its own decoding settings as ``@key=value`` suffixes, e.g.
``sitok-default@steps=4@cfg=1``, so that one report compares one model decoded several ways; they
override ``--steps``/``--cfg``/``--vocoder`` for that entry and are part of its name.
``@codebooks=k`` sends a residual-VQ model's first k codebooks only (its bitrate counts those).
``@temperature=t`` scales the decoder's starting noise (1 samples the prior; 0 decodes one fixed path).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from ..bundled import load_checkpoint_kind
from .codecs import CODECS, Codec
from .errors import CodecError, EvalError


@dataclass(frozen=True)
class Reconstruction:
    """A system's output for one file: audio, and what it cost in bits (``None`` for identity)."""

    wav: np.ndarray
    sample_rate: int
    bits: int | None = None
    codes: np.ndarray | None = None


class System(Protocol):
    """What the runner needs from a system."""

    name: str
    nominal_kbps: float | None

    def fingerprint(self) -> str:
        """Changes whenever the system's output could change; keys the per-file cache."""
        ...

    def describe(self) -> dict[str, Any]:
        """Everything worth recording about the system (written into every result)."""
        ...

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction: ...


@dataclass(frozen=True)
class IdentitySystem:
    """The reference itself: its scores are the judges' floor (WER) or ceiling (STOI, PESQ, SIM)."""

    name: str = "identity"
    nominal_kbps: float | None = None

    def fingerprint(self) -> str:
        return "identity"

    def describe(self) -> dict[str, Any]:
        return {"kind": "identity"}

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction:
        return Reconstruction(wav, sample_rate)


@dataclass(frozen=True)
class CodecSystem:
    """A classical codec run through its real encoder and decoder programs."""

    codec: Codec

    @property
    def name(self) -> str:
        return self.codec.name

    @property
    def nominal_kbps(self) -> float:
        return self.codec.nominal_kbps

    def fingerprint(self) -> str:
        return f"codec:{self.codec.name}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "codec", "codec": self.codec.label, "programs": list(self.codec.requires)}

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction:
        out = self.codec.run(wav, sample_rate)
        return Reconstruction(out.wav, out.sample_rate, bits=8 * out.encoded_bytes)


@dataclass
class SiTokSystem:
    """A SiTok checkpoint: encode to tokens, decode with an explicitly named vocoder.

    ``vocoder=None`` means the checkpoint's own neural vocoder; decoding is seeded per file so
    reruns reproduce the same audio.
    """

    source: str
    vocoder: str | None = None
    steps: int | None = None
    cfg: float | None = None
    codebooks: int | None = None  # a residual-VQ model sends (and decodes from) only its first k codebooks
    temperature: float | None = None
    seed: int = 0
    suffix: str = ""  # the entry's own ``@key=value`` settings, kept in its name

    @property
    def name(self) -> str:
        vocoder = self.vocoder or self.model.vocoder_source
        if vocoder is None:
            raise EvalError(f"{self.source} has no neural vocoder of its own: choose one (e.g. --vocoder griffin-lim)")
        return f"{checkpoint_label(self.source)}+{Path(vocoder).name}{self.suffix}"

    @cached_property
    def model(self) -> Any:
        """The loaded ``SiTok`` (imported here: codec-only runs never import the model code)."""
        from ..models.sitok import SiTok

        return SiTok.from_pretrained(self.source)

    @property
    def sent_codebooks(self) -> int:
        """How many codebooks this system sends: all of the model's, or the first ``codebooks``."""
        total = int(self.model.codebooks)
        if self.codebooks is not None and not 1 <= self.codebooks <= total:
            raise EvalError(f"{self.source}: @codebooks={self.codebooks}, but the model has {total} codebook(s)")
        return total if self.codebooks is None else self.codebooks

    @property
    def bits_per_token(self) -> float:
        return float(self.model.bits_per_token) * self.sent_codebooks / int(self.model.codebooks)

    @property
    def nominal_kbps(self) -> float:
        return float(self.model.token_rate) * self.bits_per_token / 1000.0

    @cached_property
    def checkpoint_sha256(self) -> str:
        """sha256 over the checkpoint's files and its neural vocoder's: retraining either invalidates caches."""
        vocoder = self.vocoder or self.model.vocoder_source
        folders = [self.source] + ([vocoder] if vocoder and vocoder != "griffin-lim" else [])
        return hashlib.sha256("".join(_folder_sha256(f) for f in folders).encode()).hexdigest()

    def fingerprint(self) -> str:
        settings = f"{self.vocoder}|{self.steps}|{self.cfg}|{self.seed}" + (
            f"|k{self.codebooks}" if self.codebooks is not None else "") + (
            f"|t{self.temperature}" if self.temperature is not None else "")
        return f"sitok:{self.checkpoint_sha256}:{settings}"

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            "kind": "sitok", "source": str(self.source), "checkpoint_sha256": self.checkpoint_sha256,
            "vocoder": self.vocoder or self.model.vocoder_source, "steps": self.steps, "cfg": self.cfg,
            "temperature": self.temperature,
            "sample_rate": int(m.sample_rate), "token_rate": float(m.token_rate),
            "codebooks": self.sent_codebooks, "codebook_size": int(m.codebook_size),
            "bits_per_token": self.bits_per_token,
        }

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction:
        m = self.model
        with torch.inference_mode():
            codes = m.encode(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None, None], sample_rate)
            codes = codes[:, :self.sent_codebooks]
            torch.manual_seed(self.seed)
            out = m.decode(codes, steps=self.steps, cfg=self.cfg, vocoder=self.vocoder, temperature=self.temperature)
        # Codebook k's entries counted as k·size + code: usage and entropy are over all codebooks' entries.
        levels = torch.arange(codes.shape[1], device=codes.device)[:, None] * m.codebook_size
        flat = (codes[0] + levels).reshape(-1).cpu().numpy().astype(np.int64)
        return Reconstruction(
            out.reshape(-1).float().cpu().numpy(), int(m.sample_rate),
            bits=round(codes.shape[-1] * self.bits_per_token), codes=flat,
        )


@dataclass
class HoliTokSystem:
    """A HoliTok checkpoint: 48 kHz audio → 25 Hz continuous latents (posterior mean) → audio.

    Continuous latents have no bit cost, so the bitrate columns stay empty for it.
    """

    source: str
    nominal_kbps: float | None = None

    @property
    def name(self) -> str:
        return checkpoint_label(self.source)

    @cached_property
    def model(self) -> Any:
        from ..models.holitok import HoliTok

        return HoliTok.from_pretrained(self.source)

    def fingerprint(self) -> str:
        return f"holitok:{_folder_sha256(self.source)}"

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {"kind": "holitok", "source": str(self.source), "preset": m.config.name,
                "sample_rate": int(m.sample_rate), "latent_rate": float(m.latent_rate), "latent_dim": int(m.latent_dim)}

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction:
        out = self.model.reconstruct(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None, None], sample_rate)
        return Reconstruction(out.reshape(-1).float().cpu().numpy(), int(self.model.sample_rate))


@dataclass
class CopySynthesisSystem:
    """A vocoder alone: the reference's own 24 kHz log-mel, vocoded back (``vocoder:<name>``).

    It measures the vocoder's ceiling: what any SiTok decoding with it could at best sound like.
    ``vocoder`` is ``griffin-lim`` or a Vocos checkpoint (directory or bundled name).
    """

    vocoder: str
    nominal_kbps: float | None = None

    @property
    def name(self) -> str:
        return f"vocoder:{Path(self.vocoder).name or self.vocoder}"

    @cached_property
    def model(self) -> Any:
        from ..mel import MelSpectrogram
        from ..vocoder.griffin_lim import GriffinLim
        from ..vocoder.vocos import Vocos

        front_end = MelSpectrogram()
        if self.vocoder == "griffin-lim":
            synth = GriffinLim(front_end.cfg)
            return front_end, lambda mel: synth(front_end.denormalize(mel))
        vocos = Vocos.from_pretrained(self.vocoder)
        return front_end, vocos.vocode

    def fingerprint(self) -> str:
        return f"copy-synthesis:{self.vocoder if self.vocoder == 'griffin-lim' else _folder_sha256(self.vocoder)}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "copy-synthesis", "vocoder": self.vocoder, "sample_rate": 24000}

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction:
        from ..audio import resample

        front_end, vocode = self.model
        x = torch.from_numpy(np.ascontiguousarray(resample(wav, sample_rate, 24000), dtype=np.float32))[None, None]
        with torch.inference_mode():
            out = vocode(front_end(x))[..., : x.shape[-1]]
        return Reconstruction(out.reshape(-1).float().cpu().numpy(), 24000)


def checkpoint_label(source: str) -> str:
    """A checkpoint's name in tables: its folder, prefixed by the run for ``RUN/checkpoints/step_N``
    (so two runs' step folders never share a name)."""
    path = Path(source)
    if path.parent.name == "checkpoints" and path.parent.parent.name:
        return f"{path.parent.parent.name}-{path.name}"
    return path.name or str(source)


def _folder_sha256(source: str) -> str:
    """sha256 over a checkpoint folder's file names and bytes."""
    from ..bundled import resolve

    digest = hashlib.sha256()
    folder = resolve(source)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _bundled_names() -> list[str]:
    from ..bundled import bundled_names

    return bundled_names("sitok")


def builtin_names() -> list[str]:
    return ["identity", *CODECS]


_SETTINGS = {"steps": int, "cfg": float, "vocoder": str, "codebooks": int, "temperature": float}


def split_settings(spec: str) -> tuple[str, dict[str, Any]]:
    """``"NAME@steps=4@cfg=1"`` → ``("NAME", {"steps": 4, "cfg": 1.0})``; a name without ``@`` has none."""
    source, *parts = spec.split("@")
    settings: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key not in _SETTINGS or not value:
            raise EvalError(f"system {spec!r}: '@{part}' is not one of "
                            f"{', '.join(f'@{k}=...' for k in _SETTINGS)}")
        try:
            settings[key] = _SETTINGS[key](value)
        except ValueError:
            raise EvalError(f"system {spec!r}: @{key} needs a number, got {value!r}") from None
    if not source:
        raise EvalError(f"system {spec!r}: no checkpoint before '@'")
    return source, settings


def get_system(spec: str, *, vocoder: str | None = None, steps: int | None = None,
               cfg: float | None = None) -> System:
    """Resolve one ``--systems`` entry (see the module docstring for the order)."""
    if "@" in spec:
        source, settings = split_settings(spec)
        system = get_system(source, vocoder=vocoder, steps=steps, cfg=cfg)
        if not isinstance(system, SiTokSystem):
            raise EvalError(f"system {spec!r}: @-settings apply to SiTok checkpoints only")
        return replace(system, **settings, suffix=spec[len(source):])
    if spec == "identity":
        return IdentitySystem()
    if spec in CODECS:
        missing = CODECS[spec].missing()
        if missing:
            raise CodecError(f"{spec}: {', '.join(missing)} not installed (see docs/evaluation.md)")
        return CodecSystem(CODECS[spec])
    if spec.startswith("vocoder:"):
        return CopySynthesisSystem(spec.removeprefix("vocoder:"))
    kind = load_checkpoint_kind(spec)
    if kind == "holitok":
        return HoliTokSystem(spec)
    if kind == "sitok" or Path(spec).is_dir():  # a directory of another kind fails with a clear error on load
        return SiTokSystem(spec, vocoder=vocoder, steps=steps, cfg=cfg)
    raise EvalError(
        f"unknown system {spec!r}: use one of {', '.join(builtin_names())}, a checkpoint directory,"
        f" or a bundled model ({', '.join(_bundled_names()) or 'none installed'})"
    )


def get_systems(specs: Sequence[str | System], **sitok_options: Any) -> list[System]:
    """Resolve names (objects implementing :class:`System` pass through); names must be unique."""
    systems = [get_system(spec, **sitok_options) if isinstance(spec, str) else spec for spec in specs]
    names = [s.name for s in systems]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EvalError(f"system listed twice: {', '.join(duplicates)}")
    return systems
