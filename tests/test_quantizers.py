from __future__ import annotations

import torch

from speechtok.quantization import BinarySphericalQuantizer, EMAVectorQuantizer


def test_vq_gives_16_bits_and_straight_through_gradients():
    vq = EMAVectorQuantizer(65536, 32)
    assert vq.bits_per_token == 16
    z = torch.randn(2, 7, 32, requires_grad=True)
    out = vq(z)
    assert out.indices.shape == (2, 7) and out.indices.dtype == torch.long
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))


def test_vq_ema_learns_clusters_and_tracks_perplexity():
    torch.manual_seed(0)
    centres = torch.randn(8, 4) * 3
    vq = EMAVectorQuantizer(12, 4, decay=0.9, dead_threshold=0.05)
    for _ in range(200):
        data = centres[torch.randint(0, 8, (256,))] + 0.05 * torch.randn(256, 4)
        out = vq(data[None])
    vq.eval()
    data = centres[torch.randint(0, 8, (512,))] + 0.05 * torch.randn(512, 4)
    out = vq(data[None])
    error = (vq.lookup(out.indices)[0] - data).norm(dim=-1).mean()
    assert error < 0.3  # every cluster has a code near its centre
    assert 6 <= out.perplexity <= 12  # 8 clusters, some split by restarted codes


def test_vq_restarts_dead_codes_on_data():
    vq = EMAVectorQuantizer(16, 2, dead_threshold=0.5)
    far = torch.full((1, 4, 2), 100.0)
    vq(far)
    assert (vq.codebook - 100).abs().sum(-1).min() < 1e-4  # some codes moved onto the data


def test_vq_mask_excludes_padding_from_statistics():
    vq = EMAVectorQuantizer(16, 2)
    z = torch.randn(1, 6, 2)
    mask = torch.tensor([[True, True, True, False, False, False]])
    out = vq(z, mask)
    assert out.perplexity <= 3.0 + 1e-4


def test_bsq_codes_round_trip():
    bsq = BinarySphericalQuantizer(16)
    assert bsq.bits_per_token == 16 and bsq.codebook_size == 65536
    z = torch.randn(3, 11, 16)
    out = bsq(z)
    assert int(out.indices.max()) < 65536
    assert torch.allclose(bsq.lookup(out.indices), out.quantized, atol=1e-6)
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(3, 11), atol=1e-5)


def test_vq_code_choice_ignores_bf16_autocast():
    """Training on a GPU runs under bf16 autocast; the nearest code must still be the fp32 one."""
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(65536, 32).eval()
    z = torch.randn(1, 256, 32) * 0.1
    exact = vq(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(vq(z).indices, exact)
