"""Guidance distillation of SiTok's decoder (issue 15, part 2; issue 16's decode speed): a decoder told
the guidance scale gives the two-pass CFG velocity in one pass."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from speechtok.errors import ConfigError
from speechtok.models.sitok import SiTok
from sitok_finetune import as_trained, finetune_3_steps


def _distilled(**overrides) -> SiTok:
    torch.manual_seed(0)
    return as_trained(SiTok.from_preset("sitok-tiny", guidance_distill=True, **overrides).eval())


def _train_embedding(model: SiTok) -> None:
    """Stand-in for a trained adapter (its output layers start at zero)."""
    for layer in (model.guidance_embed.mlp[-1], model.guidance_cond):
        torch.nn.init.normal_(layer.weight, std=0.5)
        torch.nn.init.normal_(layer.bias, std=0.5)


@torch.inference_mode()
def test_scale_one_is_exactly_the_unguided_decoder_and_other_scales_condition_it():
    model = _distilled()
    x, cond, t = torch.randn(2, 5, 512), torch.randn(2, 5, 64), torch.rand(2)
    two = torch.full((2,), 2.0)
    assert torch.equal(model.velocity(x, t, cond, None, guidance=two), model.velocity(x, t, cond, None))  # fresh: no-op
    _train_embedding(model)
    assert torch.equal(model.velocity(x, t, cond, None, guidance=torch.ones(2)), model.velocity(x, t, cond, None))
    assert not torch.allclose(model.velocity(x, t, cond, None, guidance=two), model.velocity(x, t, cond, None), atol=1e-3)


@torch.inference_mode()
def test_decoding_runs_one_pass_within_the_trained_range_and_two_passes_beyond():
    model = _distilled(guidance_max=3.0)
    _train_embedding(model)
    plain = SiTok(dataclasses.replace(model.config, guidance_distill=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("guidance_")})
    codes = torch.randint(0, 1000, (2, 1, 6))
    assert [model.one_pass_guidance(w) for w in (0.0, 1.0, 2.0, 3.0, 3.5)] == [False, False, True, True, False]
    assert torch.equal(model.decode_mel(codes, steps=3, cfg=1.0), plain.decode_mel(codes, steps=3, cfg=1.0))
    assert torch.equal(model.decode_mel(codes, steps=3, cfg=3.5), plain.decode_mel(codes, steps=3, cfg=3.5))
    one_pass = model.decode_mel(codes, steps=3, cfg=2.0)
    assert not torch.allclose(one_pass, plain.decode_mel(codes, steps=3, cfg=2.0), atol=1e-3)
    # the one pass is the scale-conditioned velocity, integrated by the same Euler grid
    calls = []
    original = model._velocity
    model._velocity = lambda x, *args, **kw: calls.append(x.shape[0]) or original(x, *args, **kw)
    model.decode_mel(codes, steps=3, cfg=2.0)
    model.decode_mel(codes, steps=3, cfg=3.5)
    assert calls == [2] * 3 + [2] * 3  # the two-pass path also passes the batch once: it doubles it inside
    cond = model.cond_from_codes(codes)
    x = torch.randn(2, 6, 512, generator=torch.Generator().manual_seed(0))
    for i in range(3):
        t = torch.full((2,), i / 3)
        x = x + model.velocity(x, t, cond, None, guidance=torch.full((2,), 2.0)) / 3
    torch.testing.assert_close(one_pass, model.unstack(x), rtol=0, atol=1e-5)


def test_distillation_loss_pulls_one_pass_towards_two_pass_guidance():
    """At the start the one pass is the conditional velocity, so the loss is |w − 1|·|v_c − v_u| > 0;
    training the adapter alone on it brings the one pass towards the two-pass target."""
    model = _distilled(token_drop=0.0, guidance_fraction=1.0)
    model.freeze_for_guidance_distillation()
    model.train()
    mel, lengths = torch.randn(2, 128, 16), torch.tensor([16, 12])
    labels, label_lengths = torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, dtype=torch.long)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same t, noise and scales each time
        return model(mel, lengths, labels, label_lengths)["guidance"]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    first = loss()
    assert first > 0.05
    first.backward()
    assert model.guidance_embed.mlp[-1].weight.grad is not None and model.guidance_cond.weight.grad is not None
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.startswith(("guidance_embed.", "guidance_cond."))}
    for _ in range(15):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss() < 0.5 * first.detach()


def test_guidance_distillation_trains_only_its_adapter(tmp_path, real_manifest):
    """'train --init' from a checkpoint without the adapter: the guidance loss is logged, the adapter
    learns, and every weight and buffer of the loaded model (decoder, encoder, EMA codebook, CTC head)
    stays bit-identical, so the unguided decoder and the codes are the loaded ones."""
    torch.manual_seed(0)
    before, after, run = finetune_3_steps(tmp_path, real_manifest, as_trained(SiTok.from_preset("sitok-tiny")),
                                          "model:\n  guidance_distill: true\n  guidance_fraction: 0.5\n")
    assert any(k.startswith("quantizer.ema") for k in before)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert not torch.all(after["guidance_embed.mlp.2.weight"] == 0) and not torch.all(after["guidance_cond.weight"] == 0)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(np.isfinite(json.loads(line)["guidance"]) for line in lines)
    assert SiTok.from_pretrained(run / "checkpoints" / "step_0000003").one_pass_guidance(2.0)


def test_a_fine_tune_without_guidance_distillation_leaves_the_adapter_behind(tmp_path, real_manifest):
    """``--init`` a one-pass checkpoint (as the bundled default is) for a fine-tune that changes the
    decoder: the adapter, distilled for the decoder as it was, is not carried into the new run."""
    before, after, _ = finetune_3_steps(tmp_path, real_manifest, _distilled(), "model:\n  shortcut: true\n")
    adapter = {k for k in before if k.startswith(("guidance_embed.", "guidance_cond."))}
    assert adapter and not adapter & set(after) and set(before) - adapter <= set(after)


@pytest.mark.parametrize("overrides", [{"guidance_fraction": 0.0}, {"guidance_max": 1.0}])
def test_bad_guidance_settings_are_config_errors(overrides):
    with pytest.raises(ConfigError, match="guidance"):
        SiTok.from_preset("sitok-tiny", guidance_distill=True, **overrides)
