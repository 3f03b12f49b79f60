"""MOS predictor: DNSMOS (P.835 SIG/BAK/OVRL) from the ``speechmos`` wheel, which ships the ONNX models.

``speechmos`` opens its ONNX sessions with every core; here they are rebuilt with at most
:func:`judge_threads` threads. DNSMOS is slow (about 5 s per 8 s clip on 2 cores), so it is not in
the default metric set.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import JudgeError
from . import JudgeInfo, judge_threads, package_versions


@dataclass(frozen=True)
class MOSJudge:
    """DNSMOS P.835 (non-personalised) scores of one 16 kHz clip."""

    primary: Path
    p808: Path
    sample_rate: int = 16000

    @property
    def info(self) -> JudgeInfo:
        digest = hashlib.sha256(self.primary.read_bytes() + self.p808.read_bytes()).hexdigest()
        return JudgeInfo("DNSMOS P.835 sig_bak_ovr + P.808", package_versions("speechmos", "onnxruntime"), digest)

    def score(self, wav: np.ndarray) -> dict[str, float]:
        peak = float(np.abs(wav).max()) if wav.size else 0.0
        clip = np.asarray(wav, dtype=np.float32) / max(peak, 1.0)  # speechmos rejects samples beyond ±1
        scores = _dnsmos(str(self.primary), str(self.p808), os.getpid())(clip, self.sample_rate, False)
        return {
            "dnsmos": float(scores["ovrl_mos"]),
            "dnsmos_sig": float(scores["sig_mos"]),
            "dnsmos_bak": float(scores["bak_mos"]),
        }


@lru_cache(maxsize=None)
def _dnsmos(primary: str, p808: str, pid: int):  # noqa: ANN202 - speechmos.dnsmos.DNSMOS, imported lazily
    """One session per process (``pid``): a forked evaluation worker never touches its parent's."""
    import onnxruntime as ort
    from speechmos.dnsmos import DNSMOS

    options = ort.SessionOptions()
    options.intra_op_num_threads = judge_threads()
    options.inter_op_num_threads = 1
    model = DNSMOS.__new__(DNSMOS)
    model.primary_model_path = primary
    model.onnx_sess = ort.InferenceSession(primary, options, providers=["CPUExecutionProvider"])
    model.p808_onnx_sess = ort.InferenceSession(p808, options, providers=["CPUExecutionProvider"])
    return model


def load_mos_judge() -> MOSJudge:
    try:
        folder = Path(str(resources.files("speechmos") / "dnsmos_models"))
    except ModuleNotFoundError:
        raise JudgeError("speechmos not installed: pip install 'speechtok[eval]'") from None
    primary, p808 = folder / "sig_bak_ovr.onnx", folder / "model_v8.onnx"
    for path in (primary, p808):
        if not path.is_file():
            raise JudgeError(f"{path}: DNSMOS model missing from the installed speechmos package")
    return MOSJudge(primary, p808)
