"""``speechtok data pack``: the Opus copy stays under its cap, keeps the speech, continues the same
selection on a rerun, and refuses a folder that would mix packs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechtok.audio import load_audio
from speechtok.cli import main
from speechtok.data.engine_config import source_of
from speechtok.data.manifest import read_manifest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "manifest.tsv"
    assert main(["manifest", str(DATA), "-o", str(path)]) == 0
    return path


def pack_files(out: Path) -> list[Path]:
    return sorted((out / "audio").rglob("*.ogg"))


def test_pack_keeps_speech_under_the_cap(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    assert main(["data", "pack", str(manifest), "-o", str(out), "--max-mb", "1"]) == 0
    rows = read_manifest(out / "manifest.tsv")
    originals = {r.path.stem: r for r in read_manifest(manifest)}
    assert len(rows) == len(originals)  # everything fits in 1 MiB
    assert sum(p.stat().st_size for p in pack_files(out)) <= 2**20
    for row in rows:
        source = originals[row.path.stem.split("-", 1)[1]]
        assert source_of(row.path) == source_of(source.path)  # a data mix (train.source_repeats) still applies
        copy, rate = load_audio(row.path)
        original, _ = load_audio(source.path, rate)
        assert abs(len(copy) - len(original)) <= rate * 0.03  # Opus framing, not lost speech
        assert np.corrcoef(envelope(copy, rate), envelope(original, rate))[0, 1] > 0.9  # same speech, in time


def envelope(wav: np.ndarray, rate: int, seconds: float = 0.01) -> np.ndarray:
    """Mean magnitude per 10 ms over the first 0.6 s (every test clip is longer)."""
    hop = int(rate * seconds)
    return np.abs(wav[: 60 * hop]).reshape(60, hop).mean(1)


def test_smaller_cap_is_a_prefix_and_a_larger_cap_continues(manifest: Path, tmp_path: Path) -> None:
    small, full = tmp_path / "small", tmp_path / "full"
    assert main(["data", "pack", str(manifest), "-o", str(full), "--max-mb", "1"]) == 0
    assert main(["data", "pack", str(manifest), "-o", str(small), "--max-mb", "0.03"]) == 0
    kept = [r.path.name for r in read_manifest(small / "manifest.tsv")]
    everything = [r.path.name for r in read_manifest(full / "manifest.tsv")]
    assert 0 < len(kept) < len(everything) and everything[: len(kept)] == kept
    assert sum(p.stat().st_size for p in pack_files(small)) <= 0.03 * 2**20
    written = {p.name: p.stat().st_mtime_ns for p in pack_files(small)}
    assert main(["data", "pack", str(manifest), "-o", str(small), "--max-mb", "1"]) == 0  # same selection, grown
    assert [r.path.name for r in read_manifest(small / "manifest.tsv")] == everything
    assert all(p.stat().st_mtime_ns == written[p.name] for p in pack_files(small) if p.name in written)


def test_workers_make_the_same_pack_and_leave_nothing_past_the_cap(manifest: Path, tmp_path: Path) -> None:
    one, three = tmp_path / "one", tmp_path / "three"
    assert main(["data", "pack", str(manifest), "-o", str(one), "--max-mb", "0.03"]) == 0
    assert main(["data", "pack", str(manifest), "-o", str(three), "--max-mb", "0.03", "--workers", "3"]) == 0
    assert (one / "manifest.tsv").read_text().replace(str(one), "") == (three / "manifest.tsv").read_text().replace(str(three), "")
    assert [p.name for p in pack_files(one)] == [p.name for p in pack_files(three)]  # the look-ahead was removed
    # the same audio (the Ogg stream serial numbers are random, so not the same bytes)
    assert all(np.array_equal(load_audio(a)[0], load_audio(b)[0]) for a, b in zip(pack_files(one), pack_files(three)))


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--kbps", "3"], "--kbps must be between 6 and 256"),
    (["--max-rate", "44100"], "--max-rate must be one of"),
    (["--max-mb", "0"], "--max-mb must be positive"),
])
def test_bad_settings_are_one_line(manifest: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main(["data", "pack", str(manifest), "-o", str(tmp_path / "p"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_refuses_other_settings_and_foreign_folders(manifest: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pack"
    assert main(["data", "pack", str(manifest), "-o", str(out), "--max-mb", "0.03"]) == 0
    before = sorted(p.name for p in pack_files(out))
    assert main(["data", "pack", str(manifest), "-o", str(out), "--kbps", "24"]) == 2
    assert "other kbps" in capsys.readouterr().err
    assert sorted(p.name for p in pack_files(out)) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["data", "pack", str(manifest), "-o", str(foreign)]) == 2
    assert "is not a pack" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_refuses_a_pack_of_the_old_layout(manifest: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pack"
    assert main(["data", "pack", str(manifest), "-o", str(out), "--max-mb", "0.03"]) == 0
    settings = out / "pack.json"
    old = json.loads(settings.read_text())
    del old["layout"]  # written before packs kept their sources (audio/NNN/)
    settings.write_text(json.dumps(old))
    assert main(["data", "pack", str(manifest), "-o", str(out), "--max-mb", "0.03"]) == 2
    assert "other layout" in capsys.readouterr().err
