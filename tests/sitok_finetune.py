"""Shared by the SiTok fine-tuning tests (shortcut, guidance distillation): a decoder whose time
input matters, and a 3-step ``train --init`` run over a saved base."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from speechtok.cli import main
from speechtok.models.sitok import SiTok
from speechtok.modules.transformer import AdaptiveRMSNorm

TRAIN_3_STEPS = ("train:\n  steps: 3\n  lr: 0.001\n  warmup_steps: 1\n  batch_seconds: 6.0\n  max_seconds: 3.0\n"
                 "  log_every: 1\n  checkpoint_every: 3\n")


def as_trained(model: SiTok) -> SiTok:
    """Give the adaptive norms non-zero gain projections, as training does: freshly built they start
    at zero, so the time embedding (and anything added to it) would not reach the decoder yet."""
    for module in model.decoder.modules():
        if isinstance(module, AdaptiveRMSNorm):
            torch.nn.init.normal_(module.to_gain.weight, std=0.1)
    return model


def finetune_3_steps(tmp_path: Path, manifest: Path, base: SiTok, model_yaml: str) -> tuple[dict, dict, Path]:
    """Save ``base``, run ``train --init`` on it for 3 steps with ``model_yaml`` (a ``model:`` section);
    return the base's and step 3's tensors and the run folder."""
    base.save_pretrained(tmp_path / "base")
    config = tmp_path / "finetune.yaml"
    config.write_text(model_yaml + TRAIN_3_STEPS)
    assert main(["train", "--preset", "sitok-tiny", "--data", str(manifest), "--config", str(config),
                 "--init", str(tmp_path / "base"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    before = load_file(str(tmp_path / "base" / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "checkpoints" / "step_0000003" / "model.safetensors"))
    return before, after, tmp_path / "run"
