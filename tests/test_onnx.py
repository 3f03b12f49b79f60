"""``speechtok export onnx``: the exported graphs, run in onnxruntime through the numpy-only code of
docs/onnx.md, against PyTorch on real speech.

SiTok codes must be identical; decoded mel, audio and HoliTok latents agree within the stated
tolerances (float32 kernels of two runtimes). The fast tests use a random-weight sitok-tiny with a
vocos-tiny vocoder (one export, ~20 s of CPU); HoliTok and the bundled sitok-default are slow tests.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402

from speechtok.audio import load_audio, resample  # noqa: E402
from speechtok.cli import main  # noqa: E402
from speechtok.export.onnx import MANIFEST, check_export_dir  # noqa: E402
from speechtok.models.holitok import HoliTok  # noqa: E402
from speechtok.models.sitok import SiTok  # noqa: E402
from speechtok.vocoder.vocos import Vocos  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEECH = sorted((REPO / "tests" / "data").glob("*.flac"))
#: Largest absolute differences allowed (measured values in the test docstrings).
MEL_TOLERANCE = 1e-4  # normalised log-mel after guided Euler steps
AUDIO_TOLERANCE = 1e-5  # waveform in [-1, 1]; also HoliTok latents


def docs_snippet() -> dict:
    """The python block of docs/onnx.md, executed as a module: the tests run the documented code itself."""
    text = (REPO / "docs" / "onnx.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace = {"__name__": "docs_onnx"}
    exec(compile(code, "docs/onnx.md", "exec"), namespace)
    return namespace


def speech_at(path: Path, rate: int) -> np.ndarray:
    wav, sr = load_audio(path)
    return resample(wav, sr, rate)


@pytest.fixture(scope="module")
def sitok_export(tmp_path_factory):
    """A random-weight sitok-tiny with a vocos-tiny vocoder, saved and exported through the CLI."""
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    Vocos.from_preset("vocos-tiny").save_pretrained(root / "vocos")
    SiTok.from_preset("sitok-tiny").save_pretrained(root / "sitok", info={"vocoder": "../vocos"})
    assert main(["export", "onnx", str(root / "sitok"), "-o", str(root / "out")]) == 0
    model = SiTok.from_pretrained(root / "sitok")
    doc = docs_snippet()
    manifest, sessions = doc["load_export"](root / "out")
    return model, root / "out", manifest, sessions, doc


def test_manifest_describes_the_files(sitok_export):
    model, out, manifest, sessions, _ = sitok_export
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert manifest["kind"] == "sitok" and manifest["sample_rate"] == 24000 and manifest["token_rate"] == 12.5
    assert manifest["codes"] == {"codebooks": 1, "codebook_size": 65536, "dtype": "int64"}
    weights = json.loads((out.parent / "sitok" / "config.json").read_text())["weights"]["sha256"]
    assert manifest["checkpoint"]["weights_sha256"] == weights
    assert set(manifest["graphs"]) == {"encoder", "decoder_step", "vocoder"}
    for name, graph in manifest["graphs"].items():
        path = out / graph["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == graph["sha256"]
        model_inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
                        for i in onnx.load(path, load_external_data=False).graph.input}
        assert model_inputs == {i["name"]: i["shape"] for i in graph["inputs"]}, name  # dynamic axes by name
        assert [o.name for o in sessions[name].get_outputs()] == [o["name"] for o in graph["outputs"]]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST] + [g["file"] for g in manifest["graphs"].values()])


def test_sitok_codes_are_identical_on_real_speech(sitok_export):
    model, _, _, sessions, doc = sitok_export
    clips = [speech_at(p, 24000) for p in SPEECH]
    for wav in clips:
        codes = doc["sitok_encode"](sessions, wav[None, None])
        assert codes.dtype == np.int64
        np.testing.assert_array_equal(codes, model.encode(torch.from_numpy(wav)[None, None], 24000).numpy())
    n = min(len(c) for c in clips[:2])  # a batch (dynamic batch axis), odd length (not a multiple of the hop)
    batch = np.stack([clips[0][: n - 7], clips[1][: n - 7]])[:, None]
    np.testing.assert_array_equal(doc["sitok_encode"](sessions, batch),
                                  model.encode(torch.from_numpy(batch), 24000).numpy())


def test_sitok_decode_loop_and_vocoder_match_pytorch(sitok_export):
    """Same noise, 4 Euler steps with CFG 2 (scripts/onnx_parity.py on this model: max |Δmel| 6e-7,
    |Δaudio| 7e-8, vocoder alone 5e-8)."""
    model, _, manifest, sessions, doc = sitok_export
    wav = speech_at(SPEECH[0], 24000)
    codes = model.encode(torch.from_numpy(wav)[None, None], 24000)
    codes = torch.cat([codes, codes.flip(-1)])
    noise = torch.randn(2, codes.shape[-1], 512, generator=torch.Generator().manual_seed(0))
    audio, mel = doc["sitok_decode"](manifest, sessions, codes.numpy(), steps=4, cfg=2.0, noise=noise.numpy())
    mel_torch = model.decode_mel(codes, steps=4, cfg=2.0, generator=torch.Generator().manual_seed(0))
    assert mel.shape == tuple(mel_torch.shape) and audio.shape == (2, 1, codes.shape[-1] * 1920)
    np.testing.assert_allclose(mel, mel_torch.numpy(), rtol=0, atol=MEL_TOLERANCE)
    np.testing.assert_allclose(audio, model.vocode(mel_torch).numpy(), rtol=0, atol=AUDIO_TOLERANCE)
    # the vocoder alone, on the mel of real speech
    mel = model.mel(torch.from_numpy(wav)[None, None])
    vocoded = sessions["vocoder"].run(None, {"mel": mel.numpy()})[0]
    np.testing.assert_allclose(vocoded, model.vocode(mel).numpy(), rtol=0, atol=AUDIO_TOLERANCE)


def test_default_noise_decodes_to_finite_audio(sitok_export):
    _, _, manifest, sessions, doc = sitok_export
    codes = np.array([[[5, 17, 65535]]], dtype=np.int64)
    audio, mel = doc["sitok_decode"](manifest, sessions, codes, steps=2)
    assert audio.shape == (1, 1, 3 * 1920) and mel.shape == (1, 128, 12) and np.isfinite(audio).all()


def test_refuses_a_non_empty_folder_and_writes_nothing(sitok_export, tmp_path, capsys):
    model, out, *_ = sitok_export
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["export", "onnx", str(out.parent / "sitok"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--force" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert check_export_dir(out, force=True) == out  # --force lets an export overwrite it


@pytest.mark.parametrize("case", ["file", "vocoder", "missing"])
def test_bad_input_is_one_line_before_any_work(sitok_export, tmp_path, capsys, case):
    root = sitok_export[1].parent
    output = tmp_path / "new"
    if case == "file":
        output = tmp_path / "file"
        output.write_text("x")
    name = {"file": str(root / "sitok"), "vocoder": str(root / "vocos"), "missing": str(tmp_path / "nope")}[case]
    assert main(["export", "onnx", name, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_missing_extra_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    assert main(["export", "onnx", "sitok-default", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'speechtok[onnx]'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("head", [{}, {"decoder_head": "istft", "head_dim": 16, "head_layers": 1},
                                  {"decoder_head": "mel", "head_dim": 16, "head_layers": 1,
                                   "encoder_frontend": "mel", "frontend_dim": 16, "frontend_layers": 1}],
                         ids=["bigvgan", "istft", "mel"])
def test_holitok_latents_and_audio_match_pytorch(tmp_path, head):
    """Random-weight two-stage HoliTok (development runs: max |Δlatent| 7e-8, |Δaudio| 5e-8 at an output
    amplitude of 0.04), with each decoder head (the mel head's graph holds the bundled vocos-24k) and,
    with the mel head, the mel front-end (its DFT exported as a float64 matmul)."""
    torch.manual_seed(0)
    model = HoliTok.from_preset("holitok-tiny", encoder_channels=(4, 8, 8), downsample_rates=(48, 40),
                                decoder_channels=(8, 8, 4), upsample_rates=(40, 48), resblock_dilations=((1,),),
                                **head)
    model.save_pretrained(tmp_path / "holitok")
    assert main(["export", "onnx", str(tmp_path / "holitok"), "-o", str(tmp_path / "out")]) == 0
    doc = docs_snippet()
    manifest, sessions = doc["load_export"](tmp_path / "out")
    assert manifest["kind"] == "holitok" and manifest["latents"]["dim"] == 128 and manifest["latent_rate"] == 25
    model = HoliTok.from_pretrained(tmp_path / "holitok")
    clips = [speech_at(p, 48000) for p in SPEECH[:2]]
    n = min(len(c) for c in clips) - 11
    batch = np.stack([c[:n] for c in clips])[:, None]
    for wav in (clips[0][None, None], batch):
        latents = doc["holitok_encode"](sessions, wav)
        expected = model.encode(torch.from_numpy(wav), 48000).numpy()
        np.testing.assert_allclose(latents, expected, rtol=0, atol=AUDIO_TOLERANCE)
        audio = doc["holitok_decode"](sessions, latents)
        np.testing.assert_allclose(audio, model.decode(torch.from_numpy(latents)).numpy(), rtol=0, atol=AUDIO_TOLERANCE)


@pytest.mark.slow
def test_bundled_sitok_default_codes_identical_and_decode_close(tmp_path):
    """The real weights (sitok-default + vocos-24k) on every clip of tests/data: codes identical; the
    default decode (2 steps, CFG 2 as the distilled one pass) within the tolerances (measured with the
    first default's 16 two-pass steps: |Δmel| 1.2e-6, |Δaudio| 1.7e-6)."""
    assert main(["export", "onnx", "sitok-default", "-o", str(tmp_path / "out")]) == 0
    doc = docs_snippet()
    manifest, sessions = doc["load_export"](tmp_path / "out")
    model = SiTok.from_pretrained("sitok-default")
    assert manifest["vocoder"]["source"] == "vocos-24k"
    for path in SPEECH:
        wav = speech_at(path, 24000)[None, None]
        codes = doc["sitok_encode"](sessions, wav)
        np.testing.assert_array_equal(codes, model.encode(torch.from_numpy(wav), 24000).numpy(), err_msg=path.name)
    codes_t = torch.from_numpy(codes)
    noise = torch.randn(1, codes.shape[-1], 512, generator=torch.Generator().manual_seed(0))
    audio, mel = doc["sitok_decode"](manifest, sessions, codes, noise=noise.numpy())
    np.testing.assert_allclose(mel, model.decode_mel(codes_t).numpy(), rtol=0, atol=MEL_TOLERANCE)
    np.testing.assert_allclose(audio, model.decode(codes_t).numpy(), rtol=0, atol=AUDIO_TOLERANCE)
