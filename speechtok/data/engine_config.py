"""The data engine's settings: which sources, how many hours of each, the seed and the gate.

Kept apart from the engine so the CLI can check a config (unknown key, bad value, a resume with
different settings) before anything heavy is imported. The order of ``sources`` is the build order:
cheap, high-value sources first, the slow many-voice Kokoro blends last.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import from_dict, load_yaml, override, to_dict
from ..errors import ConfigError, DataError
from ..fileio import write_json_atomic

SourceKind = Literal["real", "kokoro", "hibari", "piper", "flite", "espeak"]
REPO = Path(__file__).resolve().parents[2]
#: The settings a corpus folder was built with, beside its journal.
SAVED_CONFIG = "config.json"


def corpus_path(source: str, index: int) -> str:
    """Where a corpus keeps utterance ``index`` of ``source``, relative to its folder: one folder per
    source, split in shards of 1,000 files so that no folder grows huge."""
    return f"audio/{source}/{index // 1000:03d}"


def source_of(path: Path) -> str:
    """The source an audio file comes from: the data-engine source for a corpus file
    (``audio/SOURCE/NNN/KEY.flac``), otherwise the name of its folder (a dataset folder)."""
    shard, folder = path.parent, path.parent.parent
    if folder.parent.name == "audio" and shard.name.isdigit():
        return folder.name
    return shard.name


@dataclass
class SourceConfig:
    """One source of the corpus.

    ``hours`` is the speech kept after the gate (for ``real`` without augmentation: every file, so
    it is only a cap). ``voices`` is how many Kokoro voices to draw. ``augment`` is the number of
    augmentation pseudo-speakers per base voice; 0 keeps the voices as they are. ``min_seconds``
    leaves shorter real files out of augmentation (isolated digits cost a Moonshine call each and
    mostly fail the gate once augmented).
    """

    name: str
    kind: SourceKind
    hours: float = 1.0
    voices: int = 0
    augment: int = 0
    min_seconds: float = 0.0


@dataclass
class EngineConfig:
    """The whole build. Empty paths mean the repository's defaults (``data/splits/*.tsv``,
    ``../shared/data``)."""

    seed: int = 0
    gate_wer: float = 0.2  # drop a synthetic or augmented utterance whose Moonshine WER is above this
    shared_data: str = ""
    train_manifest: str = ""
    dev_manifest: str = ""
    texts: str = "texts/ljspeech_sentences.tsv"  # relative to shared_data
    real_folders: list[str] = field(default_factory=lambda: ["dctts_lj_reader_44k"])  # beyond the train split
    sources: list[SourceConfig] = field(default_factory=list)

    def shared_path(self) -> Path:
        return Path(self.shared_data) if self.shared_data else REPO.parent / "shared" / "data"

    def train_path(self) -> Path:
        return Path(self.train_manifest) if self.train_manifest else REPO / "data" / "splits" / "train.tsv"

    def dev_path(self) -> Path:
        return Path(self.dev_manifest) if self.dev_manifest else REPO / "data" / "splits" / "dev.tsv"

    def texts_path(self) -> Path:
        return self.shared_path() / self.texts


PRESETS: dict[str, EngineConfig] = {
    # The training corpus of issue 13: about 26 h and well over 60 voices, cheapest sources first.
    "corpus-v1": EngineConfig(sources=[
        SourceConfig("real", "real", hours=3.0),
        SourceConfig("real_aug", "real", hours=2.0, augment=6, min_seconds=1.0),
        SourceConfig("hibari", "hibari", hours=1.0),
        SourceConfig("hibari_aug", "hibari", hours=3.0, augment=16),
        SourceConfig("piper", "piper", hours=1.0),
        SourceConfig("piper_aug", "piper", hours=1.5, augment=12),
        SourceConfig("flite", "flite", hours=1.0),
        SourceConfig("flite_aug", "flite", hours=1.0, augment=6),
        SourceConfig("espeak", "espeak", hours=0.5),
        SourceConfig("kokoro", "kokoro", hours=12.0, voices=80),
    ]),
    # Seconds of speech from the fast voices: for tests and a first look at a new machine.
    "smoke": EngineConfig(sources=[
        SourceConfig("hibari", "hibari", hours=0.003),
        SourceConfig("flite_aug", "flite", hours=0.003, augment=2),
        SourceConfig("espeak", "espeak", hours=0.002),
    ]),
}


def get_preset(name: str) -> EngineConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown data-engine preset {name!r} (available: {', '.join(PRESETS)})")
    return copy.deepcopy(PRESETS[name])


def load_config(preset: str, yaml_path: str | None = None, hours: list[str] = (), seed: int | None = None) -> EngineConfig:
    """A preset, then a YAML override (``preset:`` inside the YAML picks the base), then ``NAME=H`` hours."""
    changes: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    config = get_preset(str(changes.pop("preset", preset)))
    if "sources" in changes:  # a list replaces the preset's list; give each item its defaults
        changes["sources"] = [to_dict(from_dict(SourceConfig, s, f"sources[{i}]")) for i, s in enumerate(changes["sources"])]
    config = override(config, changes)
    if seed is not None:
        config.seed = seed
    by_name = {s.name: s for s in config.sources}
    for item in hours:
        name, _, value = item.partition("=")
        if name not in by_name:
            raise ConfigError(f"--hours {item}: no source named {name!r} (sources: {', '.join(by_name)})")
        try:
            by_name[name].hours = float(value)
        except ValueError:
            raise ConfigError(f"--hours {item}: expected NAME=HOURS with a number") from None
    validate(config)
    return config


def validate(config: EngineConfig) -> None:
    """Refuse a config that cannot build a corpus, before any work."""
    names = [s.name for s in config.sources]
    if not names:
        raise ConfigError("the data-engine config has no sources")
    if len(set(names)) != len(names):
        raise ConfigError(f"source names must be unique, got {names}")
    if not 0 <= config.gate_wer <= 1:
        raise ConfigError(f"gate_wer must be within 0..1, got {config.gate_wer}")
    for s in config.sources:
        if not s.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"source name {s.name!r}: use letters, digits, '_' and '-' only")
        if min(s.hours, s.augment, s.voices, s.min_seconds) < 0:
            raise ConfigError(f"source {s.name}: hours, voices, augment and min_seconds must not be negative")
        if s.kind == "kokoro" and s.voices < 1:
            raise ConfigError(f"source {s.name}: a kokoro source needs voices >= 1")
    for path, what in ((config.train_path(), "train manifest"), (config.dev_path(), "dev manifest"),
                       (config.texts_path(), "sentence file")):
        if not path.is_file():
            raise DataError(f"{path}: {what} not found")


def plan_identity(config: EngineConfig) -> dict[str, Any]:
    """What fixes every file's content: everything except hours (which only say how far to go)."""
    data = to_dict(config)
    data["sources"] = {s["name"]: {k: v for k, v in s.items() if k != "hours"} for s in data["sources"]}
    return data


def check_resume(saved: EngineConfig, config: EngineConfig) -> None:
    """A rerun may extend hours or add sources, but may not change what existing files mean."""
    old, new = plan_identity(saved), plan_identity(config)
    changed = [k for k in old if k != "sources" and old[k] != new[k]]
    changed += [f"sources.{n}" for n, s in old["sources"].items() if n in new["sources"] and new["sources"][n] != s]
    if changed:
        raise DataError(f"the output folder was built with different settings ({', '.join(changed)});"
                        " use the same config to resume, or a new --out")


def saved_config(out: str | Path) -> EngineConfig | None:
    """The config a corpus folder was built with, or None for a new folder."""
    path = Path(out) / SAVED_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path}: not valid JSON; restore it or start a new --out") from None
    return from_dict(EngineConfig, data, str(path))


def prepare_output(out: str | Path, config: EngineConfig) -> None:
    """Create the corpus folder, or check that an existing one was built with the same settings."""
    saved = saved_config(out)
    if saved is not None:
        check_resume(saved, config)
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(out) / SAVED_CONFIG, to_dict(config))
