from __future__ import annotations

import math

import pytest
import torch

from speechtok.errors import AudioError, CheckpointError, ConfigError
from speechtok.models.holitok import HoliTok
from speechtok.models.holitok_config import PRESETS, HoliTokConfig, get_preset

HOP = 1920


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model(one_thread) -> HoliTok:
    """holitok-tiny with random SnakeBeta α, β, so every activation differs (its decoder output is then
    audio-sized, max ≈ 0.4, so comparisons test real signal)."""
    torch.manual_seed(0)
    m = HoliTok.from_preset("holitok-tiny").eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "log_alpha" in name or "log_beta" in name:
                p.normal_(0, 0.5)
    return m


@pytest.fixture(scope="module")
def speech_48k(model, speech) -> torch.Tensor:
    """The first 0.7 s of the bundled clip at 48 kHz, ``[1, 1, 33600]``."""
    wav, rate = speech
    return model._prepare(torch.from_numpy(wav[: int(0.7 * rate)])[None, None], rate)


def _chunks(total: int, generator: torch.Generator, largest: int) -> list[int]:
    """Random chunk lengths covering ``total``: mostly up to ``largest``, sometimes tiny (1–3)."""
    sizes, done = [], 0
    while done < total:
        tiny = bool(torch.rand(1, generator=generator) < 0.2)
        n = int(torch.randint(1, 4 if tiny else largest + 1, (1,), generator=generator))
        sizes.append(min(n, total - done))
        done += sizes[-1]
    return sizes


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    scale = float(expected.abs().max())
    assert scale > 0.05  # a real signal, not near-zero noise that any tolerance would accept
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def test_latent_rate_and_shape_on_real_speech(model, speech):
    wav, rate = speech
    assert rate == 16000 and abs(len(wav) / rate - 3.99) < 0.01
    latents = model.encode(torch.from_numpy(wav)[None, None], rate)
    expected = math.ceil(len(wav) * 48000 / rate / HOP)
    assert expected == 100 == model.num_latents(len(wav), rate)
    assert latents.shape == (1, 128, expected)
    assert model.latent_rate == 25.0 and model.latent_dim == 128
    assert model.sample_rate == 48000 and model.hop_length == HOP
    assert model.encode_posterior(torch.from_numpy(wav), rate).shape == (1, 256, expected)


def test_resampling_inside_encode_equals_resampling_first(model, speech):
    wav, rate = speech
    clip = torch.from_numpy(wav[:8000])[None, None]
    at_48k = model._prepare(clip, rate)
    assert torch.equal(model.encode(clip, rate), model.encode(at_48k, 48000))


def test_decode_and_reconstruct_lengths(model, speech_48k):
    out = model.decode(torch.randn(2, 128, 7))
    assert out.shape == (2, 1, 7 * HOP) and float(out.abs().max()) <= 1.0
    clip = speech_48k[..., :5000]
    assert model.reconstruct(clip, 48000).shape == (1, 1, 5000)


def test_posterior_mean_and_sampling(model, speech_48k):
    clip = speech_48k[..., : 6 * HOP]
    posterior = model.encode_posterior(clip, 48000)
    assert torch.equal(model.encode(clip, 48000), posterior[:, :128])
    one = model.encode(clip, 48000, sample=True, generator=torch.Generator().manual_seed(3))
    two = model.encode(clip, 48000, sample=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and not torch.allclose(one, posterior[:, :128])
    noise = (one - posterior[:, :128]) / posterior[:, 128:].exp()  # ε = (z − μ) / σ
    assert 0.8 < float(noise.std()) < 1.2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_encoder_equals_offline(model, speech_48k, seed):
    offline = model.encode(speech_48k, 48000)
    generator = torch.Generator().manual_seed(seed)
    stream = model.streaming_encoder()
    pieces, fed = [], 0
    for n in _chunks(speech_48k.shape[-1], generator, largest=4000):
        pieces.append(stream.feed(speech_48k[..., fed: fed + n]))
        fed += n
        # Latent t is out as soon as audio up to sample (t + 2)·hop exists, and not before.
        emitted = sum(p.shape[-1] for p in pieces)
        assert emitted == max(0, math.ceil(fed / HOP) - 2)
    tail = stream.flush()
    assert tail.shape[-1] == min(2, offline.shape[-1])
    _assert_close(torch.cat(pieces + [tail], dim=-1), offline)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_decoder_equals_offline(model, seed):
    generator = torch.Generator().manual_seed(100 + seed)
    latents = torch.randn(2, 128, 13, generator=generator)
    offline = model.decode(latents)
    stream = model.streaming_decoder()
    pieces, fed = [], 0
    for n in _chunks(latents.shape[-1], generator, largest=4):
        pieces.append(stream.feed(latents[..., fed: fed + n]))
        fed += n
        assert sum(p.shape[-1] for p in pieces) == max(0, fed - 2) * HOP
    pieces.append(stream.flush())
    _assert_close(torch.cat(pieces, dim=-1), offline)


def test_sampling_stream_with_generator_matches_offline_sampling(model, speech_48k):
    clip = speech_48k[..., : 5 * HOP]
    offline = model.encode(clip, 48000, sample=True, generator=torch.Generator().manual_seed(7))
    stream = model.streaming_encoder(sample=True, generator=torch.Generator().manual_seed(7))
    streamed = torch.cat([stream.feed(clip), stream.flush()], dim=-1)
    # Noise is drawn per emitted chunk: the same generator gives the same ε sequence frame by frame.
    _assert_close(streamed, offline)


def test_encoder_is_causal_up_to_its_lookahead(model, speech_48k):
    k = 8
    cut = (k + 2) * HOP  # latent k sees audio up to sample (k + 2)·hop exactly, and no further
    a = model.encode(speech_48k, 48000)
    for start, latent_k_changes in ((cut, True), (cut + 1, False)):
        changed = speech_48k.clone()
        changed[..., start:] += 0.5
        b = model.encode(changed, 48000)
        assert torch.equal(a[..., :k], b[..., :k])
        assert torch.equal(a[..., k], b[..., k]) is not latent_k_changes
        assert not torch.allclose(a[..., k + 1:], b[..., k + 1:], atol=1e-4)


def test_decoder_is_causal_up_to_its_lookahead(model):
    latents = torch.randn(1, 128, 10, generator=torch.Generator().manual_seed(1))
    changed = latents.clone()
    changed[..., 6] += 1.0
    a, b = model.decode(latents), model.decode(changed)
    start = (6 - 2) * HOP  # audio of latent j depends on latents up to j + 2
    torch.testing.assert_close(a[..., :start], b[..., :start], rtol=0, atol=1e-6)
    assert not torch.allclose(a[..., start: start + HOP], b[..., start: start + HOP], atol=1e-4)


def test_preset_parameter_counts_match_the_paper():
    with torch.device("meta"):
        base = HoliTok(PRESETS["holitok-base"])
    counts = base.parameter_counts()
    paper = {"encoder": 36e6, "bottleneck": 17e6, "decoder": 128e6, "total": 181e6}
    for part, published in paper.items():
        assert abs(counts[part] / published - 1) < 0.03, (part, counts[part])
    with torch.device("meta"):
        small = HoliTok(PRESETS["holitok-small"]).parameter_counts()["total"]
    tiny = HoliTok(PRESETS["holitok-tiny"]).parameter_counts()["total"]
    assert tiny < 1e6 and 1e6 < small < 10e6


def test_every_preset_keeps_the_rates():
    for name in PRESETS:
        c = get_preset(name)
        assert (c.sample_rate, c.hop_length, c.latent_rate, c.latent_dim) == (48000, HOP, 25.0, 128)
        assert c.encoder_lookahead == c.decoder_lookahead == 2


def test_checkpoint_round_trip(model, speech_48k, tmp_path):
    clip = speech_48k[..., : 4 * HOP]
    model.fit_latent_stats([model.encode(clip, 48000)])
    try:
        model.save_pretrained(tmp_path / "ckpt")
        loaded = HoliTok.from_pretrained(tmp_path / "ckpt")
        assert loaded.config == model.config
        assert torch.equal(loaded.latent_std, model.latent_std) and not torch.equal(loaded.latent_std, torch.ones(128))
        latents = model.encode(clip, 48000)
        assert torch.equal(loaded.encode(clip, 48000), latents)
        assert torch.equal(loaded.decode(latents), model.decode(latents))
        with pytest.raises(CheckpointError, match="expected 'sitok'"):
            from speechtok.models.sitok import SiTok

            SiTok.from_pretrained(tmp_path / "ckpt")
    finally:
        model.latent_mean.zero_()
        model.latent_std.fill_(1.0)


def test_latent_statistics_normalise(model):
    latents = torch.randn(3, 128, 20) * torch.linspace(0.5, 3, 128)[:, None] + 2.0
    fresh = HoliTok.from_preset("holitok-tiny")
    assert torch.equal(fresh.normalize_latents(latents), latents)  # identity until fitted
    fresh.fit_latent_stats([latents[:1], latents[1:]])
    normal = fresh.normalize_latents(latents)
    assert float(normal.mean((0, 2)).abs().max()) < 1e-4
    torch.testing.assert_close(normal.transpose(0, 1).reshape(128, -1).std(1, unbiased=False), torch.ones(128))
    torch.testing.assert_close(fresh.denormalize_latents(normal), latents)


@pytest.mark.parametrize("wav, fragment", [
    (torch.zeros(1, 2, 4800), "mono"),
    (torch.zeros(1, 1, 0), "empty"),
    (torch.zeros(2, 4800), r"expected shape \[B, 1, T\]"),
    (torch.full((1, 1, 4800), float("nan")), "NaN"),
])
def test_encode_rejects_bad_audio(model, wav, fragment):
    with pytest.raises(AudioError, match=fragment):
        model.encode(wav, 48000)


@pytest.mark.parametrize("latents, fragment", [
    (torch.zeros(1, 64, 5), "expected a float tensor"),
    (torch.zeros(1, 128, 0), "empty"),
    (torch.zeros(1, 128, 5, dtype=torch.long), "finite floats"),
])
def test_decode_rejects_bad_latents(model, latents, fragment):
    with pytest.raises(ConfigError, match=fragment):
        model.decode(latents)


def test_stream_misuse_is_a_one_line_error(model):
    stream = model.streaming_encoder()
    with pytest.raises(AudioError, match="nothing was fed"):
        stream.flush()
    stream.feed(torch.zeros(1, 1, 100))
    with pytest.raises(AudioError, match="batch size changed"):
        stream.feed(torch.zeros(2, 1, 100))
    stream.flush()
    with pytest.raises(ConfigError, match="already flushed"):
        stream.feed(torch.zeros(1, 1, 100))


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown HoliTok preset"):
        HoliTok.from_preset("holitok-huge")
    with pytest.raises(ConfigError, match="same product"):
        HoliTokConfig(upsample_rates=(10, 6, 4, 2, 2, 4))
    with pytest.raises(ConfigError, match="unknown key"):
        HoliTok.from_preset("holitok-tiny", latent_size=64)


def test_initialisation_passes_the_input_through_encoder_and_decoder():
    """With BigVGAN's N(0, 0.01²) init the output ignored the input (stage I then learned a constant)."""
    torch.manual_seed(0)
    m = HoliTok.from_preset("holitok-tiny")
    wav = 0.1 * torch.randn(1, 1, 24000)
    with torch.no_grad():
        out, silence = (m(x, variational=False)[0] for x in (wav, torch.zeros_like(wav)))
        latents = m.encoder(wav)
    assert latents.std() > 1e-2  # the encoder keeps the scale within ~10x
    assert (out - silence).std() > 0.5 * out.std() > 0  # the output is driven by the input, not by biases
