"""Optional dependencies: imported where a feature needs them, with a one-line hint when missing.

The base install (``pip install speechtok``) covers inference; training plots, evaluation judges and
the data engine live in extras (``plot``, ``eval``, ``data``). A missing extra is a user error that
says which one to install, never a ``ModuleNotFoundError`` traceback.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import SpeechtokError


class MissingExtraError(SpeechtokError):
    """An optional feature was used without the extra that provides its dependencies."""


def optional_import(module: str, extra: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or a :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise MissingExtraError(
            f"{purpose} needs '{missing}', which is not installed: pip install 'speechtok[{extra}]'") from None
