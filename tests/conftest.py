"""Shared fixtures: real speech shipped with the tests (tests/data, credited there), the larger
../shared/data where it exists (skipped with the reason where not), tiny models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechtok.assets import SAMPLE_SPEECH, SAMPLE_TRANSCRIPT
from speechtok.audio import load_audio

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """The bundled real-speech clip at its native 16 kHz."""
    return load_audio(SAMPLE_SPEECH)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-speech folders of ../shared/data (see its README); the test is skipped without them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the development corpus {SHARED_DATA}, absent beside this clone")
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
def real_manifest() -> Path:
    """A small training manifest of real speech shipped in tests/data: 7 short transcribed clips."""
    return TEST_DATA / "train.tsv"


@pytest.fixture(scope="module")
def one_thread():
    """Small convolutions run fastest on one thread; more only contend with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
