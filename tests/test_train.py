from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechtok.cli import main


@pytest.fixture()
def overrides(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("train:\n  steps: 4\n  lr: 0.001\n  warmup_steps: 1\n  batch_seconds: 6.0\n  max_seconds: 3.0\n"
                    "  log_every: 1\n  checkpoint_every: 2\n  keep_checkpoints: 5\n  valid_every: 2\n")
    return path


def test_resume_continues_the_same_run_exactly(tmp_path, real_manifest, overrides):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--preset", "sitok-tiny", "--data", str(real_manifest), "--config", str(overrides), "--no-progress"]
    assert main(["train", *common, "--valid", str(real_manifest), "--out", str(a)]) == 0
    assert main(["train", "--resume", str(a / "checkpoints" / "step_0000002"), "--out", str(b), "--no-progress"]) == 0
    wa = load_file(str(a / "checkpoints" / "step_0000004" / "model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "step_0000004" / "model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)  # bit-identical, EMA codebook included
    loss = lambda run: [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]  # noqa: E731
    assert loss(b) == loss(a)[2:]
    records = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    assert {"flow", "ctc", "vq", "codebook_usage", "perplexity", "lr", "grad_norm"} <= set(records[0])
    # where a step's time goes: assembling the batch (data) or the step itself
    assert all(0 <= r["data_sec_per_step"] < r["sec_per_step"] for r in records if "sec_per_step" in r)
    assert any("valid_flow" in r for r in records)
    assert (a / "metrics.png").stat().st_size > 10_000


def test_config_errors_are_one_line(tmp_path, real_manifest, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 10\n")
    assert main(["train", "--preset", "sitok-tiny", "--data", str(real_manifest), "--config", str(bad),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "stpes" in err and len(err.splitlines()) == 1
    assert main(["train", "--preset", "sitok-nope", "--data", str(real_manifest), "--out", str(tmp_path / "r")]) == 2
    assert "unknown preset 'sitok-nope'" in capsys.readouterr().err
    assert main(["train", "--preset", "sitok-tiny"]) == 2
    assert "--data" in capsys.readouterr().err
    bad.write_text("train:\n  min_seconds: 5\n")
    assert main(["train", "--preset", "sitok-tiny", "--data", str(real_manifest), "--config", str(bad),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "min_seconds = 5 s" in err and len(err.splitlines()) == 1
    for text, message in (("modle:\n  dim: 8\n", "unknown section(s) ['modle']"),
                          ("objective:\n  stage: 1\n", "vocos-tiny: this model family has no 'objective' settings")):
        bad.write_text(text)
        assert main(["train", "--preset", "vocos-tiny", "--data", str(real_manifest), "--config", str(bad),
                     "--out", str(tmp_path / "r")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_lr_schedule_warms_up_then_decays():
    from speechtok.train.config import TrainConfig
    from speechtok.train.trainer import lr_factor

    cfg = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.55) and lr_factor(100, cfg) == pytest.approx(0.1)


def test_logged_metrics_average_only_the_steps_that_reported_them():
    """An ASR loss present in 1 of 4 steps is that step's value, not a quarter of it."""
    from speechtok.train.distributed import DistInfo, all_reduce_mean

    single = DistInfo(0, 1, 0, torch.device("cpu"))
    assert all_reduce_mean({"loss": (8.0, 4), "asr": (2.0, 1), "never": (0.0, 0)}, single) == {"loss": 2.0, "asr": 2.0}


def _losses(run) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_a_killed_run_resumes_to_the_losses_of_an_uninterrupted_one(tmp_path, real_manifest):
    """SIGKILL a real ``speechtok train`` process between checkpoints, resume it: the continued losses
    equal an uninterrupted run's, and metrics.jsonl holds every step once (no rows of the lost steps)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "o.yaml"
    config.write_text("train:\n  steps: 400\n  lr: 0.001\n  warmup_steps: 0\n  min_lr_ratio: 1.0\n  batch_seconds: 3.0\n"
                      "  max_seconds: 1.5\n  log_every: 1\n  checkpoint_every: 3\n  keep_checkpoints: 2\n")
    common = ["--preset", "sitok-tiny", "--data", str(real_manifest), "--config", str(config), "--no-progress"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # as conftest sets for the in-process runs: same float sums
    proc = subprocess.Popen([sys.executable, "-m", "speechtok.cli", "train", *common, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [r[0] for r in _losses(killed)] if (killed / "metrics.jsonl").exists() else []
        if steps and max(steps) >= 8 and max(steps) % 3 != 0:  # past a checkpoint, mid-way to the next
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    logged = max(step for step, _ in _losses(killed))
    assert main(["train", "--resume", str(killed), "--steps", str(logged + 4), "--no-progress"]) == 0
    assert [step for step, _ in _losses(killed)] == list(range(1, logged + 5))  # every step once, in order
    reference = tmp_path / "reference"  # the same run, never interrupted (constant LR: same schedule)
    assert main(["train", *common, "--steps", str(logged + 4), "--out", str(reference)]) == 0
    assert _losses(killed) == _losses(reference)


def test_fine_tuning_accepts_a_checkpoint_that_differs_only_in_decoding_defaults_and_loss_weights(
        tmp_path, real_manifest, overrides, capsys):
    from speechtok.models.sitok import SiTok

    SiTok.from_preset("sitok-tiny", cfg_scale=2.0, sample_steps=4, ctc_weight=0.7,
                      token_drop=0.3).save_pretrained(tmp_path / "guided")
    SiTok.from_preset("sitok-tiny", dim=32).save_pretrained(tmp_path / "narrow")
    common = ["--preset", "sitok-tiny", "--data", str(real_manifest), "--config", str(overrides), "--no-progress",
              "--steps", "1"]
    assert main(["train", *common, "--init", str(tmp_path / "guided"), "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *common, "--init", str(tmp_path / "narrow"), "--out", str(tmp_path / "b")]) == 2
    assert "differs from this run's in dim;" in capsys.readouterr().err


def train_tiny(tmp_path: Path, manifest: Path, name: str, train_yaml: str) -> Path:
    """Train sitok-tiny with the given ``train:`` section into tmp_path/name."""
    config = tmp_path / f"{name}.yaml"
    config.write_text("train:\n" + train_yaml)
    run = tmp_path / name
    assert main(["train", "--preset", "sitok-tiny", "--data", str(manifest), "--config", str(config),
                 "--out", str(run), "--no-progress"]) == 0
    return run


def test_a_time_budget_fits_steps_at_every_window_and_keeps_the_fit_in_the_run(tmp_path, real_manifest, capsys):
    from speechtok.train.config import TrainConfig
    from speechtok.train.trainer import fit_steps, keep_decay_position, lr_factor

    cfg = TrainConfig(steps=10_000, time_budget_s=100.0)
    assert fit_steps(50, 0.1, 5.0, cfg) == 50 + int(0.95 * 95 / 0.1)
    # the lr waits flat for the cut, then decays from the cut to the new last step
    assert lr_factor(5_000, cfg) == 1.0
    cut = TrainConfig(steps=1_000, warmup_steps=100, decay_from=600, min_lr_ratio=0.1)
    assert lr_factor(600, cut) == pytest.approx(1.0) and lr_factor(800, cut) == pytest.approx(0.55)
    assert lr_factor(1_000, cut) == pytest.approx(0.1)
    assert fit_steps(50, 0.001, 5.0, cfg) == 10_000  # the budget never adds steps
    assert fit_steps(50, 0.1, 200.0, cfg) == 50  # overspent: stop at once
    # validation and checkpoints measured so far take their share of the rest of the budget, and the last
    # step's validation and checkpoint are set aside
    assert fit_steps(50, 0.1, 5.0, cfg, pause_per_step=0.1) == 50 + int(0.95 * 95 / 0.2)
    assert fit_steps(50, 0.1, 5.0, cfg, reserve_s=15.0) == 50 + int(0.95 * 80 / 0.1)
    # a refit moves the last step without moving the learning rate
    decaying = TrainConfig(steps=1_000, warmup_steps=100, decay_from=300)
    for new_steps in (700, 1_500, 600):
        moved = TrainConfig(steps=new_steps, warmup_steps=100,
                            decay_from=keep_decay_position(500, decaying, new_steps))
        assert lr_factor(500, moved) == pytest.approx(lr_factor(500, decaying), abs=2e-3)
        assert lr_factor(new_steps, moved) == pytest.approx(0.1)

    recipe = "  steps: 8\n  warmup_steps: 2\n  batch_seconds: 6.0\n  max_seconds: 3.0\n  log_every: 1\n  checkpoint_every: 4\n"
    run = train_tiny(tmp_path, real_manifest, "run", recipe + "  time_budget_s: 0.001\n")
    # overspent at the first log step, even before warm-up ends: cut at once
    assert "at step 1, training to step 1" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_0000001"]  # the final one
    assert json.loads((run / "spec.json").read_text())["train"]["steps"] == 1
    trainer_state = json.loads((run / "checkpoints" / "step_0000001" / "trainer.json").read_text())
    # what --resume reads: the cut, and no budget left to fit again
    saved = trainer_state["spec"]["train"]
    assert saved["steps"] == 1 and saved["time_budget_s"] == 0 and saved["decay_from"] == 1

    # A budget that fits more than the ceiling: fitted at every window from the end of warm-up on, and it
    # never adds steps.
    roomy = train_tiny(tmp_path, real_manifest, "roomy", recipe + "  time_budget_s: 1000\n")
    fits = {r["step"]: r for r in map(json.loads, (roomy / "metrics.jsonl").read_text().splitlines()) if "budget_steps" in r}
    assert sorted(fits) == list(range(2, 9)) and {f["budget_steps"] for f in fits.values()} == {8}
    # the checkpoint at step 4 counts apart from the step time, as a pause per step, from then on
    assert fits[4]["budget_pause_per_step"] == 0 < fits[5]["budget_pause_per_step"]


def test_a_budget_refits_as_the_step_time_falls(tmp_path, real_manifest, monkeypatch):
    """Session 19's leases: the first few hundred steps ran ~3x slower than the rest, and a single fit on
    them stopped the runs at half their budget. Fits at every window follow the step time, and the
    learning rate never jumps back up when a fit gives steps back. (The fake clock advances per reading,
    so the fits land on fixed steps.)"""
    import types

    import speechtok.train.trainer as trainer_module

    readings = {"count": 0, "now": 0.0}

    def clock() -> float:  # 3 s per reading for the first 15 readings, then 1 s: a slow start
        readings["count"] += 1
        readings["now"] += 3.0 if readings["count"] <= 15 else 1.0
        return readings["now"]

    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=clock))
    run = train_tiny(tmp_path, real_manifest, "run", "  steps: 60\n  warmup_steps: 2\n  batch_seconds: 4.0\n"
                     "  max_seconds: 2.0\n  log_every: 1\n  checkpoint_every: 100\n  time_budget_s: 60\n")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fits = [r for r in records if "budget_steps" in r]
    assert fits[0]["step"] == 2  # from the end of warm-up
    assert fits[-1]["budget_steps"] > min(f["budget_steps"] for f in fits)  # faster windows gave steps back
    saved = json.loads((run / "spec.json").read_text())["train"]
    assert saved["steps"] == fits[-1]["budget_steps"] == max(r["step"] for r in records)
    assert saved["time_budget_s"] == 0
    rates = [r["lr"] for r in records if "lr" in r and r["step"] > fits[0]["step"]]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(rates, rates[1:]))


def test_preloading_caches_the_same_examples(tmp_path, real_manifest, monkeypatch):
    """`train.preload_workers` loads every utterance up front with threads: the cache holds what lazy
    loading would have, and a run that preloads trains."""
    from speechtok.data.dataset import MelDataset
    from speechtok.data.manifest import read_manifest
    from speechtok.mel import MelSpectrogram
    from speechtok.text import get_vocabulary

    rows = read_manifest(real_manifest)
    lazy, eager = (MelDataset(rows, MelSpectrogram(), get_vocabulary("char"), max_seconds=3.0) for _ in range(2))
    eager.preload(workers=3)
    assert len(eager._cache) == len(rows) and not lazy._cache
    for index in range(len(rows)):
        a, b = lazy.get(index, epoch=1), eager.get(index, epoch=1)
        assert torch.equal(a.mel, b.mel) and a.labels == b.labels

    calls = []
    monkeypatch.setattr(MelDataset, "preload", lambda self, workers, progress=False: calls.append((len(self), workers)))
    run = train_tiny(tmp_path, real_manifest, "pre", "  steps: 3\n  warmup_steps: 1\n  batch_seconds: 6.0\n"
                     "  max_seconds: 3.0\n  log_every: 1\n  preload_workers: 2\n")
    assert calls == [(len(rows), 2)]  # the training set, not the validation set
    assert (run / "checkpoints" / "step_0000003").is_dir()


def test_a_data_mix_repeats_sources_and_refuses_unknown_ones(tmp_path, real_manifest, monkeypatch, capsys):
    """`train.source_repeats` lists a source's utterances N times per epoch (0 leaves it out); a source the
    training set lacks is a one-line error before any data is loaded."""
    import shutil

    from speechtok.data.manifest import read_manifest, write_manifest
    from speechtok.train import trainer as trainer_module

    rows = read_manifest(real_manifest)
    for row in rows:  # two dataset folders: their names are the sources
        folder = tmp_path / "corpus" / ("phone" if row.speaker == "allison" else "book")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(row.path, folder / row.path.name)
    moved = [r.__class__(tmp_path / "corpus" / ("phone" if r.speaker == "allison" else "book") / r.path.name,
                         r.seconds, r.speaker, r.transcript) for r in rows]
    manifest = write_manifest(tmp_path / "corpus" / "manifest.tsv", moved)

    epochs = []
    real_batcher = trainer_module.DurationBatcher

    def recording_batcher(durations, *args, **kwargs):
        batcher = real_batcher(durations, *args, **kwargs)
        epochs.append((len(durations), batcher.epoch(0)))
        return batcher

    monkeypatch.setattr(trainer_module, "DurationBatcher", recording_batcher)
    recipe = "  steps: 1\n  warmup_steps: 1\n  batch_seconds: 6.0\n  max_seconds: 3.0\n  log_every: 1\n"
    train_tiny(tmp_path, manifest, "mix", recipe + "  source_repeats: {book: 3, phone: 0}\n")
    loaded, batches = epochs[0]
    assert loaded == 1  # the phone prompts (0) are not even loaded
    assert batches == [[0], [0], [0]]  # the one book utterance three times, each copy in a batch of its own

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n" + recipe + "  source_repeats: {kokoro: 2}\n")
    assert main(["train", "--preset", "sitok-tiny", "--data", str(manifest), "--config", str(bad),
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no training utterance from kokoro" in err and "book, phone" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    bad.write_text("train:\n" + recipe + "  source_repeats: {book: two}\n")
    assert main(["train", "--preset", "sitok-tiny", "--data", str(manifest), "--config", str(bad),
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "source_repeats.book: expected int" in capsys.readouterr().err


def test_init_grows_the_encoder_and_starts_as_the_checkpoint(tmp_path, real_manifest, capsys):
    """``encoder_layers`` above the --init checkpoint's: its layers load and the new ones are appended
    silenced, so the grown model encodes exactly as the checkpoint did; training then moves them. A
    shallower encoder is still refused (layers would be lost)."""
    import soundfile as sf

    from speechtok.assets import SAMPLE_SPEECH
    from speechtok.models.sitok import SiTok

    def config(name: str, lr: float, layers: int | None = None) -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text((f"model:\n  encoder_layers: {layers}\n" if layers else "")
                        + f"train:\n  steps: 2\n  lr: {lr}\n  warmup_steps: 1\n  batch_seconds: 6.0\n"
                        "  max_seconds: 3.0\n  log_every: 1\n  checkpoint_every: 2\n")
        return str(path)

    common = ["train", "--preset", "sitok-tiny", "--data", str(real_manifest), "--no-progress"]
    assert main([*common, "--config", config("base", 1e-3), "--out", str(tmp_path / "base")]) == 0
    init = tmp_path / "base" / "checkpoints" / "step_0000002"
    base = SiTok.from_pretrained(init)
    assert base.config.encoder_layers == 2
    capsys.readouterr()
    assert main([*common, "--config", config("still", 0.0, 4), "--init", str(init), "--out", str(tmp_path / "still")]) == 0
    assert "the encoder grows from 2 to 4 layers" in capsys.readouterr().out
    grown = SiTok.from_pretrained(tmp_path / "still" / "checkpoints" / "step_0000002")
    assert grown.config.encoder_layers == 4
    grown.quantizer.load_state_dict(base.quantizer.state_dict())  # lr 0 moves no weight, but EMA codebooks move
    wav, rate = sf.read(SAMPLE_SPEECH, dtype="float32")
    clip = torch.from_numpy(wav[: 2 * rate])[None, None]
    assert torch.equal(grown.encode(clip, rate), base.encode(clip, rate))

    assert main([*common, "--config", config("moved", 1e-3, 4), "--init", str(init), "--out", str(tmp_path / "moved")]) == 0
    moved = SiTok.from_pretrained(tmp_path / "moved" / "checkpoints" / "step_0000002")
    assert float(moved.encoder.blocks[3].mlp.down.weight.abs().sum()) > 0  # the new layers learn
    capsys.readouterr()
    assert main([*common, "--config", config("less", 1e-3, 1), "--init", str(init), "--out", str(tmp_path / "less")]) == 2
    assert "differs from this run's in encoder_layers" in capsys.readouterr().err


def test_summarize_run_prints_any_family_and_refuses_a_folder_that_is_no_run(tmp_path):
    """`scripts/summarize_run.py` shows what an AR+DiT run logs (its recipe's progress keys, every
    validation metric, a validation missing one shown as –); a folder without a run is one line, exit 2."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "summarize_run.py"
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"kind": "ardit"}))
    lines = [{"step": s, "loss": 2.0 - s / 1000, "tts": 0.9, "asr": 1.5, "sec_per_step": 0.5} for s in range(10, 1010, 10)]
    lines += [{"step": 500, "valid_tts": 0.95, "valid_text_gain": 0.001}, {"step": 1000, "valid_tts": 0.93}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "| steps (window mean) | loss | tts | asr | sec_per_step |" in done.stdout
    assert "| 901–1000 | 1.045 | 0.900 | 1.500 | 0.500 |" in done.stdout
    assert "| valid_text_gain | 0.0010 | – |" in done.stdout
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a training run" in done.stderr


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("data-")),
                         ids=lambda p: p.name)
def test_every_training_config_applies_to_its_family(path):
    """Each recipe in configs/ (named after its family) overrides the presets its usage line names
    (or, naming none, some preset of that family), and sets train and objective fields, without an
    unknown or invalid field: a renamed field fails here, not in a user's run."""
    import re

    from speechtok.errors import ConfigError
    from speechtok.train.cli import configure, load_overrides
    from speechtok.train.families import FAMILIES

    overrides = load_overrides(str(path))
    fam = FAMILIES[path.name.split("-")[0]]
    named = set(re.findall(r"--preset ([\w-]+)", path.read_text()))
    assert named <= set(fam.presets), f"{path.name} names presets of another family: {named}"
    accepted = []
    for preset in named or fam.presets:
        try:
            accepted.append(configure(fam.get_preset(preset), fam.recipe.objective_class, overrides))
        except ConfigError:
            if named:
                raise
    assert accepted, f"{path.name}: no {path.name.split('-')[0]} preset accepts its model section"
