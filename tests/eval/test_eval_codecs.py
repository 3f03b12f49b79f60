"""Classical codecs through the real programs: they decode speech at about their nominal rate."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from speechtok.eval.codecs import CODECS
from speechtok.eval.errors import CodecError

#: On-disk kbit/s expected on a 4 s clip: Codec2 pads 700C/450 frames to whole bytes; Opus and
#: Speex carry Ogg headers (a large share of a short file); AMR stores one header byte per frame.
EXPECTED_DISK_KBPS = {
    "codec2-3200": (3.1, 3.3), "codec2-1600": (1.55, 1.65), "codec2-1200": (1.15, 1.25),
    "codec2-700c": (0.75, 0.85), "codec2-450": (0.55, 0.65), "opus-6k": (6.0, 9.0),
    "speex-q0": (2.1, 3.6), "amr-nb-4.75": (5.1, 5.4),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_DISK_KBPS))
def test_codec_round_trip_on_real_speech(clip, name):
    wav, rate = clip
    codec = CODECS[name]
    out = codec.run(wav, rate)
    seconds = wav.size / rate
    assert out.sample_rate in (8000, 16000)
    assert abs(out.wav.size / out.sample_rate - seconds) < 0.1
    assert np.isfinite(out.wav).all() and np.abs(out.wav).max() > 0.05
    low, high = EXPECTED_DISK_KBPS[name]
    assert low <= out.encoded_bytes * 8 / seconds / 1000 <= high
    assert codec.nominal_kbps <= high


def test_missing_program_is_a_one_line_error(clip):
    broken = dataclasses.replace(CODECS["codec2-3200"], requires=("c2enc-not-installed",))
    with pytest.raises(CodecError, match=r"codec2-3200: c2enc-not-installed not installed"):
        broken.run(*clip)
