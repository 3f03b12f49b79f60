"""The ``manifest.tsv`` interchange format: ``path  seconds  speaker  transcript``.

A header line comes first; ``path`` is relative to the manifest's own folder (absolute paths are
also accepted); an empty transcript means no ground truth text exists. This is the format of the
real-speech folders in ``shared/data`` and of every training and evaluation set in this project.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import soundfile as sf

from ..errors import DataError
from ..fileio import atomic_path

COLUMNS = ("path", "seconds", "speaker", "transcript")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


@dataclass(frozen=True)
class Utterance:
    """One manifest row with ``path`` resolved to an absolute location."""

    path: Path
    seconds: float
    speaker: str
    transcript: str
    id: str = ""  # the corpus's own name for it (a lhotse cut id); empty for manifest rows

    @property
    def key(self) -> str:
        """A stable identifier used for output file names (the file stem)."""
        return self.path.stem


def read_corpus(source: str | os.PathLike[str]) -> list[Utterance]:
    """What ``train``, ``eval`` and ``tokenize`` accept: a manifest.tsv, a lhotse CutSet
    (``.jsonl.gz``) or a lhotse Shar directory (the ``lhotse`` extra)."""
    from .lhotse_io import is_lhotse, read_cuts

    return read_cuts(source) if is_lhotse(source) else read_manifest(source)


def read_manifest(manifest: str | os.PathLike[str]) -> list[Utterance]:
    """Parse a manifest; paths are resolved against the manifest's folder."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"{manifest}: manifest not found")
    rows: list[Utterance] = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != list(COLUMNS):
            raise DataError(f"{manifest}: expected header '{chr(9).join(COLUMNS)}', got {header!r}")
        for line_no, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            if len(row) < 3:
                raise DataError(f"{manifest}:{line_no}: expected at least 3 tab-separated columns")
            try:
                seconds = float(row[1])
            except ValueError:
                raise DataError(f"{manifest}:{line_no}: 'seconds' is not a number: {row[1]!r}") from None
            path = Path(row[0])
            if not path.is_absolute():
                path = (manifest.parent / path).resolve()
            transcript = row[3].strip() if len(row) > 3 else ""
            rows.append(Utterance(path, seconds, row[2].strip(), transcript))
    if not rows:
        raise DataError(f"{manifest}: manifest has no rows")
    return rows


def write_manifest(manifest: str | os.PathLike[str], rows: Iterable[Utterance]) -> Path:
    """Write rows atomically with paths relative to the manifest's folder."""
    manifest = Path(manifest)
    base = manifest.parent.resolve()
    with atomic_path(manifest) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            handle.write("\t".join(COLUMNS) + "\n")
            for row in rows:
                rel = os.path.relpath(Path(row.path).resolve(), base)
                text = row.transcript.replace("\t", " ").replace("\n", " ")
                handle.write(f"{rel}\t{row.seconds:.3f}\t{row.speaker}\t{text}\n")
    return manifest


def build_manifest(audio_dir: str | os.PathLike[str], output: str | os.PathLike[str]) -> Path:
    """Scan a folder for audio files and write a manifest.

    Transcripts come from a sibling ``<stem>.txt`` or ``<stem>.lab`` file when present. The speaker
    is the name of the audio file's parent folder relative to ``audio_dir`` (or ``unknown`` for
    files directly inside it).
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise DataError(f"{audio_dir}: not a directory")
    rows = []
    for path in sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        try:
            info = sf.info(str(path))
        except Exception:
            raise DataError(f"{path}: cannot read audio header (corrupt or unsupported file)") from None
        transcript = ""
        for ext in (".txt", ".lab"):
            side = path.with_suffix(ext)
            if side.is_file():
                transcript = " ".join(side.read_text(encoding="utf-8").split())
                break
        parent = path.parent.relative_to(audio_dir)
        speaker = parent.parts[0] if parent.parts else "unknown"
        rows.append(Utterance(path.resolve(), info.frames / info.samplerate, speaker, transcript))
    if not rows:
        raise DataError(f"{audio_dir}: no audio files found ({', '.join(AUDIO_SUFFIXES)})")
    return write_manifest(output, rows)
