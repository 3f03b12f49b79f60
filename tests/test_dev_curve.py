"""scripts/dev_curve.py: the training clock a run's dev curve is plotted against, which checkpoints it
judges, and bad input refused before any evaluation."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dev_curve.py"


@pytest.fixture(scope="module")
def curve():
    spec = importlib.util.spec_from_file_location("dev_curve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(root: Path, steps: list[int], threads: int = 2, world_size: int = 1) -> Path:
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps({"kind": "sitok", "train": {"threads": threads}}))
    records = [{"step": s, "loss": 1.0, "sec_per_step": 0.5, "audio_sec_per_sec": 120.0} for s in (100, 200, 300)]
    records.insert(1, {"step": 100, "valid_flow": 0.4})  # validation rows carry no clock
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for step in steps:
        folder = run / "checkpoints" / f"step_{step:07d}"
        folder.mkdir()
        (folder / "trainer.json").write_text(json.dumps({"world_size": world_size}))
        (folder / "config.json").write_text(json.dumps({"kind": "sitok"}))
    if steps:
        (run / "checkpoints" / "latest").write_text(json.dumps({"checkpoint": f"step_{steps[-1]:07d}"}))
    return run


def latest_state(curve, run: Path) -> dict:
    """The trainer state dev_curve reads: the run's latest checkpoint's."""
    return curve.read_trainer_state(curve.find_checkpoint(run))


def test_the_clock_counts_speech_wall_time_and_cpu_hours(curve, tmp_path):
    run = fake_run(tmp_path, [300], threads=2, world_size=3)
    clock = curve.training_clock(run, latest_state(curve, run)["world_size"])
    seen, wall, cpu = clock[300]
    assert wall == pytest.approx(300 * 0.5 / 3600)
    assert seen == pytest.approx(300 * 0.5 * 120.0 / 3600)  # the trainer's rate is already summed over processes
    assert cpu == pytest.approx(wall * 2 * 3)
    assert curve.at_step(clock, 250) == clock[200]


def test_the_base_defaults_to_the_checkpoint_the_run_started_from(curve, tmp_path):
    from speechtok.bundled import BUNDLED_DIR

    run = fake_run(tmp_path, [100, 200])
    assert curve.init_checkpoint(latest_state(curve, run)) is None  # a run from scratch: --base must be given
    state = run / "checkpoints" / "step_0000200" / "trainer.json"
    state.write_text(json.dumps({"init": {"checkpoint": str(BUNDLED_DIR / "sitok-default")}}))
    assert curve.init_checkpoint(latest_state(curve, run)) == "sitok-default"  # a bundled one by its name
    state.write_text(json.dumps({"init": {"checkpoint": "/elsewhere/runs/a/checkpoints/step_0000500"}}))
    assert curve.init_checkpoint(latest_state(curve, run)) == "/elsewhere/runs/a/checkpoints/step_0000500"


def test_checkpoints_are_thinned_but_the_last_always_counts(curve, tmp_path):
    run = fake_run(tmp_path, [500, 1000, 1500, 2000, 2250])
    assert [step for step, _ in curve.checkpoints(run, 1000)] == [1000, 2000, 2250]
    assert [step for step, _ in curve.checkpoints(run, 500)] == [500, 1000, 1500, 2000, 2250]


@pytest.mark.parametrize("case", ["not a run", "no checkpoints", "bad every", "bad base", "no such source",
                                  "not a checkpoint", "broken step", "no base"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    run = fake_run(tmp_path, [] if case == "no checkpoints" else [100])
    target = tmp_path / "elsewhere" if case == "not a run" else run
    extra = {"bad every": ["--every", "0"], "bad base": ["--base", "sitok-nonesuch"], "no base": [],
             "no such source": ["--source", "no-such-corpus"],
             "not a checkpoint": ["--base", str(tmp_path)]}.get(case, [])  # a folder, but no checkpoint
    if case == "broken step":
        (run / "checkpoints" / "step_0000100" / "config.json").unlink()
    if case != "no base" and "--base" not in extra:
        extra += ["--base", "sitok-default"]
    done = subprocess.run([sys.executable, str(SCRIPT), str(target), *extra, "-o", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "report").exists()
