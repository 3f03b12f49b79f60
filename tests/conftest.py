"""Shared fixtures: real speech (the bundled LibriSpeech clip and ../shared/data), tiny models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechtok.assets import SAMPLE_SPEECH, SAMPLE_TRANSCRIPT
from speechtok.audio import load_audio

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """The bundled real-speech clip at its native 16 kHz."""
    return load_audio(SAMPLE_SPEECH)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-speech folders of ../shared/data (see its README)."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def transcript() -> str:
    return SAMPLE_TRANSCRIPT


@pytest.fixture()
def tiny_model():
    from speechtok.models.sitok import SiTok

    torch.manual_seed(0)
    return SiTok.from_preset("sitok-tiny").eval()


@pytest.fixture(scope="session")
def real_manifest(tmp_path_factory) -> Path:
    """A small training manifest of real speech: 8 short transcribed clips from ../shared/data."""
    from speechtok.data.manifest import read_manifest, write_manifest

    rows = [r for r in read_manifest(SHARED_DATA / "asterisk_en_allison_8k" / "manifest.tsv") if r.seconds < 1.5][:6]
    rows += read_manifest(SHARED_DATA / "librispeech_dev_clean_spk84" / "manifest.tsv")[:1]
    return write_manifest(tmp_path_factory.mktemp("data") / "train.tsv", rows)
