"""The Vocos vocoder: shapes and alignment, chunked inference, checkpoints, GAN training and resume."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from speechtok.cli import main
from speechtok.errors import ConfigError
from speechtok.mel import MelSpectrogram
from speechtok.vocoder.vocos import Vocos


@pytest.fixture()
def vocos() -> Vocos:
    torch.manual_seed(0)
    return Vocos.from_preset("vocos-tiny").eval()


def test_one_mel_frame_gives_one_hop_of_audio(vocos):
    mel = torch.randn(3, 128, 37)
    wav = vocos(mel)
    assert wav.shape == (3, 1, 37 * 480)
    with pytest.raises(ConfigError, match=r"expected \[B, 128, F\]"):
        vocos(torch.randn(1, 80, 10))


def test_synthesis_inverts_the_stft_of_real_speech(speech):
    """Fed the true STFT (frame i centred on hop i), the synthesis path returns the waveform exactly,
    edges included: what the head predicts lines up with the mel frames it was given."""
    from speechtok.audio import resample

    wav = torch.from_numpy(resample(speech[0], speech[1], 24000))[None, None]
    wav = wav[..., : (wav.shape[-1] // 480) * 480]
    n_fft, hop = 1920, 480
    padded = torch.nn.functional.pad(wav[:, 0], ((n_fft - hop) // 2, (n_fft - hop) // 2))
    true = torch.stft(padded, n_fft, hop, window=torch.hann_window(n_fft), center=False, return_complex=True)
    assert true.shape[-1] == MelSpectrogram()(wav).shape[-1]
    out = Vocos.from_preset("vocos-tiny").synthesise(true)
    assert out.shape == wav.shape and torch.allclose(out, wav, atol=1e-4)


def test_chunked_vocoding_equals_whole(vocos):
    mel = torch.randn(1, 128, 230)
    whole = vocos(mel)
    chunked = vocos.vocode(mel, chunk_frames=50)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, atol=1e-4)


def test_checkpoint_round_trip(tmp_path, vocos):
    vocos.save_pretrained(tmp_path / "v")
    again = Vocos.from_pretrained(tmp_path / "v")
    mel = torch.randn(1, 128, 20)
    assert torch.equal(vocos(mel), again(mel))


def test_gan_training_resumes_exactly_and_lowers_the_mel_loss(tmp_path, real_manifest):
    overrides = tmp_path / "o.yaml"
    overrides.write_text("model:\n  adversarial_start: 2\ntrain:\n  steps: 6\n  lr: 0.002\n  warmup_steps: 1\n"
                         "  batch_seconds: 2.0\n  segment_seconds: 0.5\n  log_every: 1\n  checkpoint_every: 3\n"
                         "  keep_checkpoints: 5\n  valid_every: 3\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--preset", "vocos-tiny", "--data", str(real_manifest), "--valid", str(real_manifest),
                 "--config", str(overrides), "--out", str(a), "--no-progress"]) == 0
    assert main(["train", "--resume", str(a / "checkpoints" / "step_0000003"), "--out", str(b), "--no-progress"]) == 0
    for name in ("model", "discriminator"):
        wa = load_file(str(a / "checkpoints" / "step_0000006" / f"{name}.safetensors"))
        wb = load_file(str(b / "checkpoints" / "step_0000006" / f"{name}.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    records = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "mel" in r]
    assert "adv" not in train[0] and {"adv", "fm", "disc", "discriminator_grad_norm"} <= set(train[-1])
    valid = [r["valid_mel"] for r in records if "valid_mel" in r]
    assert valid[-1] < valid[0]
    assert Vocos.from_pretrained(a / "checkpoints" / "step_0000006").config.adversarial_start == 2


def test_a_sitok_checkpoint_brings_its_vocoder(tmp_path, tiny_model, vocos, speech):
    from speechtok.mel import MelConfig
    from speechtok.models.sitok import SiTok

    vocos.save_pretrained(tmp_path / "sitok" / "vocoder")
    tiny_model.save_pretrained(tmp_path / "sitok", info={"vocoder": "vocoder"})
    model = SiTok.from_pretrained(tmp_path / "sitok")
    assert model.vocoder is not None and model.vocoder_source.endswith("vocoder")
    wav = torch.from_numpy(speech[0])[None, None]
    out = model.reconstruct(wav, speech[1], steps=2)  # no vocoder argument: the checkpoint's own
    assert out.shape[-1] == 3 * 24000 * wav.shape[-1] // (3 * speech[1])
    mel = model.decode_mel(model.encode(wav, speech[1]), steps=2)
    assert torch.allclose(model.vocode(mel), vocos.vocode(mel), atol=1e-5)
    resaved = model.save_pretrained(tmp_path / "resaved", info={"vocoder": str(tmp_path / "sitok" / "vocoder")})
    again = SiTok.from_pretrained(resaved)  # the attached vocoder is not saved as the tokenizer's own weights
    assert set(again.state_dict()) == set(model.state_dict()) and torch.equal(again.vocode(mel), model.vocode(mel))
    other = Vocos(Vocos.get_preset("vocos-tiny").__class__(mel=MelConfig(n_mels=80)))
    other.save_pretrained(tmp_path / "v80")
    with pytest.raises(ConfigError, match="mel settings differ"):
        model.vocode(mel, str(tmp_path / "v80"))


def test_mel_and_vocode_commands(tmp_path, vocos, capsys):
    from speechtok.assets import SAMPLE_SPEECH
    from speechtok.audio import load_audio

    vocos.save_pretrained(tmp_path / "v")
    assert main(["mel", str(SAMPLE_SPEECH), "-o", str(tmp_path / "m.npy")]) == 0
    assert main(["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "out.wav"), "--vocoder", str(tmp_path / "v")]) == 0
    wav, rate = load_audio(tmp_path / "out.wav")
    speech, speech_rate = load_audio(SAMPLE_SPEECH)
    assert rate == 24000 and abs(len(wav) / rate - len(speech) / speech_rate) < 0.02
    assert main(["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "gl.wav"), "--vocoder", "griffin-lim"]) == 0
    assert len(load_audio(tmp_path / "gl.wav")[0]) == len(wav)
    capsys.readouterr()
    import numpy as np

    np.save(tmp_path / "bad.npy", np.full((128, 10), np.nan, dtype=np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((80, 10), dtype=np.float32))
    for name, message in (("bad.npy", "NaN"), ("wrong.npy", "expected a float array [128, F]"), ("none.npy", "not found")):
        assert main(["vocode", str(tmp_path / name), "-o", str(tmp_path / "x.wav"), "--vocoder", str(tmp_path / "v")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()
