"""Signal metrics and alignment on real speech: identity scores perfectly, degradations score worse."""
from __future__ import annotations

import numpy as np
import pytest

from speech_clips import add_noise
from speechtok.eval import metrics
from speechtok.eval.align import align
from speechtok.eval.codecs import CODECS
from speechtok.eval.tokens import codebook_stats, histogram

DEGRADATIONS = ("noise", "lowpass", "codec2")


def test_alignment_recovers_a_pure_delay_and_a_lead(clip):
    wav, rate = clip
    late = np.concatenate([np.zeros(320, np.float32), wav])  # 20 ms at 16 kHz
    assert align(wav, rate, late, rate).delay_ms == pytest.approx(20.0)
    early = wav[160:]
    pair = align(wav, rate, early, rate)
    assert pair.delay_ms == pytest.approx(-10.0)
    assert np.array_equal(pair.reference, pair.degraded)


def test_alignment_finds_codec2_700c_delay_that_raw_correlation_misses(clip):
    """700C keeps no waveform phase: an unaligned or sample-correlated pair loses ~0.25 STOI."""
    wav, rate = clip
    out = CODECS["codec2-700c"].run(wav, rate)
    aligned = align(wav, rate, out.wav, out.sample_rate)
    unaligned = align(wav, rate, out.wav, out.sample_rate, max_lag_seconds=0.0)
    assert 20 <= aligned.delay_ms <= 40
    assert metrics.stoi(aligned) > metrics.stoi(unaligned) + 0.1
    assert metrics.stoi(aligned) > 0.6


def test_identity_is_perfect(clip):
    wav, rate = clip
    pair = align(wav, rate, wav, rate)
    assert metrics.stoi(pair) == pytest.approx(1.0, abs=1e-6)
    assert metrics.stoi(pair, extended=True) == pytest.approx(1.0, abs=1e-6)
    assert metrics.pesq(pair, "wb") == pytest.approx(4.64, abs=0.01)
    assert metrics.pesq(pair, "nb") > 4.4
    assert metrics.mel_distance(pair) == 0.0
    assert metrics.mcd(pair) == 0.0


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degradations_score_worse(clip, degraded, kind):
    wav, rate = clip
    deg, deg_rate = degraded[kind]
    pair = align(wav, rate, deg, deg_rate)
    assert metrics.stoi(pair) < 0.97
    assert metrics.stoi(pair, extended=True) < 0.93
    assert metrics.pesq(pair, "wb") < 3.5  # identity: 4.64
    assert metrics.pesq(pair, "nb") < 4.35  # identity: 4.55
    assert metrics.mel_distance(pair) > 0.2
    assert metrics.mcd(pair) > 1.5


def test_more_noise_scores_worse_on_every_metric(clip):
    wav, rate = clip
    mild, harsh = (align(wav, rate, add_noise(wav, snr), rate) for snr in (20.0, 0.0))
    assert metrics.stoi(mild) > metrics.stoi(harsh)
    assert metrics.pesq(mild, "wb") > metrics.pesq(harsh, "wb")
    assert metrics.mel_distance(mild) < metrics.mel_distance(harsh)
    assert metrics.mcd(mild) < metrics.mcd(harsh)


def test_codebook_stats_are_exact():
    uniform = codebook_stats([histogram([0, 1, 2, 3]), histogram([0, 1, 2, 3])], codebook_size=8)
    assert (uniform.tokens, uniform.used, uniform.usage) == (8, 4, 0.5)
    assert uniform.entropy_bits == pytest.approx(2.0)
    assert uniform.entropy_fraction == pytest.approx(2.0 / 3.0)
    collapsed = codebook_stats([histogram([5] * 10)], codebook_size=8)
    assert (collapsed.used, collapsed.entropy_bits) == (1, 0.0)
