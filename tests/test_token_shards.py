"""Parquet token shards: the same codes as .npy files, readable with pyarrow, resumable without loss
or duplicates."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from speechtok.assets import SAMPLE_SPEECH
from speechtok.cli import main

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from speechtok.models.sitok import SiTok

    torch.manual_seed(0)
    return SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture()
def corpus(tmp_path):
    from speechtok.data.manifest import Utterance, write_manifest

    wav, rate = sf.read(SAMPLE_SPEECH, dtype="float32")
    rows = []
    for i in range(7):
        path = tmp_path / "audio" / f"spk{i % 2}" / f"u{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav[: rate // 2 + i * rate // 3], rate)
        rows.append(Utterance(path, 0.5 + i / 3, f"spk{i % 2}", f"text {i}"))
    return write_manifest(tmp_path / "m.tsv", rows)


def _read(folder):
    table = pq.read_table(sorted(folder.glob("shard-*.parquet")))
    return {row["id"]: row for row in table.to_pylist()}


def test_parquet_shards_hold_the_codes_of_npy_files(tmp_path, tiny, corpus):
    npy, parquet = tmp_path / "npy", tmp_path / "parquet"
    assert main(["tokenize", str(corpus), "-o", str(npy), "--checkpoint", str(tiny), "--batch-seconds", "4"]) == 0
    assert main(["tokenize", str(corpus), "-o", str(parquet), "--checkpoint", str(tiny), "--format", "parquet",
                 "--shard-mb", "0.0005", "--batch-seconds", "4"]) == 0
    shards = sorted(parquet.glob("shard-*.parquet"))
    assert len(shards) > 1  # size-bounded
    rows = _read(parquet)
    assert len(rows) == 7
    for item, row in rows.items():
        assert np.array_equal(np.asarray(row["codes"], dtype=np.int32), np.load(npy / f"{item}.npy"))
        assert row["num_tokens"] == len(row["codes"][0]) and row["sample_rate"] == 16000
        assert row["speaker"] == item[:4] and row["transcript"] == f"text {item[-1]}"
    meta = json.loads(pq.read_schema(shards[0]).metadata[b"speechtok"])
    assert meta["token_rate"] == 12.5 and len(meta["weights_sha256"]) == 64
    index = json.loads((parquet / "index.json").read_text())
    assert index["rows"] == 7 and [s["file"] for s in index["shards"]] == [p.name for p in shards]


def test_an_interrupted_parquet_run_continues_without_loss_or_duplicates(tmp_path, tiny, corpus, monkeypatch):
    from speechtok.models.sitok import SiTok

    out = tmp_path / "parquet"
    argv = ["tokenize", str(corpus), "-o", str(out), "--checkpoint", str(tiny), "--format", "parquet",
            "--shard-mb", "0.0005", "--batch-seconds", "2"]
    encode, calls = SiTok.encode, []

    def dies_on_the_third_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the run were stopped here
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(SiTok, "encode", dies_on_the_third_batch)
    assert main(argv) == 130
    first = _read(out)
    assert 0 < len(first) < 7
    monkeypatch.setattr(SiTok, "encode", encode)
    assert main(argv) == 0
    ids = pq.read_table(sorted(out.glob("shard-*.parquet")), columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 7
    reference = tmp_path / "reference"
    assert main(argv[:3] + [str(reference)] + argv[4:]) == 0
    assert {k: r["codes"] for k, r in _read(out).items()} == {k: r["codes"] for k, r in _read(reference).items()}


def _codes(folder) -> dict[str, list]:
    return {k: r["codes"] for k, r in _read(folder).items()}


def test_torchrun_ranks_give_the_codes_of_one_process(tmp_path, tiny, corpus):
    """Two gloo processes under torchrun split the corpus; together they write exactly the codes of a
    single-process run, each item once, and one index."""
    import os
    import subprocess
    import sys

    single, ranks = tmp_path / "single", tmp_path / "ranks"
    common = [str(corpus), "--checkpoint", str(tiny), "--format", "parquet", "--batch-seconds", "4"]
    assert main(["tokenize", *common[:1], "-o", str(single), *common[1:]]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29531", "-m", "speechtok.cli", "tokenize", common[0], "-o", str(ranks),
                           *common[1:], "--engine", "torchrun"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(p.name for p in ranks.glob("shard-*.parquet"))
    assert {n[:13] for n in names} == {"shard-rank000", "shard-rank001"}
    assert _codes(ranks) == _codes(single)
    assert json.loads((ranks / "index.json").read_text())["rows"] == 7


@pytest.fixture()
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    yield
    ray.shutdown()  # the workers would hold memory and cores through the rest of the suite


def test_ray_workers_give_the_codes_of_one_process_and_resume_by_shard(tmp_path, tiny, corpus, local_ray):
    single, out = tmp_path / "single", tmp_path / "ray"
    common = ["--checkpoint", str(tiny), "--format", "parquet", "--batch-seconds", "4"]
    assert main(["tokenize", str(corpus), "-o", str(single), *common]) == 0
    ray_args = ["tokenize", str(corpus), "-o", str(out), *common, "--engine", "ray", "--workers", "2",
                "--items-per-shard", "3"]
    assert main(ray_args) == 0
    assert sorted(p.name[:14] for p in out.glob("shard-*.parquet")) == ["shard-ray00000", "shard-ray00001",
                                                                        "shard-ray00002"]
    assert _codes(out) == _codes(single)
    # A run killed after some shards: remove one shard; the rerun redoes exactly that one.
    victim = sorted(out.glob("shard-ray00001-*.parquet"))[0]
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet") if p != victim}
    victim.unlink()
    assert main(ray_args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet") if p.name in kept} == kept
    ids = pq.read_table(sorted(out.glob("shard-*.parquet")), columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 7 and _codes(out) == _codes(single)
