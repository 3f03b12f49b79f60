"""SiTok's decoder fine-tuning stage: encoder, quantiser and CTC head stay bit-identical."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from speechtok.audio import load_audio
from speechtok.cli import main
from speechtok.models.sitok import SiTok

STEPS = ("train:\n  steps: 2\n  lr: 0.001\n  warmup_steps: 1\n  batch_seconds: 6.0\n  max_seconds: 3.0\n"
         "  log_every: 1\n  checkpoint_every: 1\n  keep_checkpoints: 5\n")


#: The modules that map codes to mel: the only ones the decoder stage may train (``vq_out`` is not
#: among them: the CTC head reads it too).
DECODER_MODULES = ("time_embed", "decoder_in", "decoder", "decoder_out", "decoder_skip")


def _is_decoder(key: str) -> bool:
    return key.split(".")[0] in DECODER_MODULES


@pytest.fixture()
def started(tmp_path, real_manifest):
    """A sitok-tiny trained 1 step (full stage): its codebook's EMA statistics are live, so an EMA
    update during the decoder stage would move codes (dead-code restarts included)."""
    config = tmp_path / "o.yaml"
    config.write_text(STEPS)
    common = ["--preset", "sitok-tiny", "--data", str(real_manifest), "--config", str(config), "--no-progress"]
    assert main(["train", *common, "--steps", "1", "--out", str(tmp_path / "full")]) == 0
    return common, tmp_path / "full" / "checkpoints" / "step_0000001"


def test_decoder_stage_trains_only_the_decoder_and_resumes_exactly(tmp_path, real_manifest, started):
    from speechtok.train.trainer import RunSpec, Trainer

    common, init = started
    run = tmp_path / "dec"
    assert main(["train", *common, "--stage", "decoder", "--init", str(init), "--out", str(run)]) == 0
    before = load_file(str(init / "model.safetensors"))
    after = load_file(str(run / "checkpoints" / "step_0000002" / "model.safetensors"))
    assert before.keys() == after.keys() and any(k.startswith("quantizer.ema_") for k in before)
    frozen = [k for k in before if not _is_decoder(k)]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # buffers and codebook included
    decoder = [k for k in before if _is_decoder(k)]
    assert all(not torch.equal(before[k], after[k]) for k in decoder)

    wav, sr = load_audio(real_manifest.parent / "84-121123-0000.flac")
    wav = torch.from_numpy(wav)[None, None]
    old, new = SiTok.from_pretrained(str(init)), SiTok.from_pretrained(str(run / "checkpoints" / "step_0000002"))
    assert torch.equal(old.encode(wav, sr), new.encode(wav, sr))

    # the optimiser holds exactly the decoder's parameters, also after a resume
    trainer = Trainer(RunSpec.from_json(json.loads((run / "spec.json").read_text())), tmp_path / "x",
                      resume_from=run / "checkpoints" / "step_0000001", progress=False)
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for name, p in trainer.model.named_parameters() if _is_decoder(name)}
    del trainer

    resumed = tmp_path / "resumed"
    assert main(["train", "--resume", str(run / "checkpoints" / "step_0000001"), "--out", str(resumed),
                 "--no-progress"]) == 0
    again = load_file(str(resumed / "checkpoints" / "step_0000002" / "model.safetensors"))
    assert all(torch.equal(after[k], again[k]) for k in after)


@pytest.mark.parametrize(("argv", "message"), [
    (["--preset", "holitok-tiny", "--stage", "decoder"], "--stage decoder: holitok-tiny (holitok) has stages 0, 1, 2, 3"),
    (["--preset", "vocos-tiny", "--stage", "decoder"], "--stage decoder: vocos-tiny (vocos) has no training stages"),
    (["--preset", "sitok-tiny", "--stage", "2"], "--stage 2: sitok-tiny (sitok) has stages full, decoder"),
    (["--preset", "sitok-tiny", "--stage", "decoder"], "stage 'decoder' fine-tunes a trained model: pass --init"),
])
def test_stage_errors_are_one_line(tmp_path, real_manifest, capsys, argv, message):
    assert main(["train", *argv, "--data", str(real_manifest), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
