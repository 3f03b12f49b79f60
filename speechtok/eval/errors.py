"""Evaluation errors: one-line, user-fixable problems (a missing codec program, a bad judge, a bad system)."""
from __future__ import annotations

from ..errors import SpeechtokError


class EvalError(SpeechtokError):
    """An evaluation that cannot run: unknown system or metric, unusable report folder."""


class JudgeError(EvalError):
    """A judge whose weights or packages are missing, corrupt or do not match the pinned hash."""


class CodecError(EvalError):
    """A codec program that is missing or failed on a file."""
