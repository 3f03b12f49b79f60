"""The folded inference decoder (speechtok/models/holitok_inference.py) against the reference decoder.

`HoliTok.decode` and the streaming decoder run the folded copy; `HoliTok.synthesize` (the training
path) is the reference. Both must give the same waveform up to float rounding, offline and
streamed, and the copy must follow every change of the weights.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from speechtok.models.holitok import HoliTok
from speechtok.models.holitok_inference import InferenceDecoder


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _random_snake(model: HoliTok, seed: int) -> HoliTok:
    """Random SnakeBeta α, β, so every activation differs and the decoder output is audio-sized."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "log_alpha" in name or "log_beta" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> HoliTok:
    torch.manual_seed(0)
    return _random_snake(HoliTok.from_preset("holitok-tiny"), 1)


def _reference(model: HoliTok, latents: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.synthesize(latents)


def _assert_same_wave(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = float(expected.abs().max())
    assert scale > 0.05  # a real signal, not near-zero noise that any tolerance would accept
    # Different convolution kernels (channels-last, folded weight norm) sum in another order:
    # differences of a few 1e-6 of the peak, amplified where SnakeBeta is steep; -80 dB is allowed.
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("preset", ["holitok-tiny", "holitok-small"])
def test_decode_equals_reference_decoder(preset: str) -> None:
    torch.manual_seed(0)
    model = _random_snake(HoliTok.from_preset(preset), 2)
    latents = torch.randn(2, 128, 7)
    _assert_same_wave(model.decode(latents), _reference(model, latents))


def test_batched_decode_equals_solo(tiny: HoliTok) -> None:
    latents = torch.randn(3, 128, 6, generator=torch.Generator().manual_seed(3))
    batched = tiny.decode(latents)
    for i in range(3):
        _assert_same_wave(batched[i: i + 1], tiny.decode(latents[i: i + 1]))


def test_streamed_decode_equals_reference(tiny: HoliTok) -> None:
    """Random chunk sizes through the folded decoder's stream memory give the reference waveform."""
    generator = torch.Generator().manual_seed(4)
    latents = torch.randn(1, 128, 23, generator=generator)
    stream, pieces, start = tiny.streaming_decoder(), [], 0
    while start < latents.shape[-1]:
        size = int(torch.randint(1, 6, (1,), generator=generator))
        pieces.append(stream.feed(latents[..., start: start + size]))
        start += size
    pieces.append(stream.flush())
    _assert_same_wave(torch.cat(pieces, dim=-1), _reference(tiny, latents))


def test_folded_copy_follows_weight_changes() -> None:
    """Loading other weights (or an optimiser step) must not decode with a stale folded copy."""
    torch.manual_seed(0)
    model = _random_snake(HoliTok.from_preset("holitok-tiny"), 5)
    other = _random_snake(HoliTok.from_preset("holitok-tiny"), 6)
    latents = torch.randn(1, 128, 5)
    before = model.decode(latents)
    model.load_state_dict(other.state_dict())
    after = model.decode(latents)
    assert not torch.allclose(before, after, atol=1e-3)
    _assert_same_wave(after, _reference(other, latents))


def test_bfloat16_decode_is_close_and_separate(tiny: HoliTok) -> None:
    """bf16 is an opt-in precision: about 24 dB SNR against fp32 here; fp32 stays the default."""
    latents = torch.randn(1, 128, 8, generator=torch.Generator().manual_seed(7))
    full = tiny.decode(latents)
    half = tiny.decode(latents, dtype=torch.bfloat16)
    assert half.dtype == torch.float32
    snr = 10 * torch.log10(full.pow(2).sum() / (half - full).pow(2).sum())
    assert 15 < float(snr) < 60  # close, and really computed in bf16 (not silently fp32)
    _assert_same_wave(tiny.decode(latents), full)


def test_inference_decoder_never_tracks_gradients(tiny: HoliTok) -> None:
    folded = InferenceDecoder(tiny.decoder)
    x = torch.randn(1, 128, 4, requires_grad=True)
    assert not folded(x).requires_grad


def test_cli_process_keeps_freed_memory() -> None:
    """The allocator setting applies in a fresh process and stands aside when the user set glibc's own."""
    code = "from speechtok.allocator import retain_freed_memory as r; print(r())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    applied = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert applied.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")
    env["MALLOC_ARENA_MAX"] = "2"
    skipped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert skipped.stdout.strip() == "False"
