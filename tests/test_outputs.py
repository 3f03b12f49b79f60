"""What a user sees around the models: fast start, the base install, output checks before any work,
file modes, the tokenize lock, and loaders that turn any corrupt input into one clean line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechtok.assets import SAMPLE_SPEECH
from speechtok.cli import main
from speechtok.errors import SpeechtokError

REPO = Path(__file__).resolve().parents[1]
#: What the base install lacks: the extras' packages (matplotlib: plot; scipy and the judges: eval).
EXTRAS_ONLY = ("scipy", "matplotlib", "faster_whisper", "ctranslate2", "pystoi", "pesq", "resemblyzer",
               "librosa", "jiwer", "onnxruntime", "speechmos")


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_help_imports_no_deep_learning_stack():
    """``speechtok --help`` must start instantly: torch alone costs ~1.5 CPU-s to import."""
    done = _run("import sys; from speechtok.cli import build_parser; build_parser();"
                "print(sorted(m for m in ('torch', 'scipy', 'matplotlib', 'numba', 'onnxruntime') if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_inference_command_runs_with_the_base_install(tmp_path):
    """The extras' packages are made unimportable; encode, decode, reconstruct, info, mel, vocode,
    tokenize and manifest still work, and an extras-only command says which extra to install."""
    blocker = ("import sys, runpy\n"
               f"blocked = {EXTRAS_ONLY!r}\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in blocked:\n"
               "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "sys.argv = ['speechtok'] + sys.argv[1:]\n"
               "from speechtok.cli import main\n"
               "sys.exit(main())\n")
    wav = tmp_path / "in.flac"
    data, rate = sf.read(SAMPLE_SPEECH)
    sf.write(wav, data[: rate * 2], rate)
    steps = [
        ["reconstruct", str(wav), str(tmp_path / "rec.wav"), "--steps", "2"],
        ["encode", str(wav), "-o", str(tmp_path / "c.npy")],
        ["decode", str(tmp_path / "c.npy"), "-o", str(tmp_path / "d.wav"), "--steps", "2"],
        ["info", "--json"],
        ["mel", str(wav), "-o", str(tmp_path / "m.npy")],
        ["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "v.wav")],
        ["manifest", str(tmp_path), "-o", str(tmp_path / "list" / "m.tsv")],
        ["tokenize", str(tmp_path / "list" / "m.tsv"), "-o", str(tmp_path / "tok")],
    ]
    for argv in steps:
        done = _run(blocker, *argv)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
    assert json.loads(_run(blocker, "info", "--json").stdout)["bitrate"] == 200.0
    done = _run(blocker, "eval", "--systems", "identity", "--data", str(tmp_path / "list" / "m.tsv"),
                "-o", str(tmp_path / "report"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pip install 'speechtok[eval]'" in done.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    import torch

    from speechtok.models.sitok import SiTok

    torch.manual_seed(0)
    return SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture()
def no_model_work(monkeypatch):
    """Fails the test if a command reaches model loading: output checks must come first."""
    import speechtok.models.commands as commands

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(commands, "_load", refuse)


def _bad_outputs(tmp_path: Path, inp: Path, suffix: str) -> list[tuple[str, str]]:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    (tmp_path / "folder").mkdir(exist_ok=True)
    return [
        (str(inp), "input"),                                  # output == input
        (f"/proc/x{suffix}", "cannot write"),                 # unwritable location
        (str(a_file / f"x{suffix}"), "not a directory"),      # a file where a folder must be
        (str(tmp_path / "folder"), "is a directory"),         # the output is a directory
        (str(tmp_path / "folder") + "/", "is a directory"),
    ]


@pytest.mark.parametrize("command", ["encode", "reconstruct", "decode", "mel", "vocode"])
def test_bad_outputs_fail_in_one_line_before_any_work(tmp_path, tiny, capsys, no_model_work, command):
    suffix = {"encode": ".npy", "mel": ".npy"}.get(command, ".wav")
    inp = tmp_path / ("in.npy" if command in ("decode", "vocode") else "in.wav")
    if inp.suffix == ".npy":
        np.save(inp, np.zeros((1, 5), dtype=np.int32) if command == "decode" else np.zeros((128, 5), np.float32))
    else:
        data, rate = sf.read(SAMPLE_SPEECH)
        sf.write(inp, data[:rate], rate)
    before = inp.read_bytes()
    for output, fragment in _bad_outputs(tmp_path, inp, suffix):
        argv = ([command, str(inp), output] if command == "reconstruct" else [command, str(inp), "-o", output])
        if command in ("encode", "reconstruct", "decode"):
            argv += ["--checkpoint", str(tiny)]
        assert main(argv) == 2, output
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], (output, err)
    assert inp.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["folder", "plain.txt", inp.name])


def test_outputs_get_the_normal_mode(tmp_path, tiny):
    old = os.umask(0o022)
    try:
        assert main(["encode", str(SAMPLE_SPEECH), "-o", str(tmp_path / "c.npy"), "--checkpoint", str(tiny)]) == 0
        assert main(["decode", str(tmp_path / "c.npy"), "-o", str(tmp_path / "d.wav"), "--checkpoint", str(tiny),
                     "--vocoder", "griffin-lim", "--steps", "1"]) == 0
        from speechtok.models.sitok import SiTok

        SiTok.from_pretrained(tiny).save_pretrained(tmp_path / "copy")
    finally:
        os.umask(old)
    for path in [tmp_path / "c.npy", tmp_path / "d.wav", tmp_path / "copy" / "model.safetensors",
                 tmp_path / "copy" / "config.json"]:
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path


def test_tokenize_refuses_a_folder_in_use_and_takes_over_a_stale_lock(tmp_path, tiny, capsys):
    from speechtok.fileio import LOCK_FILE, exclusive_lock

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data, rate = sf.read(SAMPLE_SPEECH)
    sf.write(corpus / "a.flac", data[:rate], rate)
    out = tmp_path / "tokens"
    with exclusive_lock(out, "another tokenize"):
        assert main(["tokenize", str(corpus), "-o", str(out), "--checkpoint", str(tiny)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "in use by another tokenize" in err and f"pid {os.getpid()}" in err
        assert not (out / "a.npy").exists()
    # A lock left by a killed job (a pid that no longer runs) is stale and taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"holder": "x", "host": os.uname().nodename, "pid": dead.pid}))
    assert main(["tokenize", str(corpus), "-o", str(out), "--checkpoint", str(tiny)]) == 0
    assert (out / "a.npy").is_file() and not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------- fuzzing
def _corrupt_audio(rng: np.random.Generator, good: bytes, tmp: Path, i: int) -> Path:
    """A broken or mislabelled audio file, one of several kinds."""
    kind = i % 6
    suffix = [".wav", ".flac", ".ogg", ".mp3", ".wav", ".flac"][kind]
    path = tmp / f"f{i}{suffix}"
    if kind == 0:  # random bytes
        path.write_bytes(rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes())
    elif kind == 1:  # truncated real FLAC
        path.write_bytes(good[: int(rng.integers(0, len(good) // 2))])
    elif kind == 2:  # real FLAC bytes with flipped bytes
        data = bytearray(good)
        for pos in rng.integers(0, len(data), int(rng.integers(1, 50))):
            data[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
    elif kind == 3:  # text mislabelled as audio
        path.write_text("ID3 this is not an mp3 " * int(rng.integers(0, 50)))
    elif kind == 4:  # a WAV header that lies about its size / format
        header = bytearray(b"RIFF" + (int(rng.integers(0, 2**31))).to_bytes(4, "little") + b"WAVEfmt ")
        header += rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        path.write_bytes(bytes(header))
    else:  # a FLAC with its head cut off
        path.write_bytes(good[int(rng.integers(1, len(good))):])
    return path


def test_fuzzed_audio_files_end_in_one_clean_error(tmp_path):
    from speechtok.audio import load_audio

    good = SAMPLE_SPEECH.read_bytes()
    rng = np.random.default_rng(1234)
    outcomes = {"error": 0, "loaded": 0}
    for i in range(300):
        path = _corrupt_audio(rng, good, tmp_path, i)
        try:
            wav, _ = load_audio(path, 24000)
        except SpeechtokError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(str(path)), message
            outcomes["error"] += 1
        else:  # libsndfile can recover a damaged stream: then the audio must be usable
            assert wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
            outcomes["loaded"] += 1
    assert outcomes["error"] >= 200, outcomes


def test_fuzzed_token_files_end_in_one_clean_error(tmp_path, tiny, capsys):
    rng = np.random.default_rng(99)
    makers = [
        lambda: rng.integers(-5, 70000, (int(rng.integers(1, 4)), int(rng.integers(0, 30)))),  # ranges, codebooks
        lambda: rng.standard_normal(tuple(int(n) for n in rng.integers(0, 6, int(rng.integers(0, 4))))),
        lambda: np.array(["a", "b"]),
        lambda: np.full((1, 8), np.nan),
        lambda: rng.integers(0, 2**16, (1, int(rng.integers(1, 6)))).astype(rng.choice(["uint8", "int16", "uint64"])),
    ]
    for i in range(120):
        path = tmp_path / f"t{i}.npy"
        if i % 7 == 6:  # not an .npy at all, or a truncated one
            np.save(path, np.zeros((1, 10), dtype=np.int32))
            path.write_bytes(path.read_bytes()[: int(rng.integers(0, 120))])
        else:
            np.save(path, makers[i % len(makers)]())
        out = tmp_path / f"o{i}.wav"
        code = main(["decode", str(path), "-o", str(out), "--checkpoint", str(tiny), "--vocoder", "griffin-lim",
                     "--steps", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        if code == 0:
            assert out.is_file()
            continue
        assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {path}"), err
        assert not out.exists()
    assert not list(tmp_path.glob(".*tmp*"))
