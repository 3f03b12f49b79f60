"""HoliTok's three-stage training: what each stage trains and freezes, its losses, the flow KL and
the teacher interface."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from speechtok.cli import main
from speechtok.errors import ConfigError
from speechtok.modules.flows import LatentFlow, flow_kl

TINY = ("objective:\n  mel_resolutions: [256, 512]\n  flow_layers: 2\n  flow_hidden: 16\n  ctc_dim: 32\n"
        "  ctc_layers: 1\n  discriminator:\n    periods: [2, 3]\n    period_channels: [4, 8]\n    resolutions: [256]\n"
        "    resolution_channels: 4\n"
        "train:\n  steps: 2\n  lr: 0.001\n  warmup_steps: 1\n  batch_seconds: 3.0\n  segment_seconds: 1.5\n"
        "  log_every: 1\n  checkpoint_every: 2\n  valid_every: 2\n")


def _weights(run, step=2, name="model"):
    return load_file(str(run / "checkpoints" / f"step_{step:07d}" / f"{name}.safetensors"))


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix) and before[k].is_floating_point()]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


@pytest.fixture(scope="module")
def stages(tmp_path_factory, real_manifest):
    """Stage 1, then 2 from 1, then 3 from 2, two steps each, on real speech."""
    root = tmp_path_factory.mktemp("holitok")
    config = root / "tiny.yaml"
    config.write_text(TINY)
    runs = {}
    previous = None
    for stage in (1, 2, 3):
        runs[stage] = root / f"s{stage}"
        argv = ["train", "--preset", "holitok-tiny", "--stage", str(stage), "--data", str(real_manifest),
                "--valid", str(real_manifest), "--config", str(config), "--out", str(runs[stage]), "--no-progress"]
        assert main(argv + (["--init", str(previous)] if previous else [])) == 0
        previous = runs[stage]
    return runs


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_stage_one_trains_the_autoencoder_without_the_bottleneck(stages):
    from speechtok.models.holitok import HoliTok

    torch.manual_seed(0)  # the trainer seeds 0 before building the model: these are its initial weights
    init = {k: v for k, v in HoliTok.from_preset("holitok-tiny").state_dict().items()}
    after = _weights(stages[1])
    assert _changed(init, after, "encoder.") and _changed(init, after, "decoder.")
    assert not _changed(init, after, "bottleneck.")  # frozen and bypassed
    first = _records(stages[1])[0]
    assert "kl" not in first and {"mel", "adv", "fm", "disc"} <= set(first)


def test_stage_two_trains_only_the_bottleneck_and_its_flow(stages):
    before, after = _weights(stages[1]), _weights(stages[2])
    assert not _changed(before, after, "encoder.") and not _changed(before, after, "decoder.")
    assert _changed(before, after, "bottleneck.")
    assert (stages[2] / "checkpoints" / "step_0000002" / "flow.safetensors").is_file()
    assert "kl" in _records(stages[2])[0]
    spec = json.loads((stages[2] / "spec.json").read_text())
    assert spec["objective"]["stage"] == 2 and spec["objective"]["kl_weight"] is None  # β = 0.1 (paper)


def test_stage_three_trains_everything_with_semantic_heads(stages):
    before, after = _weights(stages[2]), _weights(stages[3])
    for part in ("encoder.", "bottleneck.", "decoder."):
        assert _changed(before, after, part), part
    keys = set().union(*_records(stages[3]))
    assert {"kl", "ctc", "speaker", "speaker_acc", "mel", "valid_mel", "valid_kl"} <= keys
    exported = _weights(stages[3])
    assert not any(k.startswith(("flow", "semantic", "ctc")) for k in exported)  # training-only, not exported
    assert (stages[3] / "checkpoints" / "step_0000002" / "semantic.safetensors").is_file()


def test_init_carries_the_discriminators_between_stages(stages, real_manifest, tmp_path):
    from speechtok.config import from_dict
    from speechtok.train.holitok_recipe import HoliTokObjective
    from speechtok.train.trainer import RunSpec, Trainer
    from speechtok.config import load_yaml
    from speechtok.models.holitok_config import get_preset
    from speechtok.train.config import TrainConfig

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    overrides = load_yaml(config)
    objective = from_dict(HoliTokObjective, {**overrides["objective"], "stage": 2})
    spec = RunSpec(get_preset("holitok-tiny"), from_dict(TrainConfig, overrides["train"]), str(real_manifest),
                   kind="holitok", objective=objective)
    trainer = Trainer(spec, tmp_path / "run", init_from=stages[1], progress=False)
    saved = _weights(stages[1], name="discriminator")
    assert all(torch.equal(v, saved[k]) for k, v in trainer.modules["discriminator"].state_dict().items())


def test_stage_settings_are_checked(real_manifest, tmp_path, capsys):
    assert main(["train", "--preset", "sitok-tiny", "--stage", "2", "--data", str(real_manifest), "--out", str(tmp_path)]) == 2
    assert "sitok-tiny (sitok) has stages full, decoder" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective:\n  stage: 5\n")
    assert main(["train", "--preset", "holitok-tiny", "--config", str(bad), "--data", str(real_manifest), "--out", str(tmp_path)]) == 2
    assert "objective.stage must be" in capsys.readouterr().err


def test_flow_kl_starts_gaussian_and_stays_causal():
    torch.manual_seed(0)
    mean, log_std = torch.randn(2, 8, 20), 0.3 * torch.randn(2, 8, 20)
    z = mean + log_std.exp() * torch.randn_like(mean)
    flow = LatentFlow(8, layers=3, hidden=16)
    eps = (z - mean) / log_std.exp()
    single_sample = ((-log_std - 0.5 * eps ** 2) + 0.5 * z ** 2).mean()
    assert torch.allclose(flow_kl(mean, log_std, z, flow), single_sample, atol=1e-5)  # identity at init
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.3)
    u, log_det = flow(z)
    later = z.clone()
    later[..., 12:] += 1.0  # change the future only
    u2, log_det2 = flow(later)
    assert torch.equal(u[..., :12], u2[..., :12]) and torch.equal(log_det[:, :12], log_det2[:, :12])
    closed = flow_kl(mean, log_std, z, None)
    assert closed > 0


def test_a_teacher_plugs_into_stage_three(real_manifest, tmp_path):
    from speechtok.data.teacher import load_teacher

    config = tmp_path / "t.yaml"
    config.write_text(TINY.replace("objective:\n", "objective:\n  teacher: toy_teacher:toy_teacher\n"))
    assert main(["train", "--preset", "holitok-tiny", "--stage", "3", "--data", str(real_manifest),
                 "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    record = _records(tmp_path / "run")[0]
    assert 0 <= record["teacher_frame"] <= 2 and 0 <= record["teacher_utterance"] <= 2
    with pytest.raises(ConfigError, match="judge"):
        load_teacher("speechtok.eval.judges.asr:whisper_base")


def test_learnability_probe_learns_a_predictable_sequence():
    """On latents with real temporal structure the probe beats copying the last frame; on white noise
    it cannot get below the noise variance."""
    from speechtok.eval.learnability import probe

    t = torch.arange(300, dtype=torch.float32)
    smooth = [torch.stack([torch.sin(0.2 * t + k) for k in range(4)], 1) + 0.01 * torch.randn(300, 4) for _ in range(8)]
    result = probe(smooth[:6], smooth[6:], steps=80, frames=40, batch=8, progress=False)
    assert result.valid_mse < result.initial_valid_mse and result.valid_mse < result.copy_last_mse
    noise = [torch.randn(300, 4) for _ in range(8)]
    assert probe(noise[:6], noise[6:], steps=20, frames=40, batch=8, progress=False).valid_mse > 0.8
