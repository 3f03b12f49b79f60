"""Lhotse corpora in: a CutSet manifest and a Shar directory made from the test speech feed
tokenize, train and eval like a manifest.tsv."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechtok.cli import main
from speechtok.data.manifest import read_corpus, read_manifest

lhotse = pytest.importorskip("lhotse")
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture()
def cutset(tmp_path):
    """Whole-file cuts of the 7 transcribed test clips, plus one 0.5 s segment of a longer one."""
    cuts = []
    for row in read_manifest(TEST_DATA / "train.tsv"):
        recording = lhotse.Recording.from_file(row.path, recording_id=row.path.stem)
        supervision = lhotse.SupervisionSegment(id=row.path.stem, recording_id=recording.id, start=0.0,
                                                duration=recording.duration, text=row.transcript, speaker=row.speaker)
        cuts.append(lhotse.MonoCut(id=row.path.stem, start=0.0, duration=recording.duration, channel=0,
                                   recording=recording, supervisions=[supervision]))
    long = lhotse.Recording.from_file(TEST_DATA / "84-121123-0004.flac", recording_id="long")
    cuts.append(lhotse.MonoCut(id="segment", start=1.0, duration=0.5, channel=0, recording=long, supervisions=[]))
    path = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(path)
    return path


def test_a_cutset_reads_like_a_manifest(cutset, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rows = read_corpus(cutset)
    manifest = read_manifest(TEST_DATA / "train.tsv")
    assert [(r.path, r.speaker, r.transcript) for r in rows[:7]] == [(m.path, m.speaker, m.transcript) for m in manifest]
    segment = rows[7]
    assert segment.path.parent.parent.parent == tmp_path / "cache" / "speechtok" and segment.seconds == 0.5
    import soundfile as sf

    info = sf.info(segment.path)
    assert info.samplerate == 16000 and info.frames == 8000
    assert read_corpus(cutset)[7].path == segment.path  # cached, reused


def test_tokenize_train_and_eval_take_a_cutset_and_shar(cutset, tmp_path, monkeypatch):
    import torch

    from speechtok.models.sitok import SiTok

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    torch.manual_seed(0)
    tiny = SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path / "tiny")
    assert main(["tokenize", str(cutset), "-o", str(tmp_path / "from-cuts"), "--checkpoint", str(tiny)]) == 0
    assert main(["tokenize", str(TEST_DATA / "train.tsv"), "-o", str(tmp_path / "from-tsv"), "--checkpoint",
                 str(tiny)]) == 0
    for name in ("allison-added", "84-121123-0000"):
        assert np.array_equal(np.load(tmp_path / "from-cuts" / f"{name}.npy"),
                              np.load(tmp_path / "from-tsv" / f"{name}.npy"))
    shar = tmp_path / "shar"
    shar.mkdir()
    lhotse.CutSet.from_file(cutset).to_shar(shar, fields={"recording": "flac"}, shard_size=4)
    assert main(["tokenize", str(shar), "-o", str(tmp_path / "from-shar"), "--checkpoint", str(tiny)]) == 0
    assert sorted(p.stem for p in (tmp_path / "from-shar").glob("*.npy")) == sorted(r.id for r in read_corpus(cutset))
    config = tmp_path / "o.yaml"
    config.write_text("train:\n  steps: 2\n  warmup_steps: 1\n  batch_seconds: 4.0\n  max_seconds: 2.0\n"
                      "  log_every: 1\n  checkpoint_every: 2\n")
    assert main(["train", "--preset", "sitok-tiny", "--data", str(cutset), "--config", str(config),
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) >= 2
    assert main(["eval", "--systems", "identity", "--data", str(shar), "--metrics", "mel", "-o",
                 str(tmp_path / "report"), "--no-html", "--workers", "1", "--quiet"]) == 0
    results = [json.loads(line) for line in (tmp_path / "report" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 8
