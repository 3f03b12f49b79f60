"""The offline data engine (issue 13): evaluation sentences stay out, builds are seeded and resume
without redoing work, the Moonshine gate drops speech that does not say its text, augmentation
keeps the words, and bad command lines are one-line errors. Seconds of audio from fast voices."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechtok.cli import main
from speechtok.data.engine_config import EngineConfig, SourceConfig
from speechtok.data.texts import Exclusion, normalize, read_sentences

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"needs the development corpus {SHARED}")
ANY_TEXT = "The quick brown fox jumps over the lazy dog."


def tiny_config(seed: int = 0, hibari_hours: float = 0.002) -> EngineConfig:
    return EngineConfig(seed=seed, sources=[SourceConfig("hibari", "hibari", hours=hibari_hours),
                                            SourceConfig("espeak", "espeak", hours=0.001)])


@pytest.fixture(scope="module")
def moonshine():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("moonshine_cpp")
    pytest.importorskip("moonshine_onnx")
    pytest.importorskip("jiwer")
    pytest.importorskip("whisper_normalizer")
    from speechtok.data.moonshine import Moonshine

    return Moonshine()


@pytest.fixture(scope="module")
def hibari_speech():
    pytest.importorskip("hibari")
    from speechtok.data.voices import Voice, synthesize

    return synthesize(ANY_TEXT, Voice("hibari", "heart"), 1.0, seed=0)


def test_normalize_makes_case_and_punctuation_irrelevant():
    assert normalize("Printing, in the ONLY sense -- with") == normalize("printing in the only sense with")
    exclusion = Exclusion(frozenset({"LJ001-0003"}), frozenset({normalize("Hello, world.")}))
    assert exclusion.excludes("LJ001-0003", "anything") and exclusion.excludes("x", "hello world")
    assert not exclusion.excludes("x", "hello there")


@needs_shared
def test_evaluation_sentences_and_speakers_are_excluded():
    from speechtok.data.engine import make_plan
    from speechtok.data.manifest import read_manifest

    plan = make_plan(tiny_config())
    dev = read_manifest(REPO / "data" / "splits" / "dev.tsv")
    eval_ids = {r.path.stem for r in dev} | {r.path.stem for r in read_manifest(SHARED / "ljspeech_32utt" / "manifest.tsv")}
    lj = {s.id: s.text for s in read_sentences(SHARED / "texts" / "ljspeech_sentences.tsv")}
    forbidden = {normalize(r.transcript) for r in dev if r.transcript}
    forbidden |= {normalize(lj[i]) for i in eval_ids if i in lj}
    assert len(forbidden) > 40  # the dev transcripts and all 32 LJ evaluation sentences
    heldout = read_sentences(REPO / "data" / "splits" / "tts_heldout.tsv")
    assert len(heldout) == 50 and all(lj[s.id] == s.text for s in heldout)
    forbidden |= {normalize(s.text) for s in heldout}  # the TTS judgement's sentences
    pool = {normalize(s) for s in plan.sentences}
    assert len(pool) > 12000 and not pool & forbidden
    dctts = [r for r in plan.real if r.speaker == "dctts_reader"]
    assert dctts and not {normalize(r.transcript) for r in plan.real if r.transcript} & forbidden
    assert len(dctts) < 141  # its readings of evaluation sentences are dropped
    assert not {r.speaker for r in plan.real} & {r.speaker for r in dev}


def test_a_training_summary_names_a_corpus_by_its_sources_not_its_shard_folders(tmp_path):
    """`speechtok info` says what speech a model heard: a corpus file counts for its data-engine source
    (``audio/SOURCE/NNN/KEY.flac``), a dataset file for its folder."""
    from speechtok.data.engine_config import corpus_path
    from speechtok.data.manifest import Utterance, write_manifest
    from speechtok.train.summary import data_summary

    files = [f"{corpus_path('kokoro', 1234)}/a.flac", f"{corpus_path('real_aug', 5)}/b.flac",
             f"{corpus_path('kokoro', 7)}/c.flac", "librispeech_dev_clean_spk84/d.flac"]
    manifest = tmp_path / "corpus" / "manifest.tsv"
    manifest.parent.mkdir()
    write_manifest(manifest, [Utterance(manifest.parent / f, 2.0, "s", "words") for f in files])
    summary = data_summary(str(manifest))
    assert summary["sources"] == ["kokoro", "librispeech_dev_clean_spk84", "real_aug"]
    assert summary["hours"] == round(8 / 3600, 3) and summary["utterances"] == 4


@needs_shared
def test_augmented_real_speech_gets_a_new_profile_each_pass():
    from speechtok.data.engine import make_plan, plan_item

    source = SourceConfig("real_aug", "real", hours=1.0, augment=4, min_seconds=1.0)
    plan = make_plan(EngineConfig(sources=[source]))
    pool = plan.augment_pools["real_aug"]
    assert pool and min(u.seconds for u in pool) >= 1.0
    assert sum(u.path.parent.name == "fsdd_digits_6spk_8k" for u in pool) < 0.05 * len(pool)  # digits left out
    passes = [plan_item(plan, source, 7 + k * len(pool)) for k in range(4)]
    assert len({p.original for p in passes}) == 1 and len({p.speaker for p in passes}) == 4
    assert plan_item(plan, source, 7) == passes[0]  # a pure function of (seed, source, index)


@needs_shared
def test_build_is_seeded_and_resumes_without_redoing_work(tmp_path, monkeypatch, moonshine):
    pytest.importorskip("hibari")
    from speechtok.data import engine

    calls = []
    run_item = engine.run_item
    monkeypatch.setattr(engine, "run_item", lambda item, *a: calls.append(item.key) or run_item(item, *a))

    engine.build(tiny_config(), tmp_path / "a")
    full = (tmp_path / "a" / "manifest.tsv").read_text()
    first_calls = len(calls)
    assert "hibari-heart" in full and "espeak-" in full

    calls.clear()  # an interrupted run: half the hibari hours, a torn journal line, then the full rerun
    engine.build(tiny_config(hibari_hours=0.001), tmp_path / "b")
    with open(tmp_path / "b" / "journal.jsonl", "a") as handle:
        handle.write('{"key": "hibari-s0-0000')
    stray = tmp_path / "b" / "audio" / "hibari" / "000" / ".hibari-s0-000009.flac.x1y2.tmp.flac"
    stray.write_bytes(b"half a file")
    done_before = len(calls)
    calls.clear()
    engine.build(tiny_config(), tmp_path / "b")
    assert (tmp_path / "b" / "manifest.tsv").read_text() == full  # same files, same order, same texts
    assert not stray.exists()
    assert len(calls) + done_before == first_calls  # nothing judged twice
    assert not set(calls) & {json.loads(line)["key"] for line in
                             (tmp_path / "b" / "journal.jsonl").read_text().splitlines()[:done_before]}

    calls.clear()  # a finished corpus: a rerun does nothing but rewrite manifest and report
    engine.build(tiny_config(), tmp_path / "b")
    assert calls == []
    report = (tmp_path / "b" / "report.md").read_text()
    assert "| hibari | hibari |" in report and "Apache-2.0" in report and "pass rate" in report


@needs_shared
def test_manifest_does_not_depend_on_the_number_of_workers(tmp_path, moonshine):
    from speechtok.data import engine

    config = EngineConfig(sources=[SourceConfig("espeak", "espeak", hours=0.002)])
    engine.build(config, tmp_path / "one")
    engine.build(config, tmp_path / "two", workers=2)
    assert (tmp_path / "one" / "manifest.tsv").read_text() == (tmp_path / "two" / "manifest.tsv").read_text()


@needs_shared
def test_gate_drops_speech_that_does_not_say_its_text(tmp_path, moonshine):
    from speechtok.data.engine import Item, run_item

    clip = SHARED / "dctts_lj_reader_44k" / "LJ001-0035.flac"
    garbled = Item("x", "real_aug", 0, "audio/x.flac", 0, ANY_TEXT, "dctts_reader", None, str(clip), 1.0, None,
                   gated=True)
    record = run_item(garbled, str(tmp_path), 0.2)
    assert not record["kept"] and record["wer"] > 0.5 and not (tmp_path / "audio" / "x.flac").exists()


def test_augmentation_keeps_the_words(moonshine, hibari_speech):
    pytest.importorskip("pyworld")
    pytest.importorskip("scipy")
    from speechtok.data.augment import augment, draw_profiles
    from speechtok.data.moonshine import word_error_rate

    wav, rate = hibari_speech
    low = min(draw_profiles(8, seed=0), key=lambda p: p.pitch)  # the hardest: a much lower voice
    out, out_rate = augment(wav, rate, low, speed=1.15, seed=0)
    assert out_rate == rate and abs(out.size / wav.size - 1 / 1.15) < 0.03
    assert word_error_rate(ANY_TEXT, moonshine.transcribe(out, out_rate)) <= 0.2


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers"),
    (["--hours", "nosuch=1"], "no source named 'nosuch'"),
    (["--hours", "hibari=lots"], "NAME=HOURS"),
    (["--preset", "huge"], "unknown data-engine preset"),
])
def test_bad_synth_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--preset", "smoke", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "c").exists()


def test_a_bad_config_and_a_missing_corpus_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: smoke\ngate_wre: 0.3\n")
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--config", str(bad)]) == 2
    assert "unknown key(s) gate_wre" in capsys.readouterr().err
    assert main(["data", "report", str(tmp_path / "nothing")]) == 2
    assert "not a corpus folder" in capsys.readouterr().err


@needs_shared  # the smoke preset reads its sentences from ../shared/data before comparing settings
def test_a_resume_with_other_settings_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"seed": 1, "sources": [{"name": "hibari", "kind": "hibari"}]}))
    assert main(["data", "synth", "--out", str(out), "--preset", "smoke", "--hours", "hibari=0.001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different settings (seed)" in err[0], err


def test_registering_the_data_commands_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import argparse, sys; from speechtok.data.cli import add_data_commands;"
            " add_data_commands(argparse.ArgumentParser().add_subparsers());"
            " print(sorted(m for m in ('torch', 'onnxruntime', 'pyworld', 'speechtok.data.engine') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
