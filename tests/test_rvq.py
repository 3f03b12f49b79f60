"""The residual vector quantiser: prefix lookups, quantiser dropout, and a falling error per level."""
from __future__ import annotations

import torch

from speechtok.quantization import EMAVectorQuantizer, ResidualVectorQuantizer


def test_rvq_counts_bits_over_levels_and_passes_gradients_straight_through():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, 2**14, 8).eval()
    assert rvq.bits_per_token == 56 and all(isinstance(level, EMAVectorQuantizer) for level in rvq.levels)
    z = torch.randn(2, 7, 8, requires_grad=True)
    out = rvq(z)
    assert out.indices.shape == (2, 7, 4) and out.indices.dtype == torch.long
    assert out.level_perplexity.shape == (4,) and out.perplexity == out.level_perplexity[0]
    assert torch.allclose(out.quantized, rvq.lookup(out.indices), atol=1e-6)  # eval: every level counts
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_dropout_keeps_a_random_prefix_per_item_in_training_only():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, 64, 4)
    kept = rvq.kept_levels(4000, torch.device("cpu"))
    counts = torch.bincount(kept, minlength=5)[1:].float() / 4000
    assert counts.min() > 0.2 and counts.max() < 0.3  # k uniform over 1..4
    # The output of each item is the sum of exactly its first k codes, and k differs between items.
    z = torch.randn(64, 3, 4)
    out = rvq(z)
    prefixes = torch.stack([rvq.lookup(out.indices[..., :k]) for k in range(1, 5)])  # [4, B, T, D]
    matches = (prefixes - out.quantized[None]).abs().amax(dim=(2, 3)) < 1e-5  # [4, B]
    assert bool(matches.any(0).all())
    assert len(set(matches.float().argmax(0).tolist())) == 4
    assert torch.equal(ResidualVectorQuantizer(4, 64, 4, dropout=0.0).kept_levels(8, torch.device("cpu")),
                       torch.full((8,), 4))
    rvq.eval()
    assert torch.equal(rvq.kept_levels(100, torch.device("cpu")), torch.full((100,), 4))
    assert torch.allclose(rvq(z).quantized, rvq.lookup(rvq(z).indices), atol=1e-6)


def test_reconstruction_error_falls_with_every_level_on_real_speech(speech):
    """EMA codebooks fitted to log-mel frames of real speech: each further level describes them better."""
    from speechtok.audio import resample
    from speechtok.mel import MelConfig, MelSpectrogram

    wav, rate = speech
    mel = MelSpectrogram(MelConfig())(torch.from_numpy(resample(wav, rate, 24000))[None, None])[0]  # [128, F]
    frames = mel.T.contiguous()[:, None, :]  # every frame an item: [F, 1, 128]
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, 32, 128, decay=0.8, dead_threshold=0.1)
    for _ in range(15):
        rvq(frames)
    rvq.eval()
    indices = rvq(frames).indices
    errors = [float((frames - rvq.lookup(indices[..., :k])).pow(2).mean()) for k in range(1, 5)]
    assert all(b < 0.9 * a for a, b in zip(errors, errors[1:])), errors  # measured 0.038 0.022 0.015 0.012
    assert errors[-1] < 0.5 * errors[0], errors
