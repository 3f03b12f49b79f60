"""The real judges on real speech: Whisper-base WER, Resemblyzer similarity, DNSMOS, weight pinning."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from speech_clips import CLIP_TEXT, OTHER_SPEAKER, SAME_SPEAKER, add_noise, low_pass
from speechtok.audio import load_audio, resample
from speechtok.eval.codecs import CODECS
from speechtok.eval.errors import JudgeError
from speechtok.eval.judges.asr import WHISPER_BASE_SHA256, assemble_whisper_base, pooled_wer, score_text


def test_score_text_normalises_before_counting():
    exact = score_text(CLIP_TEXT, "But in less than 5 minutes, the staircase groaned beneath an extraordinary weight.")
    assert (exact.word_errors, exact.words, exact.wer) == (0, 13, 0.0)
    one_sub = score_text("the cat sat", "the dog sat")
    assert (one_sub.word_errors, one_sub.words) == (1, 3)
    assert one_sub.wer == pytest.approx(100 / 3)
    assert one_sub.char_errors == 3  # c→d, a→o, t→g
    assert score_text("  ", "anything") is None
    trailing = score_text("But in less than 5 minutes, the staircase...", "but in less than 5 minutes the staircase")
    assert (trailing.word_errors, trailing.words) == (0, 8)  # the ellipsis is no word
    assert score_text("...", "anything") is None


def test_pooled_wer_weighs_every_word_and_skips_empty_references():
    # 1 error in 3 words + 0 in 1 word: pooled 25 %, not the 16.7 % mean of the two sentences' WERs
    assert pooled_wer([("the cat sat", "the dog sat"), ("hello", "hello"), ("", "noise")]) == 25.0
    assert pooled_wer([]) == 0.0


def test_whisper_identity_is_at_the_floor_and_degradations_are_worse(asr_judge, clip):
    """The clean clip is transcribed (almost) perfectly; noise, a low-pass and Codec2 450 break it."""
    wav, rate = clip
    floor = score_text(CLIP_TEXT, asr_judge.transcribe(resample(wav, rate, 16000)))
    assert floor.wer <= 10.0
    codec = CODECS["codec2-450"].run(wav, rate)
    degradations = {
        "noise 0 dB": add_noise(wav, 0.0),
        "low-pass 1 kHz": low_pass(wav, rate, 1000.0),
        "codec2-450": resample(codec.wav, codec.sample_rate, rate),
    }
    for name, deg in degradations.items():
        score = score_text(CLIP_TEXT, asr_judge.transcribe(resample(deg, rate, 16000)))
        assert score.wer > floor.wer + 30, name
        assert score.cer > floor.cer + 10, name
    assert asr_judge.info.sha256 == WHISPER_BASE_SHA256


def test_fit_window_transcribes_like_the_30_second_window(asr_judge, clip):
    """The fast clip-length encoder window gives the standard path's transcript on real speech,
    short clips and clips too long for one window included."""
    from speechtok.eval.judges.asr import whisper_base_30s

    wav = resample(*clip, 16000)
    reference = whisper_base_30s()
    assert "clip+2s" in asr_judge.info.name and "30 s" in reference.info.name
    for audio in (wav, wav[: len(wav) // 2], np.concatenate([wav] * 8)):  # 4 s, 2 s, 32 s
        fast, standard = asr_judge.transcribe(audio), reference.transcribe(audio)
        assert score_text(standard, fast).wer <= 5.0


def test_whisper_weights_are_pinned(tmp_path):
    folder = assemble_whisper_base(tmp_path / "whisper")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    with open(folder / "model.bin", "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(JudgeError, match="does not match the pinned"):
        assemble_whisper_base(folder)
    shutil.rmtree(folder)


def test_speaker_similarity_orders_identity_same_speaker_other_speaker(speaker_judge, clip, degraded):
    wav, rate = clip
    ref = resample(wav, rate, 16000)
    same, _ = load_audio(SAME_SPEAKER, 16000)
    other, _ = load_audio(OTHER_SPEAKER, 16000)
    codec, codec_rate = degraded["codec2"]
    identity = speaker_judge.similarity(ref, ref)
    assert identity == pytest.approx(1.0, abs=1e-5)
    s_same, s_other = speaker_judge.similarity(ref, same), speaker_judge.similarity(ref, other)
    s_codec = speaker_judge.similarity(ref, resample(codec, codec_rate, 16000))
    assert s_same > s_other + 0.15
    assert s_codec < identity - 0.05


def test_dnsmos_prefers_clean_speech(clip):
    from speechtok.eval.judges.mos import load_mos_judge

    wav, rate = clip
    judge = load_mos_judge()
    clean = judge.score(resample(wav, rate, 16000))
    noisy = judge.score(resample(add_noise(wav, 0.0), rate, 16000))
    assert set(clean) == {"dnsmos", "dnsmos_sig", "dnsmos_bak"}
    assert 2.5 < clean["dnsmos"] <= 5.0
    assert noisy["dnsmos"] < clean["dnsmos"] - 0.5
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"]
    assert np.isfinite(list(clean.values())).all()
