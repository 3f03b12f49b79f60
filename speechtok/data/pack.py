"""``speechtok data pack``: a size-capped Ogg/Opus copy of a corpus, for carrying it somewhere.

A GPU lent for minutes takes at most ~64 MiB per call, and a 20 h FLAC corpus is ~1.5 GB. Opus at
~12 kbit/s keeps the words and the voice of speech (not bit-identical, so a model trained on it sees
a mild codec) and fits ~10 h into 60 MiB. Files are chosen by a seeded shuffle, so every source and
voice is represented in proportion; the pack is resumable (each file is written atomically and a
rerun with the same settings skips what exists) and its manifest is written last.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..audio import load_audio, resample
from ..errors import DataError
from ..fileio import LOCK_FILE, atomic_path, write_json_atomic
from .engine_config import source_of
from .manifest import Utterance, write_manifest
from .threads import read_ahead

#: Opus codes these rates natively; anything else is resampled up to the next one (capped by max_rate).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
SETTINGS_FILE = "pack.json"
#: 2: files under audio/SOURCE/NNN/ (the data engine's layout); 1 (no "layout" in pack.json): audio/NNN/
LAYOUT = 2


@dataclass(frozen=True)
class PackSettings:
    kbps: float = 12.0
    max_mb: float = 60.0
    max_rate: int = 24000
    seed: int = 0

    def check(self) -> None:
        if not 6 <= self.kbps <= 256:
            raise DataError(f"--kbps must be between 6 and 256, got {self.kbps}")
        if self.max_mb <= 0:
            raise DataError(f"--max-mb must be positive, got {self.max_mb}")
        if self.max_rate not in OPUS_RATES:
            raise DataError(f"--max-rate must be one of {', '.join(map(str, OPUS_RATES))}, got {self.max_rate}")

    @property
    def compression_level(self) -> float:
        """libsndfile maps its 0..1 compression level linearly onto Opus bitrates of ~256..6 kbit/s
        (measured with libsndfile 1.2.2: level 0.98 → 12.9 kbit/s, 1.0 → 8 kbit/s incl. Ogg framing)."""
        return min(1.0, max(0.0, (256.0 - self.kbps) / 250.0))


def opus_rate(rate: int, max_rate: int) -> int:
    return min(next((r for r in OPUS_RATES if r >= rate), OPUS_RATES[-1]), max_rate)


def rows_digest(rows: list[Utterance]) -> str:
    """What the pack was made from: a resumed pack must come from the very same rows."""
    digest = hashlib.sha256()
    for r in rows:
        digest.update(f"{r.path}\t{r.seconds}\t{r.speaker}\t{r.transcript}\n".encode())
    return digest.hexdigest()


def prepare_pack_dir(out: Path, settings: PackSettings, rows: list[Utterance]) -> None:
    """Create ``out`` or accept a pack of the same rows and settings (``max_mb`` may change: a larger cap
    continues the same selection); refuse anything else before any work."""
    wanted = {**asdict(settings), "rows_sha256": rows_digest(rows), "layout": LAYOUT}
    saved = out / SETTINGS_FILE
    if saved.is_file():
        previous = json.loads(saved.read_text())
        changed = sorted(k for k in wanted if k != "max_mb" and previous.get(k) != wanted[k])  # the cap may grow
        if changed:
            raise DataError(f"{out}: holds a pack made with other {', '.join(changed)}; use a new folder or the same input and settings")
    elif out.exists() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise DataError(f"{out}: folder exists and is not a pack; give an empty or new folder")
    write_json_atomic(saved, wanted)


def pack(rows: list[Utterance], out: str | Path, settings: PackSettings,
         progress: Callable[..., Any] | None = None, workers: int = 1) -> dict[str, float]:
    """Write Opus copies of a seeded selection of ``rows`` into ``out`` until ``max_mb`` is reached.

    ``workers`` threads encode a few files ahead of the one the cap is checked on (decoding, resampling
    and encoding release the GIL); the pack is the same for any number of workers, and files encoded
    past the cap are removed. Returns the files, hours, speakers and MiB written (the rest of ``rows``
    is left out)."""
    import soundfile as sf

    out = Path(out)
    order = list(range(len(rows)))
    random.Random(settings.seed).shuffle(order)

    def target(position: int) -> Path:  # the corpus layout, audio/SOURCE/NNN/, so that a pack keeps its sources
        path = rows[order[position]].path
        return out / "audio" / source_of(path) / f"{position // 1000:03d}" / f"{position:06d}-{path.stem}.ogg"

    encoded: set[int] = set()  # positions read ahead: those past the cap are removed at the end

    def encode(position: int) -> int:
        encoded.add(position)
        path = target(position)
        if not path.is_file():
            wav, rate = load_audio(rows[order[position]].path)
            rate_out = opus_rate(rate, settings.max_rate)
            with atomic_path(path) as tmp:
                sf.write(str(tmp), resample(wav, rate, rate_out), rate_out, format="OGG", subtype="OPUS",
                         compression_level=settings.compression_level)
        return path.stat().st_size

    budget = settings.max_mb * 2**20
    used, kept = 0, []
    bar = progress(total=len(rows), unit="file", desc="pack") if progress else None
    sizes = read_ahead(encode, range(len(order)), workers)
    for position, size in enumerate(sizes):
        if used + size > budget:
            break  # over the cap: this one and everything after it stay out
        used += size
        row = rows[order[position]]
        kept.append(Utterance(target(position), row.seconds, row.speaker, row.transcript))
        if bar is not None:
            bar.update(1)
    sizes.close()  # waits for the files in flight, which are past the cap
    for position in encoded - set(range(len(kept))):
        target(position).unlink(missing_ok=True)
    if bar is not None:
        bar.close()
    if not kept:
        raise DataError(f"{out}: not even one file fits in --max-mb {settings.max_mb}")
    write_manifest(out / "manifest.tsv", kept)
    seconds = sum(r.seconds for r in kept)
    return {"files": len(kept), "of": len(rows), "hours": seconds / 3600, "speakers": len({r.speaker for r in kept}),
            "mib": used / 2**20, "kbps": used * 8 / 1000 / max(seconds, 1e-9)}
