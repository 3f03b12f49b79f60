"""Judges: pretrained models that score speech (ASR, speaker encoder, MOS predictor).

Every judge ships its weights inside a pip package (nothing downloads at run time) and describes
itself with a :class:`JudgeInfo` (name, version, hash of its weights) that is written into every
result, so a number can always be traced to the exact model that produced it.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Iterator

import torch

_threads = 2  # the machines have 2 cores; evaluation workers lower it to 1 each


def judge_threads() -> int:
    """Thread cap for every judge's inference library (torch, onnxruntime, CTranslate2)."""
    return _threads


def set_judge_threads(count: int) -> None:
    """Change the cap for judges loaded from now on (each evaluation worker runs on one thread)."""
    global _threads
    _threads = max(1, int(count))


@dataclass(frozen=True)
class JudgeInfo:
    """Identity of a judge: results computed by different ``(name, version, sha256)`` never mix."""

    name: str
    version: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` torch threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def package_versions(*names: str) -> str:
    """``name==version`` of each installed distribution, joined: the version part of a JudgeInfo."""
    return " ".join(f"{name}=={metadata.version(name)}" for name in names)
