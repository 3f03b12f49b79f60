"""The runner end to end on real clips: tables, caching, crash survival, SiTok adapter, HTML, CLI."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from speech_clips import TEST_DATA
from speechtok.audio import load_audio
from speechtok.cli import main as cli_main
from speechtok.data.manifest import Utterance, write_manifest
from speechtok.eval import evaluate
from speechtok.eval.errors import EvalError
from speechtok.eval.judges import JudgeInfo
from speechtok.eval.judges.asr import WHISPER_BASE_SHA256
from speechtok.eval.systems import IdentitySystem, Reconstruction

SHORT_TRANSCRIBED = Utterance(TEST_DATA / "84-121123-0000.flac", 2.09, "84", "GO DO YOU HEAR")
SHORT_UNTRANSCRIBED = Utterance(
    TEST_DATA / "1447-130550-0000.flac", 1.645, "1447", ""
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("data") / "mini.tsv", [SHORT_TRANSCRIBED, SHORT_UNTRANSCRIBED])


@pytest.fixture(scope="module")
def report(manifest, tmp_path_factory):
    """identity and Codec2 700C with every default metric and the real judges."""
    return evaluate(["identity", "codec2-700c"], manifest, tmp_path_factory.mktemp("report"), progress=False)


def _rows(out_dir: Path) -> dict[str, dict[str, str]]:
    with open(out_dir / "summary.csv", newline="") as handle:
        return {row["system"]: row for row in csv.DictReader(handle)}


def test_summary_has_one_row_per_system_and_a_column_per_metric(report):
    with open(report.out_dir / "summary.csv", newline="") as handle:
        header = next(csv.reader(handle))
    metrics = ["wer", "cer", "dwer", "stoi", "estoi", "pesq_nb", "pesq_wb", "sim", "mel_distance", "mcd"]
    assert header[:3] == ["system", "bitrate", "bitrate_disk"]
    assert header[3:-2] == [c for m in metrics for c in (m, f"{m}_ci95")]
    rows = _rows(report.out_dir)
    assert list(rows) == ["identity", "codec2-700c"]
    ident, codec = rows["identity"], rows["codec2-700c"]
    assert float(ident["wer"]) <= 25.0  # 4 words: the judge's floor on this clip
    assert float(ident["dwer"]) == 0.0
    assert float(ident["stoi"]) > 0.999 and float(ident["sim"]) > 0.999
    assert float(ident["pesq_wb"]) == pytest.approx(4.64, abs=0.01)
    assert float(ident["mel_distance"]) == 0.0 and float(ident["mcd"]) == 0.0
    assert ident["bitrate"] == "" and float(codec["bitrate"]) == 0.7
    assert 0.75 < float(codec["bitrate_disk"]) < 0.9
    for metric in ("stoi", "estoi", "pesq_nb", "pesq_wb", "sim"):
        assert float(codec[metric]) < float(ident[metric]) - 0.05, metric
    for metric in ("dwer", "mel_distance", "mcd"):
        assert float(codec[metric]) > float(ident[metric]), metric
    assert (ident["files"], ident["failed"]) == ("2", "0")


def test_every_result_records_its_judges(report):
    lines = [json.loads(line) for line in (report.out_dir / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for record in lines:
        assert record["judges"]["wer"]["sha256"] == WHISPER_BASE_SHA256
        assert "faster-whisper==" in record["judges"]["wer"]["version"]
        assert len(record["judges"]["sim"]["sha256"]) == 64
    untranscribed = [r for r in lines if r["file"] == "1447-130550-0000"]
    assert all("wer" not in r["metrics"] and "dwer" in r["metrics"] for r in untranscribed)
    summary = (report.out_dir / "summary.md").read_text()
    assert WHISPER_BASE_SHA256 in summary and "| identity |" in summary


def test_html_references_only_existing_files_and_renders_in_chromium(report):
    page = report.out_dir / "index.html"
    text = page.read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert len([r for r in refs if r.endswith(".wav")]) == 4  # original + codec2-700c for 2 files
    assert len([r for r in refs if r.endswith(".png")]) == 5  # 4 spectrograms + the bitrate plot
    for ref in refs:
        assert not ref.startswith(("http:", "https:", "//")), ref
        assert (report.out_dir / ref).is_file(), ref
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium): page rendering not checked")
    shot = report.out_dir / "screenshot.png"
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"]
        dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120)
        subprocess.run([chromium, *flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120, check=True)
    assert "<h1>speechtok evaluation</h1>" in dom.stdout and "codec2-700c" in dom.stdout
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels[..., :3].std() > 0.05  # not a blank page


@dataclass
class CountingSystem:
    """Identity that counts its calls and fails on files whose name contains ``fail_on``."""

    name: str = "counting"
    nominal_kbps: float | None = None
    fail_on: str | None = None
    calls: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        return self.name

    def describe(self) -> dict:
        return {"kind": "test"}

    def reconstruct(self, wav: np.ndarray, sample_rate: int) -> Reconstruction:
        self.calls.append(str(wav.size))
        if self.fail_on is not None and wav.size == self.fail_on:
            raise RuntimeError("simulated crash")
        return IdentitySystem().reconstruct(wav, sample_rate)


def test_reruns_are_incremental_and_a_crashed_file_is_reported_not_fatal(manifest, tmp_path):
    counting = CountingSystem()
    flaky = CountingSystem(name="flaky", fail_on=int(1.645 * 16000))
    first = evaluate([counting, flaky], manifest, tmp_path, metrics="stoi", html=False, progress=False, workers=1)
    assert len(counting.calls) == 2 and len(flaky.calls) == 2
    assert [(f["system"], f["error"]) for f in first.failures] == [("flaky", "RuntimeError: simulated crash")]
    rows = _rows(tmp_path)
    assert (rows["flaky"]["files"], rows["flaky"]["failed"]) == ("1", "1")
    assert "simulated crash" in (tmp_path / "summary.md").read_text()

    flaky.fail_on = None
    second = evaluate([counting, flaky], manifest, tmp_path, metrics="stoi,mcd", html=False, progress=False,
                      workers=1)
    assert len(counting.calls) == 2  # cached: nothing reconstructed again, only MCD computed
    assert len(flaky.calls) == 3  # only the crashed file is retried
    assert not second.failures
    assert all("mcd" in r["metrics"] and "stoi" in r["metrics"] for r in second.records)


def test_worker_processes_score_exactly_as_one_process_and_survive_a_crash(manifest, tmp_path):
    flaky = CountingSystem(name="flaky", fail_on=int(1.645 * 16000))
    runs = {n: evaluate(["identity", "codec2-700c", flaky], manifest, tmp_path / str(n), metrics="stoi,pesq,sim",
                        html=False, progress=False, workers=n) for n in (1, 2)}
    assert runs[2].meta["workers"] == 2
    assert [(r["system"], r["file"], r["metrics"]) for r in runs[2].records] == \
        [(r["system"], r["file"], pytest.approx(r["metrics"], rel=1e-9)) for r in runs[1].records]  # BLAS threads
    assert [(f["system"], f["error"]) for f in runs[2].failures] == [("flaky", "RuntimeError: simulated crash")]
    assert runs[2].rows[1]["system"] == "codec2-700c" and runs[2].rows[1]["stoi"] < 0.95


@dataclass
class EchoJudge:
    """An ASR judge that always hears the same words: proves the judge is pluggable and recorded."""

    text: str
    sample_rate: int = 16000
    info: JudgeInfo = JudgeInfo("echo", "test", "e" * 64)

    def transcribe(self, wav: np.ndarray) -> str:
        return self.text


def test_asr_judge_is_pluggable_and_recorded(manifest, tmp_path):
    result = evaluate(["identity"], manifest, tmp_path, metrics="wer", asr_judge=EchoJudge("go do you hear"),
                      html=False, progress=False)
    (row,) = result.rows
    assert (row["wer"], row["dwer"]) == (0.0, 0.0)
    assert all(r["judges"]["wer"]["name"] == "echo" for r in result.records)
    other = evaluate(["identity"], manifest, tmp_path, metrics="wer", asr_judge=EchoJudge("go", info=JudgeInfo(
        "echo", "test", "f" * 64)), html=False, progress=False)
    assert other.rows[0]["wer"] == 75.0  # a different judge hash invalidates the cached transcripts
    assert other.meta["judges"]["wer"]["sha256"] == "f" * 64


def test_sitok_checkpoint_is_a_system_with_token_statistics(manifest, tmp_path):
    from speechtok.models.sitok import SiTok

    checkpoint = SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path / "sitok-tiny-random")
    with pytest.raises(EvalError, match="no neural vocoder of its own"):
        evaluate([str(checkpoint)], manifest, tmp_path / "report", metrics="stoi", html=False, progress=False)
    result = evaluate([str(checkpoint)], manifest, tmp_path / "report", metrics="stoi", limit=1, steps=1,
                      vocoder="griffin-lim", html=False, progress=False)
    assert not result.failures, result.failures
    (row,) = result.rows
    assert row["system"] == "sitok-tiny-random+griffin-lim"
    assert (row["token_rate"], row["bits_per_token"], row["bitrate"]) == (12.5, 16.0, 0.2)
    tokens = result.records[0]["tokens"]
    assert tokens == int(np.ceil(2.09 * 12.5))
    assert row["bitrate_disk"] == pytest.approx(tokens * 16 / 2.09 / 1000, rel=1e-3)
    assert 0 < row["codebook_usage"] <= tokens / 65536
    assert 0 <= row["codebook_entropy"] <= np.log2(tokens)
    assert 0.0 <= row["stoi"] < 0.9  # random weights cannot reconstruct speech


def test_one_report_compares_a_checkpoint_decoded_with_its_own_settings(manifest, tmp_path, capsys):
    from speechtok.models.sitok import SiTok

    checkpoint = str(SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path / "tiny"))
    result = evaluate([f"{checkpoint}@steps=1", f"{checkpoint}@steps=2@cfg=1", f"{checkpoint}@steps=1@temperature=0"],
                      manifest, tmp_path / "report", metrics="stoi", limit=1, vocoder="griffin-lim", html=False,
                      progress=False)
    assert not result.failures, result.failures
    assert [row["system"] for row in result.rows] == ["tiny+griffin-lim@steps=1", "tiny+griffin-lim@steps=2@cfg=1",
                                                      "tiny+griffin-lim@steps=1@temperature=0"]
    described = result.meta["systems"]
    assert (described["tiny+griffin-lim@steps=1"]["steps"], described["tiny+griffin-lim@steps=1"]["cfg"]) == (1, None)
    assert (described["tiny+griffin-lim@steps=2@cfg=1"]["steps"], described["tiny+griffin-lim@steps=2@cfg=1"]["cfg"]) == (2, 1.0)
    assert described["tiny+griffin-lim@steps=1@temperature=0"]["temperature"] == 0.0
    audio = [np.asarray(load_audio(tmp_path / "report" / r["audio"])[0]) for r in result.records]
    assert not np.array_equal(audio[0], audio[1]) and not np.array_equal(audio[0], audio[2])  # the settings reached the decoder
    for bad, message in ((f"{checkpoint}@step=4", "'@step=4' is not one of @steps=..., @cfg=..., @vocoder=..., @codebooks=..., @temperature=..."),
                         (f"{checkpoint}@steps=four", "@steps needs a number, got 'four'"),
                         ("codec2-700c@steps=4", "@-settings apply to SiTok checkpoints only")):
        assert cli_main(["eval", "--systems", bad, "--data", str(manifest), "-o", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cli_runs_and_rejects_bad_input_in_one_line(manifest, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["eval", "--systems", "identity,codec2-3200", "--data", str(manifest), "-o", str(out), "--quiet"]
    assert cli_main([*argv, "--metrics", "stoi,pesq_wb", "--no-html"]) == 0
    assert list(_rows(out)) == ["identity", "codec2-3200"]
    assert "pesq_wb" in _rows(out)["identity"]
    assert cli_main(["eval", "--systems", "codec9", "--data", str(manifest), "-o", str(out)]) == 2
    assert cli_main([*argv, "--metrics", "loudness"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "unknown system 'codec9'" in errors[0] and "unknown metric loudness" in errors[1]


def test_holitok_checkpoint_is_a_system_without_a_bitrate(manifest, tmp_path):
    from speechtok.models.holitok import HoliTok

    checkpoint = HoliTok.from_preset("holitok-tiny").save_pretrained(tmp_path / "run" / "checkpoints" / "step_0000007")
    result = evaluate([str(checkpoint)], manifest, tmp_path / "report", metrics="stoi", limit=1,
                      html=False, progress=False)
    assert not result.failures, result.failures
    (row,) = result.rows
    assert row["system"] == "run-step_0000007"  # a training run's checkpoint is named after its run
    assert result.meta["systems"]["run-step_0000007"]["latent_rate"] == 25.0
    assert 0.0 <= row["stoi"] < 0.9


def test_copy_synthesis_measures_a_vocoder_alone(manifest, tmp_path):
    from speechtok.vocoder.vocos import Vocos

    vocos = Vocos.from_preset("vocos-tiny").save_pretrained(tmp_path / "vocos-tiny-random")
    result = evaluate(["vocoder:griffin-lim", f"vocoder:{vocos}"], manifest, tmp_path / "report", metrics="stoi",
                      limit=1, html=False, progress=False)
    assert not result.failures, result.failures
    rows = {r["system"]: r for r in result.rows}
    assert rows["vocoder:griffin-lim"]["stoi"] > 0.85  # Griffin-Lim from the true mel stays intelligible
    assert rows["vocoder:vocos-tiny-random"]["stoi"] < rows["vocoder:griffin-lim"]["stoi"]  # untrained: noise


def test_paired_differences_compare_systems_file_by_file():
    from speechtok.eval.summary import paired_differences

    def record(system, file, edits, words, stoi):
        return {"system": system, "file": file, "asr": {"counts": {"wer": [edits, words]}}, "metrics": {"stoi": stoi}}
    records = [record("base", f"f{i}", 2, 10, 0.5 + 0.01 * i) for i in range(6)]
    records += [record("better", f"f{i}", 1, 10, 0.52 + 0.01 * i) for i in range(6)]
    records += [record("same", f"f{i}", 2, 10, 0.5 + 0.01 * i) for i in range(6)]
    records.append({"system": "better", "file": "f9", "error": "crashed"})  # failures do not count
    better, same = paired_differences(records, "base", ["better", "same"], metrics=("wer", "stoi"))
    assert better["system"] == "better − base" and better["files"] == 6
    assert better["wer"] == pytest.approx(-10.0) and better["wer_ci95"] == pytest.approx(0.0)
    assert better["stoi"] == pytest.approx(0.02) and better["stoi_ci95"] == pytest.approx(0.0, abs=1e-12)
    assert (same["wer"], same["stoi"]) == (0.0, 0.0)
