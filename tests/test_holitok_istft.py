"""HoliTok's cheaper iSTFT decoder head (``decoder_head="istft"``): rates, causality, streaming,
the causal inverse STFT itself, and training through the stage-1 recipe."""
from __future__ import annotations

import math

import pytest
import torch

from speechtok.errors import ConfigError
from speechtok.models.holitok import HoliTok, ISTFTDecoder
from speechtok.models.holitok_config import HoliTokConfig, get_preset
from speechtok.modules.conv import StreamState
from speechtok.modules.istft import CausalISTFT

from holitok_runs import train_stage_one

TINY_ISTFT = dict(decoder_head="istft", head_dim=32, head_layers=2)


@pytest.fixture(scope="module")
def model() -> HoliTok:
    torch.manual_seed(0)
    return HoliTok(HoliTokConfig(name="holitok-tiny-istft", **TINY_ISTFT)).eval()


def test_preset_is_the_small_encoder_with_a_frame_rate_head() -> None:
    config = get_preset("holitok-small-istft")
    model = HoliTok(config)
    assert isinstance(model.decoder, ISTFTDecoder)
    assert (config.sample_rate, config.hop_length, config.latent_rate) == (48000, 1920, 25.0)
    assert model.decoder.istft.hop == 480 and model.decoder.istft.n_fft == 1920
    assert model.parameter_counts()["decoder"] < 5_000_000  # far below BigVGAN's 128 M (holitok-base)


def test_bad_head_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="decoder_head"):
        HoliTokConfig(decoder_head="hifigan")
    with pytest.raises(ConfigError, match="istft_frames"):
        HoliTokConfig(decoder_head="istft", istft_frames=7)
    with pytest.raises(ConfigError, match="multiple of hop"):
        CausalISTFT(1000, 480)


def test_decode_rate_and_causality(model: HoliTok) -> None:
    latents = torch.randn(2, 128, 10, generator=torch.Generator().manual_seed(1))
    wav = model.decode(latents)
    assert wav.shape == (2, 1, 10 * 1920)
    changed = latents.clone()
    changed[..., 7:] += 1.0  # latent 7 on: with 2 frames of look-ahead, samples before latent 5 keep
    after = model.decode(changed)
    lookahead = model.config.decoder_lookahead
    torch.testing.assert_close(after[..., : (7 - lookahead) * 1920], wav[..., : (7 - lookahead) * 1920])
    assert not torch.allclose(after[..., (7 - lookahead) * 1920:], wav[..., (7 - lookahead) * 1920:])


def test_streamed_decode_equals_offline(model: HoliTok) -> None:
    generator = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 128, 17, generator=generator)
    stream, pieces, start = model.streaming_decoder(), [], 0
    while start < latents.shape[-1]:
        size = int(torch.randint(1, 5, (1,), generator=generator))
        pieces.append(stream.feed(latents[..., start: start + size]))
        start += size
    pieces.append(stream.flush())
    torch.testing.assert_close(torch.cat(pieces, dim=-1), model.decode(latents), rtol=0, atol=1e-6)


def test_causal_istft_inverts_its_own_framing() -> None:
    """Frames cut at ``[i·hop, i·hop + n_fft)`` with the Hann window, analysed and resynthesised,
    give the signal back wherever all overlapping frames exist (after the first n_fft − hop samples)."""
    n_fft, hop, frames = 64, 16, 40
    istft = CausalISTFT(n_fft, hop)
    t = torch.arange(frames * hop + n_fft, dtype=torch.float32)
    signal = 0.3 * torch.sin(2 * math.pi * t / 13.7) + 0.1 * torch.cos(2 * math.pi * t / 5.3)
    window = torch.hann_window(n_fft)  # the periodic Hann the iSTFT's kernel holds
    cuts = torch.stack([signal[i * hop: i * hop + n_fft] * window for i in range(frames)], dim=1)
    spectrum = torch.fft.rfft(cuts, dim=0)[None]  # [1, bins, F]
    wav = istft(spectrum.abs().clamp(min=1e-9).log(), spectrum.angle())
    assert wav.shape == (1, 1, frames * hop)
    steady = slice(n_fft - hop, frames * hop)
    torch.testing.assert_close(wav[0, 0, steady], signal[steady], rtol=0, atol=1e-4)


def test_stage_one_trains_the_istft_head(tmp_path, real_manifest) -> None:
    run, records = train_stage_one(
        tmp_path, real_manifest,
        "model:\n  decoder_head: istft\n  head_dim: 32\n  head_layers: 2\n"
        "objective:\n  mel_resolutions: [256, 512]\n  discriminator:\n    periods: [2, 3]\n"
        "    period_channels: [4, 8]\n    resolutions: [256]\n    resolution_channels: 4\n"
        "train:\n  steps: 4\n  lr: 0.002\n  warmup_steps: 1\n  batch_seconds: 3.0\n  segment_seconds: 1.5\n"
        "  log_every: 1\n  checkpoint_every: 4\n  valid_every: 4\n")
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 4 and all(math.isfinite(v) for v in losses)
    reloaded = HoliTok.from_pretrained(str(run / "checkpoints" / "step_0000004"))
    assert isinstance(reloaded.decoder, ISTFTDecoder)
    assert reloaded.decode(torch.zeros(1, 128, 3)).shape == (1, 1, 3 * 1920)


def test_stream_state_of_the_istft_is_its_overlap_tail() -> None:
    istft = CausalISTFT(64, 16)
    state = StreamState()
    log_magnitude, phase = torch.randn(1, 33, 3), torch.randn(1, 33, 3)
    assert istft(log_magnitude, phase, state).shape == (1, 1, 48)
    assert state.memory[istft].shape == (1, 64 - 16)
