from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechtok.assets import SAMPLE_SPEECH
from speechtok.audio import load_audio, save_audio
from speechtok.waveform import check_waveform
from speechtok.errors import AudioError


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_loads_common_formats_as_mono_at_requested_rate(tmp_path, speech, fmt):
    wav, rate = speech
    stereo = np.stack([wav, 0.5 * wav], axis=1)
    path = tmp_path / f"clip.{fmt}"
    sf.write(path, stereo, rate)
    out, out_rate = load_audio(path, 24000)
    assert out_rate == 24000 and out.ndim == 1 and out.dtype == np.float32
    assert abs(len(out) - len(wav) * 1.5) <= 2
    native, _ = load_audio(path)
    if fmt != "ogg":  # lossless formats: the mix-down is the channel mean
        assert np.allclose(native, 0.75 * wav, atol=1e-3)


def _assert_error(path, fragment, **kwargs):
    with pytest.raises(AudioError) as err:
        load_audio(path, **kwargs)
    message = str(err.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.wav", "not found")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.flac"
    path.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    _assert_error(path, "corrupt")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    _assert_error(path, "empty")


def test_nan_file(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros(1600, dtype=np.float32)
    data[100] = np.nan
    sf.write(path, data, 16000, subtype="FLOAT")
    _assert_error(path, "NaN")


def test_absurd_length(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 3, dtype=np.float32), 16000)
    _assert_error(path, "limit", max_seconds=2.0)


def test_directory_is_not_audio(tmp_path):
    _assert_error(tmp_path, "directory")


@pytest.mark.parametrize(
    "tensor, fragment",
    [
        (torch.zeros(2, 2, 100), "2 channels"),
        (torch.zeros(2, 100), "expected shape"),
        (torch.zeros(1, 1, 0), "empty"),
        (torch.full((1, 1, 10), float("inf")), "NaN or Inf"),
    ],
)
def test_check_waveform_rejects_bad_tensors(tensor, fragment):
    with pytest.raises(AudioError, match=fragment):
        check_waveform(tensor, 16000)


def test_check_waveform_rejects_bad_rate():
    with pytest.raises(AudioError, match="sample_rate"):
        check_waveform(torch.zeros(1, 1, 10), 0)


def test_save_is_peak_safe_and_atomic(tmp_path):
    path = save_audio(tmp_path / "loud.wav", np.array([0.0, 2.0, -4.0], dtype=np.float32), 16000)
    data, _ = sf.read(path)
    assert np.abs(data).max() <= 1.0 and data[2] < -0.99
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "bad.wav", np.array([0.0, np.nan], dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="unsupported output format"):
        save_audio(tmp_path / "bad.xyz", np.zeros(10, dtype=np.float32), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loud.wav"]


def test_bundled_sample_is_real_speech():
    wav, rate = load_audio(SAMPLE_SPEECH)
    assert rate == 16000 and 3.9 < len(wav) / rate < 4.1 and wav.std() > 0.01
