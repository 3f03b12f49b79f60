from __future__ import annotations

import pytest
import torch

from speechtok.modules.transformer import AdaptiveRMSNorm, RMSNorm, Transformer, TransformerConfig


def test_causal_stack_ignores_the_future():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(32, 2, 4, 64, causal=True)).eval()
    x = torch.randn(1, 12, 32)
    y = x.clone()
    y[:, 8:] = torch.randn(1, 4, 32)
    assert torch.allclose(model(x)[:, :8], model(y)[:, :8], atol=1e-6)
    assert not torch.allclose(model(x)[:, 8:], model(y)[:, 8:])


def test_bidirectional_stack_sees_the_future():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(32, 2, 4, 64, causal=False)).eval()
    x = torch.randn(1, 12, 32)
    y = x.clone()
    y[:, 8:] = 0
    assert not torch.allclose(model(x)[:, :8], model(y)[:, :8])


def test_padding_mask_matches_unpadded():
    torch.manual_seed(0)
    for causal in (True, False):
        model = Transformer(TransformerConfig(32, 2, 4, 64, causal=causal)).eval()
        x = torch.randn(2, 10, 32)
        mask = torch.ones(2, 10, dtype=torch.bool)
        mask[1, 6:] = False
        batched = model(x, mask)
        alone = model(x[1:, :6])
        assert torch.allclose(batched[1, :6], alone[0], atol=1e-5)


def test_adaptive_norm_starts_as_plain_rmsnorm_and_depends_on_condition():
    x = torch.randn(2, 5, 16)
    ada = AdaptiveRMSNorm(16, 8)
    cond = torch.randn(2, 8)
    assert torch.allclose(ada(x, cond), RMSNorm(16)(x), atol=1e-6)
    torch.nn.init.normal_(ada.to_gain.weight)
    assert not torch.allclose(ada(x, cond), ada(x, torch.randn(2, 8)))


def test_kv_cached_decoding_equals_the_whole_sequence():
    """Feeding a causal stack a prefix, then one position at a time, then a chunk, through a KV
    cache gives the outputs of one pass over the whole sequence (RoPE offsets included)."""
    from speechtok.modules.transformer import KVCache

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(32, 3, 4, 64, causal=True)).eval()
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        whole = model(x)
        cache = KVCache()
        parts = [model(x[:, :5], cache=cache)]
        parts += [model(x[:, i:i + 1], cache=cache) for i in range(5, 9)]
        parts.append(model(x[:, 9:], cache=cache))
    assert cache.length == 12
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        Transformer(TransformerConfig(32, 1, 4, 64))(x, cache=KVCache())


def test_attention_bias_adds_to_the_logits_and_keeps_masks():
    """A zero bias changes nothing; a very negative bias on a key hides it like a mask; padding and
    causality still hold under a bias; a cache refuses one (it is a training-time prior)."""
    from speechtok.modules.transformer import KVCache

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(32, 2, 4, 64, causal=True)).eval()
    x = torch.randn(2, 10, 32)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    zero = torch.zeros(2, 4, 10, 10)
    assert torch.allclose(model(x, mask, bias=zero), model(x, mask), atol=1e-6)
    hide = zero.clone()
    hide[:, :, :, 3] = -1e9  # no query may read position 3 …
    changed = x.clone()
    changed[:, 3] = torch.randn(2, 32)
    out, out_changed = model(x, mask, bias=hide), model(changed, mask, bias=hide)
    others = [i for i in range(10) if i != 3]
    assert torch.allclose(out[0, others], out_changed[0, others], atol=1e-5)  # … so only its own output moves
    bias = torch.randn(2, 4, 10, 10)
    assert torch.allclose(model(x, mask, bias=bias)[1, :6], model(x[1:, :6], bias=bias[1:, :, :6, :6])[0], atol=1e-5)
    future = x.clone()
    future[:, 8:] = torch.randn(2, 2, 32)
    assert torch.allclose(model(x, bias=zero)[:, :8], model(future, bias=zero)[:, :8], atol=1e-6)
    with pytest.raises(ValueError, match="bias"):
        model(x[:, :1], cache=KVCache(), bias=zero[:, :, :1, :1])


def test_dropout_acts_in_training_only_and_adds_no_weights():
    torch.manual_seed(0)
    plain = Transformer(TransformerConfig(32, 2, 4, 64))
    dropped = Transformer(TransformerConfig(32, 2, 4, 64, dropout=0.3))
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # checkpoints load either way
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 10, 32)
    assert torch.equal(plain.eval()(x), dropped.eval()(x))
    dropped.train()
    first, second = dropped(x), dropped(x)
    assert not torch.allclose(first, second)
    torch.manual_seed(5)
    again = dropped(x)
    torch.manual_seed(5)
    assert torch.equal(again, dropped(x))  # drawn from the global generator: a resumed run repeats it
    assert torch.equal(plain.train()(x), plain(x))  # no dropout built at 0
    with pytest.raises(ValueError, match="dropout must be in"):
        TransformerConfig(32, 2, 4, 64, dropout=1.0)
