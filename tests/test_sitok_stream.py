"""Streaming SiTok encoding: any chunking of real speech gives exactly the codes of offline ``encode``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from speechtok.audio import load_audio, resample, resample_stream
from speechtok.errors import AudioError, ConfigError
from speechtok.models.sitok import SiTok
from speechtok.models.sitok_stream import SiTokEncoderStream

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def models() -> dict[str, SiTok]:
    torch.manual_seed(0)
    return {"sitok-default": SiTok.from_pretrained("sitok-default"), "sitok-tiny": SiTok.from_preset("sitok-tiny").eval()}


def _chunks(wav: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Random chunk sizes: a run of 1-sample chunks across token boundaries, empty chunks, sizes up
    to about two tokens, every tensor layout the stream accepts."""
    rng = np.random.default_rng(seed)
    sizes = [1] * 2500 + [0] + list(rng.integers(1, 6000, size=wav.numel() // 1000))
    out, start = [], 0
    for i, size in enumerate(sizes):
        piece = wav[start:start + int(size)]
        out.append((piece, piece[None], piece[None, None])[i % 3])
        start += int(size)
        if start >= wav.numel():
            break
    return out + [wav[start:]]


def _streamed(model: SiTok, chunks: list[torch.Tensor], sample_rate: int) -> torch.Tensor:
    return torch.cat(list(model.encode_stream(chunks, sample_rate)), dim=-1)


@pytest.mark.parametrize("name", ["sitok-default", "sitok-tiny"])
@pytest.mark.parametrize(("clip", "native_rate"), [("84-121123-0000.flac", True), ("allison-calling.flac", False)])
def test_any_chunking_gives_the_offline_codes(models, name, clip, native_rate):
    model = models[name]
    wav, rate = load_audio(TEST_DATA / clip)
    if not native_rate:  # the model rate: no resampler in the stream
        wav, rate = resample(wav, rate, model.sample_rate), model.sample_rate
    wav = torch.from_numpy(wav)
    offline = model.encode(wav[None, None], rate)
    assert offline.shape[-1] == model.num_tokens(wav.numel(), rate)
    assert torch.equal(_streamed(model, _chunks(wav, seed=len(clip)), rate), offline)
    assert torch.equal(_streamed(model, [torch.cat([wav, wav])[: wav.numel()]], rate), offline)  # one chunk


@pytest.mark.parametrize("samples", [1, 479, 480, 1920, 1921, 5 * 1920, 5 * 1920 + 7])
def test_clip_ends_pad_the_last_token_as_offline(models, samples):
    """Ends inside a frame, on a frame, on a token, just past one: the last partial token matches."""
    model = models["sitok-default"]
    wav, rate = load_audio(TEST_DATA / "84-121123-0000.flac", model.sample_rate)
    wav = torch.from_numpy(wav[8000:8000 + samples])
    stream = SiTokEncoderStream(model, rate)
    codes = torch.cat([stream.push(wav[: samples // 2]), stream.push(wav[samples // 2:]), stream.flush()], dim=-1)
    assert codes.shape == (1, 1, -(-samples // 1920))
    assert torch.equal(codes, model.encode(wav[None, None], rate))


def test_streams_hold_their_own_state(models):
    model = models["sitok-tiny"]
    wav, rate = load_audio(TEST_DATA / "1447-130550-0000.flac")
    a, b = torch.from_numpy(wav), torch.from_numpy(wav[::-1].copy())
    sa, sb = SiTokEncoderStream(model, rate), SiTokEncoderStream(model, rate)
    out_a, out_b = [], []
    for ca, cb in zip(a.split(5000), b.split(5000)):  # interleaved on one model
        out_a.append(sa.push(ca))
        out_b.append(sb.push(cb))
    out_a.append(sa.flush())
    out_b.append(sb.flush())
    assert torch.equal(torch.cat(out_a, -1), model.encode(a[None, None], rate))
    assert torch.equal(torch.cat(out_b, -1), model.encode(b[None, None], rate))


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_streaming_resampler_equals_the_offline_one(rate):
    rng = np.random.default_rng(rate)
    wav = (rng.standard_normal(rate // 3 + 11) * 0.1).astype(np.float32)
    stream = resample_stream(rate, 24000)
    sizes = np.minimum(rng.integers(1, 900, size=len(wav)).cumsum(), len(wav))
    pieces = [stream.resample_chunk(piece, last=False) for piece in np.split(wav, sizes)]
    pieces.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    assert np.array_equal(np.concatenate(pieces), resample(wav, rate, 24000))
    assert soxr.__version__  # soxr's stream is what makes other input rates exact


def test_bad_input_is_one_clear_error(models):
    model = models["sitok-tiny"]
    stream = SiTokEncoderStream(model, 24000)
    for bad, message in [(torch.zeros(2, 100), "mono chunk"), (torch.zeros(1, 2, 100), "mono chunk"),
                         (torch.full((10,), float("nan")), "NaN"), (np.zeros(10), "torch.Tensor")]:
        with pytest.raises(AudioError, match=message):
            stream.push(bad)
    with pytest.raises(AudioError, match="no samples"):
        stream.flush()
    with pytest.raises(ConfigError, match="already flushed"):
        stream.push(torch.zeros(10))
    with pytest.raises(AudioError, match="sample_rate"):
        SiTokEncoderStream(model, 0)
    with pytest.raises(ConfigError, match="training mode"):
        SiTokEncoderStream(SiTok.from_preset("sitok-tiny"), 24000)
