from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from speechtok.errors import CheckpointError, ConfigError
from speechtok.models.sitok import SiTok
from speechtok.models.sitok_config import PRESETS


def test_token_rate_and_bitrate_on_real_speech(tiny_model, speech):
    wav, rate = speech
    codes = tiny_model.encode(torch.from_numpy(wav)[None, None], rate)
    seconds = len(wav) / rate
    assert codes.dtype == torch.long and codes.shape == (1, 1, math.ceil(seconds * 12.5))
    assert tiny_model.token_rate == 12.5
    assert tiny_model.bits_per_token == 16 and tiny_model.codebook_size == 65536
    assert tiny_model.bitrate == 200.0
    assert int(codes.max()) < 65536
    measured = codes.shape[-1] * math.log2(tiny_model.codebook_size) / seconds
    assert abs(measured - 200) < 200 / codes.shape[-1] * 1.01  # within one token of rounding


def test_bsq_variant_is_also_16_bits(speech):
    model = SiTok.from_preset("sitok-tiny", quantizer="bsq").eval()
    wav, rate = speech
    codes = model.encode(torch.from_numpy(wav)[None, None], rate)
    assert model.bits_per_token == 16 and model.bitrate == 200.0 and int(codes.max()) < 65536


def test_resampling_inside_encode(tiny_model, speech):
    from speechtok.audio import resample

    wav, rate = speech
    at_native = tiny_model.encode(torch.from_numpy(wav)[None, None], rate)
    at_24k = tiny_model.encode(torch.from_numpy(resample(wav, rate, 24000))[None, None], 24000)
    assert at_native.shape == at_24k.shape
    assert (at_native == at_24k).float().mean() > 0.9  # the same audio, resampled once either way


def test_batch_with_padding_equals_items_alone(tiny_model, speech):
    wav, rate = speech
    a = torch.from_numpy(wav)[None, None]
    b = a[..., : len(wav) // 3] * 0.5
    batch = torch.zeros(2, 1, a.shape[-1])
    batch[0] = a[0]
    batch[1, :, : b.shape[-1]] = b[0]
    codes = tiny_model.encode(batch, rate, lengths=torch.tensor([a.shape[-1], b.shape[-1]]))
    alone_a = tiny_model.encode(a, rate)
    alone_b = tiny_model.encode(b, rate)
    assert torch.equal(codes[0], alone_a[0])
    n_b = tiny_model.num_tokens(b.shape[-1], rate)
    assert n_b == alone_b.shape[-1]
    assert torch.equal(codes[1, :, :n_b], alone_b[0])
    assert (codes[1, :, n_b:] == SiTok.PAD_CODE).all()  # defined padding, not codes of silence
    same, counts = tiny_model.encode(batch, rate, lengths=torch.tensor([a.shape[-1], b.shape[-1]]),
                                     return_lengths=True)
    assert torch.equal(same, codes) and counts.tolist() == [alone_a.shape[-1], n_b]
    # The padded batch decodes: item 1 is silent past its own tokens.
    wav = tiny_model.decode(codes, steps=1, vocoder="griffin-lim")
    assert wav[1, 0, n_b * tiny_model.samples_per_token:].abs().max() == 0
    assert wav[1, 0, : n_b * tiny_model.samples_per_token].abs().max() > 0


def test_decode_shapes_cfg_and_explicit_vocoder(tiny_model):
    codes = torch.randint(0, 65536, (2, 1, 5))
    mel = tiny_model.decode_mel(codes, steps=2, cfg=2.0, generator=torch.Generator().manual_seed(0))
    assert mel.shape == (2, 128, 20)
    again = tiny_model.decode_mel(codes, steps=2, cfg=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mel, again)
    unguided = tiny_model.decode_mel(codes, steps=2, cfg=1.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(mel, unguided)
    wav = tiny_model.decode(codes, steps=2, vocoder="griffin-lim")
    assert wav.shape == (2, 1, 5 * 1920)
    with pytest.raises(CheckpointError, match="griffin-lim"):
        tiny_model.decode(codes, steps=2)  # never a silent fallback


@pytest.mark.parametrize("codes, fragment", [
    (torch.zeros(1, 5, dtype=torch.long), "expected a LongTensor"),
    (torch.full((1, 1, 3), 70000), "values must be integers"),
    (torch.zeros(1, 1, 0, dtype=torch.long), "empty"),
    (torch.tensor([[[-1, 3, 4]]]), "may only pad the end"),
    (torch.tensor([[[-1, -1]]]), "may only pad the end"),
])
def test_decode_rejects_bad_codes(tiny_model, codes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        tiny_model.decode_mel(codes)


@pytest.mark.parametrize("cfg", [float("nan"), float("inf"), -1.0])
def test_decode_rejects_guidance_that_would_give_nan_audio(tiny_model, cfg):
    with pytest.raises(ConfigError, match="cfg must be a finite number"):
        tiny_model.decode_mel(torch.zeros(1, 1, 3, dtype=torch.long), cfg=cfg)
    # a checkpoint's default guidance is refused when the config is built, not at the first decode
    with pytest.raises(ConfigError, match="cfg_scale must be a finite number"):
        dataclasses.replace(tiny_model.config, cfg_scale=cfg)


def test_decode_is_deterministic_without_a_generator(tiny_model):
    codes = torch.randint(0, 65536, (1, 1, 4), generator=torch.Generator().manual_seed(1))
    first = tiny_model.decode(codes, steps=2, vocoder="griffin-lim")
    torch.randn(10)  # the global RNG moves; decoding must not depend on it
    assert torch.equal(first, tiny_model.decode(codes, steps=2, vocoder="griffin-lim"))
    other = tiny_model.decode(codes, steps=2, vocoder="griffin-lim", generator=torch.Generator().manual_seed(5))
    assert not torch.equal(first, other)


def test_temperature_scales_the_starting_noise(tiny_model):
    """At 0 every noise draw decodes to the same mel (one fixed path); the checkpoint's
    ``sample_temperature`` is the default that an explicit ``temperature`` overrides."""
    codes = torch.randint(0, 65536, (1, 1, 4), generator=torch.Generator().manual_seed(1))

    def mel(seed: int, **kwargs) -> torch.Tensor:
        return tiny_model.decode_mel(codes, steps=2, generator=torch.Generator().manual_seed(seed), **kwargs)
    assert torch.equal(mel(0, temperature=0.0), mel(5, temperature=0.0))
    assert not torch.equal(mel(0), mel(5)) and not torch.equal(mel(0), mel(0, temperature=0.5))
    assert torch.equal(mel(0), mel(0, temperature=1.0))
    config = tiny_model.config
    try:
        tiny_model.config = dataclasses.replace(config, sample_temperature=0.5)
        assert torch.equal(mel(0), mel(0, temperature=0.5)) and not torch.equal(mel(0), mel(0, temperature=1.0))
    finally:
        tiny_model.config = config
    for bad in (float("nan"), -0.1):
        with pytest.raises(ConfigError, match="temperature must be a finite number"):
            mel(0, temperature=bad)
        with pytest.raises(ConfigError, match="sample_temperature"):
            dataclasses.replace(config, sample_temperature=bad)


def test_paper_presets_match_published_sizes_on_meta_device():
    published = {"sitok-s": 0.63e9, "sitok-b": 0.88e9, "sitok-l": 1.12e9, "sitok-xl": 1.61e9}
    for name, target in published.items():
        started = time.perf_counter()
        with torch.device("meta"):
            model = SiTok(PRESETS[name])
        assert time.perf_counter() - started < 10
        n = sum(p.numel() for p in model.parameters())
        assert abs(n - target) / target < 0.05, (name, n)
        assert model.config.dim == 1536 and model.config.mlp_dim == 4096 and model.config.heads == 16


def test_losses_fall_when_training_on_real_speech(real_manifest):
    """A few dozen steps on six real clips: flow-matching and CTC losses must both fall."""
    from speechtok.data.dataset import DurationBatcher, MelDataset, collate
    from speechtok.data.manifest import read_manifest

    torch.manual_seed(0)
    model = SiTok.from_preset("sitok-tiny", token_drop=0.0)
    data = MelDataset(read_manifest(real_manifest), model.mel, model.vocabulary, max_seconds=20)
    batch = collate([data.get(i, 0) for i in DurationBatcher(data.durations(), 60).epoch(0)[0]],
                    model.mel.silence_value)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        out = model(batch.mel, batch.frame_lengths, batch.labels, batch.label_lengths)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append((out["flow"].item(), out["ctc"].item()))
    first = [sum(v) / 5 for v in zip(*history[:5])]
    last = [sum(v) / 5 for v in zip(*history[-5:])]
    assert last[0] < 0.85 * first[0], ("flow", first, last)
    assert last[1] < 0.7 * first[1], ("ctc", first, last)
