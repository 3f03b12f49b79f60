"""The tiled code search (quantization/vq.py) must pick exactly the codes of the plain formula."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechtok.audio import load_audio
from speechtok.models.sitok import SiTok
from speechtok.quantization import EMAVectorQuantizer

DATA = Path(__file__).parent / "data"


def untiled_nearest(codebook: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The search as first written: one ``argmin`` over ``‖c‖² − 2·z·c`` for all codes at once."""
    codebook = codebook.float()
    return ((codebook * codebook).sum(-1)[None] - 2 * z.float() @ codebook.t()).argmin(-1)


@pytest.fixture(scope="module")
def default_model() -> SiTok:
    return SiTok.from_pretrained("sitok-default").eval()


def test_codes_identical_to_untiled_search_on_real_speech(default_model):
    """Every clip in tests/data (about 18 s of speech, 227 tokens), the vectors the bundled encoder really feeds
    its 65,536-code VQ: the codes, and the encoded codes of a padded batch, match the plain search."""
    model, vq = default_model, default_model.quantizer
    clips = sorted(DATA.glob("*.flac"))
    assert len(clips) >= 8
    wavs = [torch.from_numpy(load_audio(path, model.sample_rate)[0]) for path in clips]
    vectors = []
    with torch.inference_mode():
        for wav in wavs:
            batch, lengths = model._prepare(wav[None, None], model.sample_rate, None)
            frames = (lengths + model.config.mel.hop_length - 1) // model.config.mel.hop_length
            stacked, token_mask, _ = model.stack(model.mel(batch), frames)
            vectors.append(model.vq_in(model.encoder(model.encoder_in(stacked), token_mask))[0])
        z = torch.cat(vectors)
        assert z.shape[0] > 200
        expected = untiled_nearest(vq.codebook, z)
        assert torch.equal(vq.nearest(z), expected)
        lengths = torch.tensor([len(w) for w in wavs])
        padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)[:, None]
        codes, token_lengths = model.encode(padded, model.sample_rate, lengths, return_lengths=True)
    got = torch.cat([codes[i, 0, :n] for i, n in enumerate(token_lengths.tolist())])
    assert torch.equal(got, expected)


def test_ties_go_to_the_first_code_across_tiles_and_blocks():
    vq = EMAVectorQuantizer(65536, 4).eval()
    vq.codebook.zero_()
    vq.codebook[70:] = 5.0  # everything from code 70 on is far away
    z = torch.randn(130, 4) * 0.01
    assert torch.equal(vq.nearest(z), torch.zeros(130, dtype=torch.long))  # codes 0..69 tie: 0 wins
    vq.codebook[:] = 5.0
    vq.codebook[[4097, 9000, 65535]] = 0.0  # ties in different tiles
    assert torch.equal(vq.nearest(z), torch.full((130,), 4097))
    small = EMAVectorQuantizer(12, 4).eval()  # codebooks narrower than a tile take the plain path
    assert torch.equal(small.nearest(z), untiled_nearest(small.codebook, z))


def test_cached_code_norms_follow_every_codebook_change():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(8192, 8, dead_threshold=0.5)
    z = torch.randn(300, 8)
    vq.eval()
    assert torch.equal(vq.nearest(z), untiled_nearest(vq.codebook, z))
    vq.train()
    vq(z[None] * 3)  # EMA update and dead-code restarts, in place
    assert torch.equal(vq.nearest(z), untiled_nearest(vq.codebook, z))
    other = EMAVectorQuantizer(8192, 8)
    vq.load_state_dict(other.state_dict())
    assert torch.equal(vq.nearest(z), untiled_nearest(other.codebook, z))
    with torch.no_grad():
        vq.codebook.mul_(-1)
    assert torch.equal(vq.nearest(z), untiled_nearest(vq.codebook, z))
    vq.double()  # a new tensor
    assert torch.equal(vq.nearest(z), untiled_nearest(vq.codebook, z))
