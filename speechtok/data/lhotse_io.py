"""Lhotse corpora as input: a CutSet manifest (``.jsonl.gz`` / ``.jsonl``) or a Shar directory.

Each cut becomes an :class:`~speechtok.data.manifest.Utterance` (speaker and transcript from its
supervisions). A cut that is a whole single-file recording is used in place; any other cut (a
segment of a longer recording, several channels, audio inside Shar tar files) is written once as
FLAC into a cache folder (``$XDG_CACHE_HOME/speechtok/lhotse/<hash of the input>``, or
``cache_dir``) and reused on later runs, so every consumer reads plain files.
Needs the ``lhotse`` extra.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..errors import DataError
from ..extras import optional_import
from .manifest import Utterance

CUTSET_SUFFIXES = (".jsonl.gz", ".jsonl")


def is_lhotse(path: str | os.PathLike[str]) -> bool:
    """A CutSet file, or a directory of Shar shards (``cuts.000000.jsonl.gz``)."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("cuts.*.jsonl*"))
    return path.name.endswith(CUTSET_SUFFIXES)


def read_cuts(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> list[Utterance]:
    lhotse = optional_import("lhotse", "lhotse", "reading a lhotse corpus")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such lhotse manifest or Shar directory")
    try:
        cuts = lhotse.CutSet.from_shar(in_dir=path) if path.is_dir() else lhotse.CutSet.from_file(path)
        cuts = list(cuts)
    except Exception as exc:  # lhotse raises many types on malformed input
        raise DataError(f"{path}: not a readable lhotse CutSet ({str(exc).splitlines()[0][:120]})") from None
    cache = Path(cache_dir) if cache_dir else _default_cache(path)
    utterances = []
    for cut in cuts:
        text = " ".join(s.text.strip() for s in cut.supervisions if s.text and s.text.strip())
        speaker = next((s.speaker for s in cut.supervisions if s.speaker), "") or ""
        utterances.append(Utterance(_audio_file(cut, cache), float(cut.duration), speaker, text, id=cut.id))
    if not utterances:
        raise DataError(f"{path}: the CutSet holds no cuts")
    return utterances


def _audio_file(cut, cache: Path) -> Path:
    """The cut's own file when it is a whole recording of one file, else a cached FLAC of its audio."""
    recording = getattr(cut, "recording", None)
    sources = getattr(recording, "sources", None) or []
    if (len(sources) == 1 and sources[0].type == "file" and abs(cut.start) < 1e-6
            and abs(cut.duration - recording.duration) < 1e-3 and Path(sources[0].source).is_file()):
        return Path(sources[0].source).resolve()
    target = cache / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', cut.id)}.flac"
    if not target.is_file():
        from ..audio import save_audio

        audio = cut.load_audio()  # [channels, samples]
        save_audio(target, audio.mean(axis=0), int(cut.sampling_rate))
    return target


def _default_cache(path: Path) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return root / "speechtok" / "lhotse" / digest
