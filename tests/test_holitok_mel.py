"""HoliTok's mel front-end and mel decoder head (``encoder_frontend="mel"``, ``decoder_head="mel"``):
rates, causality, exact streaming (through the non-causal vocoder and the upsampler too), and
stage-1 training on real speech without discriminators."""
from __future__ import annotations

import math

import pytest
import torch

from speechtok.errors import ConfigError
from speechtok.models.holitok import HoliTok, MelDecoder, MelEncoder
from speechtok.models.holitok_config import HoliTokConfig, get_preset
from speechtok.modules.conv import StreamState
from speechtok.modules.upsample import Upsampler
from speechtok.train.summary import training_summary
from speechtok.vocoder.vocos import Vocos

from holitok_runs import train_stage_one

TINY_MEL = dict(decoder_head="mel", head_dim=32, head_layers=2, encoder_frontend="mel", frontend_dim=32,
                frontend_layers=2)
HOP = 1920


@pytest.fixture(scope="module")
def model() -> HoliTok:
    torch.manual_seed(0)
    return HoliTok(HoliTokConfig(name="holitok-tiny-mel", **TINY_MEL)).eval()


@pytest.fixture(scope="module")
def speech_48k(speech) -> torch.Tensor:
    """The first 0.7 s of the bundled clip at 48 kHz."""
    wav, rate = speech
    return HoliTok(HoliTokConfig())._prepare(torch.from_numpy(wav[: int(0.7 * rate)])[None, None], rate)


def _chunked(generator: torch.Generator, total: int, largest: int) -> list[slice]:
    pieces, start = [], 0
    while start < total:
        size = int(torch.randint(1, largest + 1, (1,), generator=generator))
        pieces.append(slice(start, start + size))
        start += size
    return pieces


def test_preset_keeps_the_rates_and_predicts_the_vocoders_mel() -> None:
    config = get_preset("holitok-small-mel")
    model = HoliTok(config)
    assert isinstance(model.decoder, MelDecoder) and isinstance(model.encoder, MelEncoder)
    assert (config.sample_rate, config.hop_length, config.latent_rate, config.latent_dim) == (48000, 1920, 25.0, 128)
    assert config.mel_frames_per_latent == 2 and model.vocoder.config.mel == config.mel
    assert model.parameter_counts()["decoder"] < 3_000_000


def test_bad_mel_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="whole number of mel frames"):
        HoliTokConfig(decoder_head="mel", downsample_rates=(2, 2, 2, 4, 6, 7), upsample_rates=(7, 6, 4, 2, 2, 2))
    with pytest.raises(ConfigError, match="encoder_frontend"):
        HoliTokConfig(encoder_frontend="wav2vec")
    with pytest.raises(ConfigError, match="encoder_mel"):
        HoliTokConfig(encoder_frontend="mel", encoder_mel=HoliTokConfig().encoder_mel.__class__(hop_length=700))
    with pytest.raises(ConfigError, match="only the mel decoder head"):
        HoliTok(HoliTokConfig()).vocoder


def test_mel_frontend_encoder_rate_causality_and_streaming(model: HoliTok, speech_48k) -> None:
    latents = model.encode(speech_48k, 48000)
    assert latents.shape[-1] == -(-speech_48k.shape[-1] // HOP)
    k = 8
    for start, latent_k_changes in (((k + 2) * HOP - 480, True), ((k + 2) * HOP + 1, False)):
        changed = speech_48k.clone()
        changed[..., start:] += 0.5
        after = model.encode(changed, 48000)
        assert torch.equal(latents[..., :k], after[..., :k])
        assert torch.equal(latents[..., k], after[..., k]) is not latent_k_changes
    generator = torch.Generator().manual_seed(6)
    for largest in (40, 3001):
        stream = model.streaming_encoder()
        pieces = [stream.feed(speech_48k[..., part]) for part in _chunked(generator, speech_48k.shape[-1], largest)]
        pieces.append(stream.flush())
        torch.testing.assert_close(torch.cat(pieces, dim=-1), latents, rtol=0, atol=1e-5)


def test_mel_rate_decode_rate_and_causality(model: HoliTok) -> None:
    latents = torch.randn(2, 128, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mel = model.synthesize(latents)
    assert mel.shape == (2, 128, 20)
    wav = model.decode(latents)
    assert wav.shape == (2, 1, 10 * 1920) and float(wav.abs().max()) <= 1.0
    changed = latents.clone()
    changed[..., 7:] += 1.0  # with the 2-frame look-ahead, mel frames before latent 5 keep
    with torch.no_grad():
        after = model.synthesize(changed)
    keep = 2 * (7 - model.config.decoder_lookahead)
    torch.testing.assert_close(after[..., :keep], mel[..., :keep])
    assert not torch.allclose(after[..., keep:], mel[..., keep:])


def test_streamed_decode_equals_offline(model: HoliTok) -> None:
    generator = torch.Generator().manual_seed(2)
    latents = torch.randn(2, 128, 31, generator=generator)
    for largest in (1, 4, 9):
        stream = model.streaming_decoder()
        pieces = [stream.feed(latents[..., part]) for part in _chunked(generator, latents.shape[-1], largest)]
        pieces.append(stream.flush())
        torch.testing.assert_close(torch.cat(pieces, dim=-1), model.decode(latents), rtol=0, atol=1e-5)


def test_vocoder_stream_equals_offline_and_waits_for_its_context() -> None:
    torch.manual_seed(3)
    vocoder = Vocos(Vocos.get_preset("vocos-tiny")).eval()
    mel = torch.randn(1, 128, 40)
    left, right = vocoder.context_frames()
    assert (left, right) == (3 * 3 + 2, 3 * 3 + 2)  # 3 centred convs of kernel 7, windows of 4 hops
    state = StreamState()
    first = vocoder.stream(mel[..., :right + 5], state)
    assert first.shape[-1] == 5 * vocoder.hop_length  # only frames with all their right context are out
    remaining = mel[..., right + 5:]
    rest = [vocoder.stream(remaining[..., part], state)
            for part in _chunked(torch.Generator().manual_seed(4), remaining.shape[-1], 6)]
    state.final = True
    rest.append(vocoder.stream(mel[..., :0], state))
    with torch.inference_mode():
        offline = vocoder(mel)
    torch.testing.assert_close(torch.cat([first, *rest], dim=-1), offline, rtol=0, atol=1e-5)


def test_upsampler_streams_exactly_and_keeps_a_tone() -> None:
    upsampler = Upsampler(2)
    t = torch.arange(2400) / 24000
    tone = torch.sin(2 * math.pi * 1000 * t)[None, None]
    out = upsampler(tone)
    assert out.shape == (1, 1, 4800)
    reference = torch.sin(2 * math.pi * 1000 * torch.arange(4800) / 48000)
    assert float((out[0, 0, 100:-100] - reference[100:-100]).abs().max()) < 2e-3
    state, pieces = StreamState(), []
    for part in _chunked(torch.Generator().manual_seed(5), 2400, 50):
        pieces.append(upsampler(tone[..., part], state))
    state.final = True
    pieces.append(upsampler(tone[..., :0], state))
    torch.testing.assert_close(torch.cat(pieces, dim=-1), out, rtol=0, atol=1e-6)


def test_stage_one_mel_loss_falls_on_real_speech(tmp_path, real_manifest) -> None:
    run, records = train_stage_one(
        tmp_path, real_manifest,
        "model:\n  decoder_head: mel\n  head_dim: 32\n  head_layers: 2\n"
        "  encoder_frontend: mel\n  frontend_dim: 32\n  frontend_layers: 2\n"
        "train:\n  min_seconds: 1.0\n  steps: 30\n  lr: 0.003\n  warmup_steps: 2\n  batch_seconds: 4.0\n  segment_seconds: 1.0\n"
        "  log_every: 1\n  checkpoint_every: 30\n  valid_every: 30\n")
    mel = [r["mel"] for r in records if "mel" in r]
    assert len(mel) >= 30 and all(math.isfinite(v) for v in mel)
    assert sum(mel[-5:]) / 5 < 0.7 * sum(mel[:5]) / 5  # the normalised-mel L1 falls on real speech
    assert not any(k.startswith("discriminator") for r in records for k in r)  # no GAN for the mel head
    data = training_summary(run / "checkpoints" / "step_0000030", "holitok")["train_data"]
    assert (data["utterances"], data["min_seconds"]) == (4, 1.0)  # the 0.7–0.96 s clips were left out
    reloaded = HoliTok.from_pretrained(str(run / "checkpoints" / "step_0000030"))
    assert isinstance(reloaded.decoder, MelDecoder)
    assert reloaded.decode(torch.zeros(1, 128, 3)).shape == (1, 1, 3 * 1920)


def test_bundled_holitok_default_reconstructs_the_sample_and_streams_exactly(speech) -> None:
    """The bundled default: rates, a reconstruction whose mel is close to the input's (trained weights,
    not a stub), and streaming encode and decode equal to offline on real speech."""
    from speechtok.bundled import bundled_names
    from speechtok.mel import MelSpectrogram
    from speechtok.waveform import resample_batch

    assert bundled_names("holitok") == ["holitok-default"]
    model = HoliTok.from_pretrained("holitok-default")
    assert isinstance(model.decoder, MelDecoder) and model.vocoder_source == "vocos-24k"
    wav, rate = speech
    x = torch.from_numpy(wav)[None, None]
    latents = model.encode(x, rate)
    assert latents.shape == (1, 128, math.ceil(len(wav) / rate * 25))
    out = model.reconstruct(x, rate)
    assert out.shape == (1, 1, math.ceil(len(wav) * 48000 / rate))
    mel = MelSpectrogram(model.config.mel)
    at_24k = [resample_batch(a, torch.tensor([a.shape[-1]]), r, 24000)[0] for a, r in ((x, rate), (out, 48000))]
    frames = min(mel(a).shape[-1] for a in at_24k)
    distance = float((mel(at_24k[0])[..., :frames] - mel(at_24k[1])[..., :frames]).abs().mean())
    assert distance < 0.3, distance  # normalised log-mel L1; random weights give ~1, the trained model ~0.15

    x48 = model._prepare(x, rate)
    generator = torch.Generator().manual_seed(7)
    stream = model.streaming_encoder()
    pieces = [stream.feed(x48[..., part]) for part in _chunked(generator, x48.shape[-1], 4000)] + [stream.flush()]
    torch.testing.assert_close(torch.cat(pieces, dim=-1), latents, rtol=0, atol=1e-4)
    stream = model.streaming_decoder()
    pieces = [stream.feed(latents[..., part]) for part in _chunked(generator, latents.shape[-1], 5)] + [stream.flush()]
    torch.testing.assert_close(torch.cat(pieces, dim=-1), model.decode(latents), rtol=0, atol=1e-4)
