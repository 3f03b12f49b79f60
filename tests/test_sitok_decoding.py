"""SiTok's few-step and prompted decoding: shortcut fine-tuning, the light-weight diffusion head,
and prompts as in-context prefixes (issue 15, parts 2 and 5)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechtok.cli import main
from speechtok.errors import ConfigError
from speechtok.models.sitok import SiTok
from speechtok.modules.flow_matching import flow_pair, guided, on_prefix_path
from sitok_finetune import as_trained, finetune_3_steps

V1_DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "sitok-default-v1"  # the first bundled default


def _reference_decode(model: SiTok, codes: torch.Tensor, steps: int, cfg: float) -> torch.Tensor:
    """The decoder as written before shortcut and light-head support: x_t and the token condition
    through every decoder layer at every Euler step."""
    cond = model.vq_out(model.quantizer.lookup(codes[:, 0]))
    x = torch.randn(codes.shape[0], codes.shape[-1], model.decoder_in.in_features, generator=torch.Generator().manual_seed(0))

    def v(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = model.decoder_in(x) + (c if model.decoder_body is None else model.decoder_body(c, None))
        return model.decoder_out(model.decoder(h, None, cond=model.time_embed(t))) + model.decoder_skip(x)

    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps)
        if cfg == 1.0:
            velocity = v(x, t, cond)
        else:
            velocity = guided(*v(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)])).chunk(2), cfg)
        x = x + velocity / steps
    return model.unstack(x)


@torch.inference_mode()
@pytest.mark.parametrize("source", [V1_DEFAULT, "sitok-default"])
def test_trained_decoders_decode_exactly_as_before(source):
    """Shortcut off (the default, and every checkpoint before it): no step-size input, no new weight,
    and the decoded mel equals the old decoder loop, at guidance 2.0 (two passes) and without, for the first
    default and today's (neither carries a guidance adapter; one-pass guidance: tests/test_sitok_guidance_distill.py).
    Only the precomputed sampler's batching of the two guidance halves may move a float's last bits
    (1.4e-6 measured on a mel of magnitude ~1; the bound is the one of test_sitok_decode_precompute)."""
    model = SiTok.from_pretrained(str(source))
    assert not model.config.shortcut and not hasattr(model, "step_embed") and model.decoder_body is None
    codes = torch.randint(0, 65536, (2, 1, 6), generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.decode_mel(codes, steps=3, cfg=1.0, temperature=1.0), _reference_decode(model, codes, 3, 1.0))
    if not model.config.guidance_distill:
        guided_mel = model.decode_mel(codes, steps=3, cfg=2.0, temperature=1.0)
        torch.testing.assert_close(guided_mel, _reference_decode(model, codes, 3, 2.0), rtol=0, atol=1e-4)


def test_step_size_embedding_conditions_the_velocity():
    torch.manual_seed(0)
    model = as_trained(SiTok.from_preset("sitok-tiny", shortcut=True).eval())
    x, cond, t = torch.randn(2, 5, 512), torch.randn(2, 5, 64), torch.rand(2)
    half = torch.full((2,), 0.5)
    with torch.no_grad():
        # zero-initialised output layer: a fine-tuning run starts from the decoder it loaded
        assert torch.equal(model.velocity(x, t, cond, None, half), model.velocity(x, t, cond, None))
        torch.nn.init.normal_(model.step_embed.mlp[-1].weight)
        assert not torch.allclose(model.velocity(x, t, cond, None, half), model.velocity(x, t, cond, None), atol=1e-3)
        assert torch.equal(model.velocity(x, t, cond, None, torch.zeros(2)), model.velocity(x, t, cond, None))
    assert [model.step_size(n) for n in (1, 2, 4, 64, 128)] == [1.0, 0.5, 0.25, 1 / 64, 0.0]  # 7 levels
    seen = []  # a 4-step decode conditions every step on d = 1/4 (the grid's time features, once per decode)
    original = model.time_features
    model.time_features = lambda t, step=None, guidance=None: seen.append((t, step)) or original(t, step, guidance)
    model.decode_mel(torch.zeros(1, 1, 3, dtype=torch.long), steps=4, cfg=1.0)
    (times, steps), = seen
    assert torch.equal(times, torch.tensor([0.0, 0.25, 0.5, 0.75])) and torch.equal(steps, torch.full((4,), 0.25))


def test_shortcut_finetuning_trains_only_the_decoder(tmp_path, real_manifest):
    """'train --init' from a checkpoint without the step embedding: the self-consistency loss is logged,
    the decoder and step embedding learn, encoder, codebook (EMA buffers too) and CTC head stay bit-identical."""
    torch.manual_seed(0)
    before, after, run = finetune_3_steps(tmp_path, real_manifest, SiTok.from_preset("sitok-tiny"),
                                          "model:\n  shortcut: true\n  shortcut_fraction: 0.5\n")
    frozen = ("encoder_in.", "encoder.", "vq_in.", "quantizer.", "vq_out.", "ctc_head.", "ctc_out.")
    assert any(k.startswith("quantizer.ema") for k in before)
    for key, value in before.items():
        if key.startswith(frozen):
            assert torch.equal(value, after[key]), key
        elif key.startswith("decoder."):
            assert not torch.equal(value, after[key]), key
    assert not torch.equal(before["decoder_in.weight"], after["decoder_in.weight"])
    assert any(k.startswith("step_embed.") for k in after) and not torch.all(after["step_embed.mlp.2.weight"] == 0)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(np.isfinite(json.loads(line)["shortcut"]) for line in lines)


def test_shortcut_loss_is_a_gradient_of_the_decoder_only():
    torch.manual_seed(0)
    model = SiTok.from_preset("sitok-tiny", shortcut=True, token_drop=0.0)
    model.freeze_tokenizer()
    model.train()
    assert not model.quantizer.training and model.decoder.training  # EMA codebook updates are off
    mel = torch.randn(2, 128, 24)
    out = model(mel, torch.tensor([24, 16]), torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    assert out["shortcut"] > 0 and out["loss"].requires_grad
    out["shortcut"].backward()
    assert model.decoder_in.weight.grad is not None and model.step_embed.mlp[-1].weight.grad is not None
    assert all(p.grad is None for m in model.tokenizer_modules() for p in m.parameters())


def test_light_head_runs_its_body_once_per_decode_and_equals_the_uncached_network():
    torch.manual_seed(0)
    model = SiTok.from_preset("sitok-tiny", decoder_layers=3, decoder_head_layers=1).eval()
    assert len(model.decoder_body.blocks) == 2 and len(model.decoder.blocks) == 1
    calls = []
    model.decoder_body.register_forward_hook(lambda *_: calls.append(1))
    codes = torch.randint(0, 65536, (2, 1, 5), generator=torch.Generator().manual_seed(1))
    for cfg in (1.0, 2.0):
        calls.clear()
        mel = model.decode_mel(codes, steps=4, cfg=cfg)
        assert len(calls) == 1  # not once per step
        with torch.inference_mode():  # the body re-run at every step (guidance: batching moves last bits only)
            torch.testing.assert_close(mel, _reference_decode(model, codes, 4, cfg), rtol=0, atol=0 if cfg == 1.0 else 1e-5)
    with pytest.raises(ConfigError, match="decoder_head_layers"):
        SiTok.from_preset("sitok-tiny", decoder_head_layers=2)


def test_light_head_trains():
    torch.manual_seed(0)
    model = SiTok.from_preset("sitok-tiny", decoder_layers=3, decoder_head_layers=1)
    mel = torch.randn(2, 128, 16)
    out = model(mel, torch.tensor([16, 16]), torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    out["loss"].backward()
    assert model.decoder_body.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_prefix_is_held_on_the_prompts_true_path():
    prefix, noise = torch.randn(2, 3, 4), torch.randn(2, 7, 4)
    seen = []
    grid = torch.tensor([0.0, 0.25, 0.5, 0.75])
    velocity = on_prefix_path(lambda x, i: seen.append((x.clone(), i)) or torch.zeros_like(x), prefix, noise, grid)
    x = torch.randn(2, 7, 4)
    velocity(x, 1)  # step 1 of 4: t = 0.25
    expected, _ = flow_pair(prefix, torch.full((2,), 0.25), noise[:, :3])
    (held, step), = seen
    assert step == 1 and torch.equal(held[:, :3], expected) and torch.equal(held[:, 3:], x[:, 3:])


def test_prompted_decode_lengths_batch_and_prefix(tiny_model, speech):
    wav, rate = speech
    prompt = torch.from_numpy(wav[: rate // 2])  # 0.5 s: 6 whole tokens (a partial 7th is cut)
    codes = torch.randint(0, 65536, (2, 1, 6), generator=torch.Generator().manual_seed(2))
    codes[1, 0, 4:] = SiTok.PAD_CODE
    mel = tiny_model.decode_mel(codes, steps=2, prompt=prompt, prompt_sample_rate=rate)
    assert mel.shape == (2, 128, 24)  # the prompt's tokens are not returned
    assert not torch.allclose(mel, tiny_model.decode_mel(codes, steps=2))
    assert tiny_model.decode_mel(codes, steps=2, prompt=prompt[: rate // 4], prompt_sample_rate=rate).shape == mel.shape
    prefix = tiny_model.prompt_prefix(prompt, rate)
    assert prefix.length == 6 and prefix.mel.shape == (1, 6, 512)
    as_mel = tiny_model.decode_mel(codes, steps=2, prompt=tiny_model.unstack(prefix.mel))  # a mel prompt
    assert torch.equal(as_mel, mel)


@pytest.mark.parametrize("prompt, rate, fragment", [
    (torch.zeros(1000, dtype=torch.long), 16000, "float tensor"),
    (torch.zeros(2, 16000), 16000, "one mono waveform"),
    (torch.zeros(100), 16000, "shorter than one token"),
    (torch.full((16000,), float("nan")), 16000, "NaN"),
    (torch.zeros(1, 80, 40), None, r"\[1, 128, F\]"),
    (torch.zeros(16000), 0, "sample_rate"),
])
def test_bad_prompts_are_one_line_errors(tiny_model, prompt, rate, fragment):
    from speechtok.errors import SpeechtokError

    with pytest.raises(SpeechtokError, match=fragment) as info:
        tiny_model.decode_mel(torch.zeros(1, 1, 3, dtype=torch.long), steps=1, prompt=prompt, prompt_sample_rate=rate)
    assert "\n" not in str(info.value)


def test_cli_reconstructs_with_a_prompt(tmp_path, speech, capsys):
    wav, rate = speech
    torch.manual_seed(0)
    SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path / "tiny")
    clip, prompt, out = tmp_path / "clip.wav", tmp_path / "prompt.wav", tmp_path / "out.wav"
    sf.write(clip, wav[:rate], rate)
    sf.write(prompt, wav[rate: 2 * rate], rate)
    common = ["--checkpoint", str(tmp_path / "tiny"), "--steps", "1", "--vocoder", "griffin-lim"]
    assert main(["reconstruct", str(clip), str(out), *common, "--prompt", str(prompt)]) == 0
    assert sf.info(out).duration == 1.0
    capsys.readouterr()
    assert main(["reconstruct", str(clip), str(tmp_path / "x.wav"), *common, "--prompt", str(tmp_path / "missing.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.wav" in err[0] and not (tmp_path / "x.wav").exists()
