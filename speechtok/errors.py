"""Error types whose messages are meant for people, not for debugging torch internals.

Every user-facing failure (bad audio, bad checkpoint, bad config) raises a subclass of
:class:`SpeechtokError` with a one-line message that names the file or argument and the problem.
The CLI prints that line and exits non-zero instead of showing a stack trace.
"""
from __future__ import annotations


class SpeechtokError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class AudioError(SpeechtokError):
    """Audio that cannot be read, is empty, non-finite, too long or has the wrong layout."""


class CheckpointError(SpeechtokError):
    """A checkpoint that is missing, corrupt, tampered with or built for another architecture."""


class ConfigError(SpeechtokError):
    """An unknown preset, an unknown config key or a value of the wrong type."""


class DataError(SpeechtokError):
    """A manifest or corpus that cannot be used for training or tokenizing."""
