"""SiTok's semantic distillation: a teacher head on the tokens, trained towards a frozen teacher."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speechtok.cli import main
from speechtok.data.manifest import read_corpus
from speechtok.errors import ConfigError
from speechtok.models.sitok import SiTok
from speechtok.models.sitok_config import SiTokConfig
from toy_teacher import ToyTeacher

TRAIN = ("train:\n  steps: {steps}\n  lr: 0.003\n  warmup_steps: 1\n  batch_seconds: 8.0\n  max_seconds: 3.0\n"
         "  log_every: 1\n  checkpoint_every: {steps}\n  valid_every: {steps}\n  seed: 0\n")


def _config(tmp_path, steps: int, teacher: bool = True):
    path = tmp_path / f"c{steps}.yaml"
    path.write_text(("model:\n  teacher: toy_teacher:toy_teacher\n" if teacher else "") + TRAIN.format(steps=steps))
    return path


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_teacher_loss_falls_on_real_speech_and_trains_the_encoder(tmp_path, real_manifest, one_thread):
    run = tmp_path / "run"
    assert main(["train", "--preset", "sitok-tiny", "--data", str(real_manifest), "--valid", str(real_manifest),
                 "--config", str(_config(tmp_path, 24)), "--out", str(run), "--no-progress"]) == 0
    records = [r for r in _records(run) if "teacher" in r]
    first, last = [sum(r["teacher"] for r in part) / 4 for part in (records[:4], records[-4:])]
    assert 0 < last < 0.8 * first, (first, last)
    assert any("valid_teacher" in r for r in _records(run))
    checkpoint = run / "checkpoints" / "step_0000024"
    config = json.loads((checkpoint / "config.json").read_text())["config"]
    assert (config["teacher"], config["teacher_dim"]) == ("toy_teacher:toy_teacher", ToyTeacher.frame_dim)
    weights = load_file(str(checkpoint / "model.safetensors"))
    assert weights["teacher_head.weight"].shape == (ToyTeacher.frame_dim, 64)
    SiTok.from_pretrained(str(checkpoint))  # loads without the teacher


def test_a_teacher_head_is_added_by_fine_tuning_and_its_gradient_reaches_the_encoder(tmp_path, real_manifest, one_thread):
    common = ["--preset", "sitok-tiny", "--data", str(real_manifest), "--no-progress"]
    assert main(["train", *common, "--config", str(_config(tmp_path, 1, teacher=False)), "--out", str(tmp_path / "a")]) == 0
    init = tmp_path / "a" / "checkpoints" / "step_0000001"
    torch.manual_seed(0)
    model = SiTok.from_pretrained(str(init))
    model = SiTok(dataclasses.replace(model.config, teacher="toy_teacher:toy_teacher", teacher_dim=12))
    utt = read_corpus(real_manifest)[0]
    from speechtok.audio import load_audio

    wav, rate = load_audio(utt.path, model.sample_rate)
    mel = model.mel(torch.from_numpy(wav)[None, None])
    frames = torch.tensor([mel.shape[-1]])
    teacher = torch.randn(1, mel.shape[-1], 12)
    out = model(mel, frames, torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long), teacher)
    out["teacher"].backward()
    assert model.encoder_in.weight.grad.abs().sum() > 0 and model.teacher_head.weight.grad.abs().sum() > 0
    assert model.decoder_in.weight.grad is None or model.decoder_in.weight.grad.abs().sum() == 0

    assert main(["train", *common, "--config", str(_config(tmp_path, 1)), "--init", str(init),
                 "--out", str(tmp_path / "b")]) == 0
    assert 0 <= _records(tmp_path / "b")[0]["teacher"] <= 2


def test_fine_tuning_without_the_teacher_leaves_its_head_behind(tmp_path, real_manifest, one_thread):
    """A teacher-trained tokenizer fine-tuned with ``teacher: ""`` (e.g. guidance distillation, which
    needs no teacher features) loads every other tensor and exports no teacher head."""
    common = ["--preset", "sitok-tiny", "--data", str(real_manifest), "--no-progress"]
    assert main(["train", *common, "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "a")]) == 0
    init = tmp_path / "a" / "checkpoints" / "step_0000001"
    path = tmp_path / "no_teacher.yaml"
    path.write_text('model:\n  teacher: ""\n  teacher_dim: 0\n' + TRAIN.format(steps=1).replace("lr: 0.003", "lr: 0.0"))
    assert main(["train", *common, "--config", str(path), "--init", str(init), "--out", str(tmp_path / "b")]) == 0
    before = load_file(str(init / "model.safetensors"))
    after = load_file(str(tmp_path / "b" / "checkpoints" / "step_0000001" / "model.safetensors"))
    assert {k for k in before if k.startswith("teacher_head.")} and set(after) == {
        k for k in before if not k.startswith("teacher_head.")}
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("quantizer."))


def test_teacher_settings_are_checked():
    with pytest.raises(ConfigError, match="teacher_dim 12 needs a teacher"):
        SiTokConfig(teacher_dim=12)
    from speechtok.train.sitok_recipe import SiTokRecipe

    with pytest.raises(ConfigError, match="teacher_dim 5 differs from the teacher's 12 features"):
        SiTokRecipe.complete_model_config(SiTokConfig(teacher="toy_teacher:toy_teacher", teacher_dim=5))
    with pytest.raises(ConfigError, match="judge"):
        SiTokRecipe.complete_model_config(SiTokConfig(teacher="speechtok.eval.judges.asr:whisper_base"))


def test_moonshine_features_follow_the_mel_frames_through_crops(real_manifest):
    pytest.importorskip("moonshine_cpp")
    from speechtok.data.dataset import MelDataset
    from speechtok.data.moonshine import teacher

    model = SiTok.from_preset("sitok-tiny")
    rows = read_corpus(real_manifest)[:2]
    data = MelDataset(rows, model.mel, model.vocabulary, max_seconds=1.0, seed=0, teacher=teacher())
    mel, _, features = data._load(0)
    assert features.dtype == torch.float16 and features.shape == (mel.shape[-1], 416)
    crop = data.get(0, epoch=3)
    start = next(i for i in range(mel.shape[-1]) if torch.equal(mel[:, i:i + crop.mel.shape[-1]], crop.mel))
    assert torch.equal(crop.teacher, features[start:start + crop.mel.shape[-1]])
    long = teacher()._model.encoder_features(np.zeros(16000 * 70, np.float32) + 0.01, 16000)  # over the 64 s limit
    assert abs(long.shape[0] - 16000 * 70 / 384) < 8 and long.shape[1] == 416
