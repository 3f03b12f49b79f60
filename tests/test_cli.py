from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from speechtok.assets import SAMPLE_SPEECH
from speechtok.cli import build_parser, main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from speechtok.models.sitok import SiTok

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    SiTok.from_preset("sitok-tiny").save_pretrained(path, info={"trained_on": "nothing (random init)"})
    return path


def _error_line(capsys, progress_bar: bool = False) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    if progress_bar:  # tqdm shares stderr; the error must still be the single final line
        assert "Traceback" not in "\n".join(err)
        err = [line for line in err if not line.startswith("tokenize")]
    assert len(err) == 1 and err[0].startswith("error: "), err  # one line, no traceback
    return err[0]


def test_encode_decode_reconstruct_round_trip(tmp_path, checkpoint, capsys):
    tokens = tmp_path / "codes.npy"
    assert main(["encode", str(SAMPLE_SPEECH), "-o", str(tokens), "--checkpoint", str(checkpoint)]) == 0
    codes = np.load(tokens)
    assert codes.shape == (1, 50) and codes.dtype == np.int32  # 3.99 s × 12.5 Hz
    out = tmp_path / "decoded.wav"
    assert main(["decode", str(tokens), "-o", str(out), "--checkpoint", str(checkpoint), "--steps", "2",
                 "--vocoder", "griffin-lim"]) == 0
    info = sf.info(out)
    assert info.samplerate == 24000 and info.frames == 50 * 1920
    out2 = tmp_path / "recon.flac"
    assert main(["reconstruct", str(SAMPLE_SPEECH), str(out2), "--checkpoint", str(checkpoint), "--steps", "2",
                 "--vocoder", "griffin-lim"]) == 0
    assert abs(sf.info(out2).duration - 3.99) < 0.01
    assert "200 bps" in capsys.readouterr().out


def test_reconstruct_without_vocoder_is_a_clear_error(tmp_path, checkpoint, capsys):
    out = tmp_path / "x.wav"
    assert main(["reconstruct", str(SAMPLE_SPEECH), str(out), "--checkpoint", str(checkpoint), "--steps", "1"]) == 2
    assert "--vocoder griffin-lim" in _error_line(capsys)
    assert not out.exists()


def test_decoding_temperature_flag(tmp_path, checkpoint, capsys):
    """``--temperature 0`` decodes one fixed path whatever the seed; a negative one is refused in one line."""
    outs = [tmp_path / f"t{seed}.wav" for seed in (0, 1)]
    for seed, out in enumerate(outs):
        assert main(["reconstruct", str(SAMPLE_SPEECH), str(out), "--checkpoint", str(checkpoint), "--steps", "2",
                     "--vocoder", "griffin-lim", "--temperature", "0", "--seed", str(seed)]) == 0
    assert np.array_equal(sf.read(outs[0])[0], sf.read(outs[1])[0])
    bad = tmp_path / "bad.wav"
    assert main(["reconstruct", str(SAMPLE_SPEECH), str(bad), "--checkpoint", str(checkpoint),
                 "--vocoder", "griffin-lim", "--temperature", "-1"]) == 2
    assert "--temperature must be a finite number" in _error_line(capsys) and not bad.exists()


def _bad_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    return [(tmp_path / "missing.wav", "not found"), (corrupt, "corrupt"), (empty, "empty"), (nan, "NaN")]


@pytest.mark.parametrize("command", ["reconstruct", "encode"])
def test_bad_audio_gives_one_line_and_no_output(tmp_path, checkpoint, capsys, command):
    for path, fragment in _bad_inputs(tmp_path):
        out = tmp_path / ("out.wav" if command == "reconstruct" else "out.npy")
        args = [command, str(path), str(out)] if command == "reconstruct" else [command, str(path), "-o", str(out)]
        assert main(args + ["--checkpoint", str(checkpoint), "--vocoder", "griffin-lim"][: 2 if command == "encode" else 4]) == 2
        line = _error_line(capsys)
        assert str(path) in line and fragment in line
        assert not out.exists()
        assert not list(tmp_path.glob(".*tmp*"))


def test_wrong_checkpoint_and_bad_token_file(tmp_path, checkpoint, capsys):
    assert main(["encode", str(SAMPLE_SPEECH), "-o", str(tmp_path / "a.npy"), "--checkpoint", str(tmp_path)]) == 2
    assert "config.json" in _error_line(capsys)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3,), dtype=np.float32))
    assert main(["decode", str(bad), "-o", str(tmp_path / "o.wav"), "--checkpoint", str(checkpoint)]) == 2
    line = _error_line(capsys)
    assert str(bad) in line and "expected a token array [K, T']" in line
    two = tmp_path / "two.npy"
    np.save(two, np.zeros((2, 50), dtype=np.int64))  # two codebooks for a one-codebook model
    assert main(["decode", str(two), "-o", str(tmp_path / "o.wav"), "--checkpoint", str(checkpoint)]) == 2
    line = _error_line(capsys)
    assert str(two) in line and "[1, T']" in line and "[2, 50]" in line and "LongTensor" not in line
    assert not (tmp_path / "o.wav").exists()


def test_info_describes_checkpoint(checkpoint, capsys):
    assert main(["info", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "sitok-tiny" in out and "12.5 Hz × 16 bits = 200 bps" in out and "sha256" in out
    assert "random init" in out


def test_a_reader_that_leaves_early_ends_the_command_quietly(checkpoint):
    """``speechtok info NAME --json | head`` must not print an error or a traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "speechtok.cli", "info", str(checkpoint), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has started, so every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_info_json_of_the_bundled_default_names_its_training_data_and_quality(capsys):
    import json

    assert main(["info", "sitok-default", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["bitrate"] == 200.0 and described["codebooks"] == 1
    assert described["training_data"]["hours"] > 1 and described["training_data"]["voices"] > 20
    assert "| codec2-700c |" in described["quality"]


def test_info_json_follows_a_fine_tune_back_to_the_data_its_init_was_trained_on(tmp_path, real_manifest, capsys):
    """A bundle exported from a short fine-tune (e.g. the guidance adapter on a small set) still names
    the speech its tokenizer was trained on: the run records its --init checkpoint's summary."""
    import json
    import shutil

    from speechtok.models.sitok import SiTok
    from speechtok.train.summary import training_summary
    from sitok_finetune import TRAIN_3_STEPS

    config = tmp_path / "c.yaml"
    config.write_text(TRAIN_3_STEPS)
    small = tmp_path / "small.tsv"
    small.write_text("".join(real_manifest.read_text().splitlines(keepends=True)[:3]))
    for clip in real_manifest.parent.glob("allison-a*.flac"):
        shutil.copy(clip, tmp_path)
    common = ["train", "--preset", "sitok-tiny", "--config", str(config), "--no-progress"]
    assert main([*common, "--data", str(real_manifest), "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--data", str(small), "--init", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    step = tmp_path / "b" / "checkpoints" / "step_0000003"
    summary = training_summary(step, "sitok")
    assert summary["train_data"]["utterances"] == 2
    assert summary["initialised_from"]["training"]["train_data"]["utterances"] == 7
    SiTok.from_pretrained(str(step)).save_pretrained(tmp_path / "bundle", info={"training": summary})
    capsys.readouterr()
    assert main(["info", str(tmp_path / "bundle"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["training_data"]
    trained_on = summary["initialised_from"]["training"]["train_data"]
    assert (data["hours"], data["voices"]) == (trained_on["hours"], trained_on["speakers"])
    assert [run["manifest"] for run in data["runs"]] == ["small.tsv", "train.tsv"]


def test_tokenize_is_batched_resumable_and_reports_failures(tmp_path, checkpoint, capsys):
    from speechtok.audio import load_audio

    corpus = tmp_path / "corpus"
    (corpus / "spk").mkdir(parents=True)
    wav, rate = load_audio(SAMPLE_SPEECH)
    for i, n in enumerate((len(wav), len(wav) // 2, len(wav) // 3)):
        sf.write(corpus / "spk" / f"u{i}.flac", wav[:n], rate)
    (corpus / "spk" / "broken.wav").write_bytes(b"not audio at all")
    out = tmp_path / "tokens"
    assert main(["tokenize", str(corpus), "-o", str(out), "--checkpoint", str(checkpoint)]) == 2
    assert "could not be tokenized" in _error_line(capsys, progress_bar=True)
    assert "broken.wav" in (out / "failed.tsv").read_text()
    made = sorted(p.name for p in out.glob("*.npy"))
    assert made == ["u0.npy", "u1.npy", "u2.npy"]
    assert np.load(out / "u1.npy").shape == (1, 25)
    # Items tokenized in one padded batch equal the same file tokenized alone.
    alone = tmp_path / "alone.npy"
    assert main(["encode", str(corpus / "spk" / "u1.flac"), "-o", str(alone), "--checkpoint", str(checkpoint)]) == 0
    assert np.array_equal(np.load(alone), np.load(out / "u1.npy"))
    # A rerun skips finished files.
    (corpus / "spk" / "broken.wav").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    (out / "u2.npy").unlink()
    assert main(["tokenize", str(corpus), "-o", str(out), "--checkpoint", str(checkpoint)]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert after["u0.npy"] == before["u0.npy"] and after["u1.npy"] == before["u1.npy"] and "u2.npy" in after


@pytest.mark.parametrize("command", ["encode", "decode", "reconstruct", "info", "tokenize", "train", "manifest"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_holitok_checkpoints_work_with_the_same_commands(tmp_path, capsys):
    """encode → latents (float32 [128, T']), decode, reconstruct and tokenize, with clear errors for SiTok-only flags."""
    import numpy as np

    from speechtok.assets import SAMPLE_SPEECH
    from speechtok.audio import load_audio
    from speechtok.models.holitok import HoliTok

    ckpt = HoliTok.from_preset("holitok-tiny").save_pretrained(tmp_path / "holitok")
    assert main(["encode", str(SAMPLE_SPEECH), "-o", str(tmp_path / "z.npy"), "--checkpoint", str(ckpt)]) == 0
    latents = np.load(tmp_path / "z.npy")
    speech, rate = load_audio(SAMPLE_SPEECH)
    assert latents.dtype == np.float32 and latents.shape == (128, int(np.ceil(len(speech) / rate * 25)))
    assert main(["decode", str(tmp_path / "z.npy"), "-o", str(tmp_path / "d.wav"), "--checkpoint", str(ckpt)]) == 0
    assert load_audio(tmp_path / "d.wav")[1] == 48000
    assert main(["reconstruct", str(SAMPLE_SPEECH), str(tmp_path / "r.wav"), "--checkpoint", str(ckpt)]) == 0
    (tmp_path / "in").mkdir()
    shutil.copy(SAMPLE_SPEECH, tmp_path / "in")
    assert main(["tokenize", str(tmp_path / "in"), "-o", str(tmp_path / "tok"), "--checkpoint", str(ckpt)]) == 0
    assert np.array_equal(np.load(next((tmp_path / "tok").rglob("*.npy"))), latents)
    capsys.readouterr()
    assert main(["reconstruct", str(SAMPLE_SPEECH), str(tmp_path / "x.wav"), "--checkpoint", str(ckpt), "--steps", "4"]) == 2
    assert "apply to SiTok" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()


def test_quick_start_reconstructs_with_the_bundled_default(tmp_path, capsys):
    """The README's first command: no checkpoint and no vocoder argument (sitok-default + vocos-24k)."""
    out = tmp_path / "reconstructed.wav"
    assert main(["reconstruct", str(SAMPLE_SPEECH), str(out)]) == 0
    assert sf.info(out).samplerate == 24000 and abs(sf.info(out).duration - 3.99) < 0.01
    assert "50 tokens" in capsys.readouterr().out
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "sitok-small" in printed and "vocos-24k" in printed and "measured quality" in printed
    assert main(["info", "vocos-24k"]) == 0
    assert "Vocos vocoder preset vocos-small" in capsys.readouterr().out
