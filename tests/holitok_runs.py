"""Shared by the HoliTok decoder-head tests: a short stage-I run of ``holitok-tiny`` through the CLI."""
from __future__ import annotations

from pathlib import Path

from speechtok.cli import main
from speechtok.train.plots import read_metrics


def train_stage_one(tmp_path: Path, manifest: Path, yaml: str) -> tuple[Path, list[dict]]:
    """Train with the ``yaml`` overrides on ``manifest`` (also the validation set); returns the run
    folder and its logged metrics."""
    config = tmp_path / "stage1.yaml"
    config.write_text(yaml)
    run = tmp_path / "run"
    assert main(["train", "--preset", "holitok-tiny", "--stage", "1", "--data", str(manifest), "--valid",
                 str(manifest), "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    return run, read_metrics(run / "metrics.jsonl")
