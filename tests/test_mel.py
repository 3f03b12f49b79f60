from __future__ import annotations

import math

import torch

from speechtok.mel import MelConfig, MelSpectrogram


def test_rate_shape_and_frame_count(speech):
    mel = MelSpectrogram()
    wav = torch.randn(3, 1, 24000 * 2 + 17) * 0.1
    out = mel(wav)
    assert mel.cfg.frame_rate == 50
    assert out.shape == (3, 128, math.ceil((24000 * 2 + 17) / 480))


def test_causal_and_padding_invariant():
    mel = MelSpectrogram()
    wav = torch.randn(1, 1, 9000) * 0.1
    alone = mel(wav)
    padded = mel(torch.cat([wav, torch.randn(1, 1, 5000)], dim=-1))
    # Frames up to the clip's end see only the clip: appended audio (or padding) changes nothing.
    assert torch.equal(alone[..., : 9000 // 480], padded[..., : 9000 // 480])


def test_normalisation_of_real_speech(speech):
    from speechtok.audio import resample

    wav, rate = speech
    mel = MelSpectrogram()
    out = mel(torch.from_numpy(resample(wav, rate, 24000))[None, None])
    silence = MelSpectrogram().silence_value
    assert out.min() >= silence - 1e-4
    # Speech occupies the low bins (16 kHz source: nothing above 8 kHz).
    assert out[0, :60].mean() > out[0, 110:].mean() + 1.0


def test_filterbank_covers_range():
    from speechtok.mel import mel_filterbank

    fb = mel_filterbank(MelConfig())
    assert fb.shape == (128, 961)
    assert (fb.sum(1) > 0).all()  # no empty filter
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] > 900  # ordered, reaching f_max = Nyquist
