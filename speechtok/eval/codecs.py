"""Classical speech codecs as baselines, run through the real codec programs (Debian packages).

Each round trip writes the codec's own bitstream to a temporary folder, so besides the nominal
rate the *on-disk* rate (container and padding included) is measured. Programs: ``c2enc``/``c2dec``
(apt ``codec2``), ``opusenc``/``opusdec`` (``opus-tools``), ``speexenc``/``speexdec`` (``speex``),
and AMR-NB: the encoder is ``libopencore-amrnb`` through ctypes (Debian's ffmpeg has only the
decoder), the decoder is ``ffmpeg``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ..audio import load_audio, resample
from .errors import CodecError

#: Debian package that provides each program (for error messages and the docs).
PROVIDERS = {
    "c2enc": "codec2", "c2dec": "codec2", "opusenc": "opus-tools", "opusdec": "opus-tools",
    "speexenc": "speex", "speexdec": "speex", "ffmpeg": "ffmpeg", "libopencore-amrnb": "libopencore-amrnb0",
}
CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")


@dataclass(frozen=True)
class CodecOutput:
    """Decoded audio and the size of the encoded bitstream file."""

    wav: np.ndarray
    sample_rate: int
    encoded_bytes: int


@dataclass(frozen=True)
class Codec:
    """One codec at one setting: ``roundtrip(workdir, wav_at_input_rate)`` encodes and decodes."""

    name: str
    label: str
    nominal_kbps: float
    input_rate: int
    requires: tuple[str, ...]
    roundtrip: Callable[[Path, np.ndarray], CodecOutput]

    def missing(self) -> list[str]:
        """Programs or libraries this codec needs that are not installed."""
        return [r for r in self.requires if not (_amrnb_library() if r == "libopencore-amrnb" else shutil.which(r))]

    def run(self, wav: np.ndarray, sample_rate: int) -> CodecOutput:
        missing = self.missing()
        if missing:
            packages = " ".join(sorted({PROVIDERS.get(m, m) for m in missing}))
            raise CodecError(f"{self.name}: {', '.join(missing)} not installed (apt-get install {packages})")
        with tempfile.TemporaryDirectory(prefix=f"speechtok-{self.name}-") as tmp:
            return self.roundtrip(Path(tmp), resample(wav, sample_rate, self.input_rate))


def _run(args: list[str], name: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()
        raise CodecError(f"{name}: '{' '.join(args[:2])}' failed: {tail[-1] if tail else f'exit {result.returncode}'}")


def _pcm16(wav: np.ndarray) -> np.ndarray:
    return (np.clip(wav, -1.0, 32767 / 32768) * 32768).astype("<i2")


def _write_wav(path: Path, wav: np.ndarray, rate: int) -> Path:
    sf.write(str(path), _pcm16(wav), rate, subtype="PCM_16")
    return path


def _codec2(mode: str) -> Callable[[Path, np.ndarray], CodecOutput]:
    def roundtrip(tmp: Path, wav: np.ndarray) -> CodecOutput:
        raw, bits, out = tmp / "in.raw", tmp / "enc.bit", tmp / "out.raw"
        _pcm16(wav).tofile(raw)
        _run(["c2enc", mode, str(raw), str(bits)], f"codec2-{mode.lower()}")
        _run(["c2dec", mode, str(bits), str(out)], f"codec2-{mode.lower()}")
        decoded = np.fromfile(out, dtype="<i2").astype(np.float32) / 32768
        return CodecOutput(decoded, 8000, bits.stat().st_size)

    return roundtrip


def _opus(kbps: int) -> Callable[[Path, np.ndarray], CodecOutput]:
    def roundtrip(tmp: Path, wav: np.ndarray) -> CodecOutput:
        src, enc, out = _write_wav(tmp / "in.wav", wav, 16000), tmp / "enc.opus", tmp / "out.wav"
        _run(["opusenc", "--quiet", "--bitrate", str(kbps), "--framesize", "20", str(src), str(enc)], f"opus-{kbps}k")
        _run(["opusdec", "--quiet", "--rate", "16000", str(enc), str(out)], f"opus-{kbps}k")
        decoded, rate = load_audio(out)
        return CodecOutput(decoded, rate, enc.stat().st_size)

    return roundtrip


def _speex(quality: int) -> Callable[[Path, np.ndarray], CodecOutput]:
    def roundtrip(tmp: Path, wav: np.ndarray) -> CodecOutput:
        src, enc, out = _write_wav(tmp / "in.wav", wav, 8000), tmp / "enc.spx", tmp / "out.wav"
        _run(["speexenc", "-n", "--quality", str(quality), str(src), str(enc)], f"speex-q{quality}")
        _run(["speexdec", str(enc), str(out)], f"speex-q{quality}")
        decoded, rate = load_audio(out)
        return CodecOutput(decoded, rate, enc.stat().st_size)

    return roundtrip


def _amrnb_library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("opencore-amrnb")
    for candidate in (name, "libopencore-amrnb.so.0"):
        if candidate:
            try:
                return ctypes.CDLL(candidate)
            except OSError:
                continue
    return None


#: AMR-NB mode index of 4.75 kbit/s (``enum Mode { MR475 = 0, ... }`` in opencore's interface).
_AMR_MR475 = 0


def _amrnb_encode(wav: np.ndarray, mode: int) -> bytes:
    """Encode 8 kHz audio as an AMR storage file (RFC 4867 ``#!AMR\\n`` + one frame per 20 ms)."""
    lib = _amrnb_library()
    assert lib is not None  # Codec.run checked availability
    lib.Encoder_Interface_init.restype = ctypes.c_void_p
    lib.Encoder_Interface_Encode.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
    ]
    lib.Encoder_Interface_exit.argtypes = [ctypes.c_void_p]
    pcm = _pcm16(wav)
    pcm = np.concatenate([pcm, np.zeros(-pcm.size % 160, dtype="<i2")])
    state = lib.Encoder_Interface_init(0)
    frame_out = (ctypes.c_ubyte * 64)()
    chunks = [b"#!AMR\n"]
    try:
        for start in range(0, pcm.size, 160):
            frame = np.ascontiguousarray(pcm[start : start + 160])
            n = lib.Encoder_Interface_Encode(state, mode, frame.ctypes.data, frame_out, 0)
            chunks.append(bytes(frame_out[:n]))
    finally:
        lib.Encoder_Interface_exit(state)
    return b"".join(chunks)


def _amrnb(tmp: Path, wav: np.ndarray) -> CodecOutput:
    enc, out = tmp / "enc.amr", tmp / "out.wav"
    enc.write_bytes(_amrnb_encode(wav, _AMR_MR475))
    _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(enc), "-ar", "8000", "-ac", "1", str(out)], "amr-nb")
    decoded, rate = load_audio(out)
    return CodecOutput(decoded, rate, enc.stat().st_size)


def _build() -> dict[str, Codec]:
    codecs = [
        Codec(f"codec2-{m.lower()}", f"Codec2 {m}", int(m.rstrip("C")) / 1000, 8000, ("c2enc", "c2dec"), _codec2(m))
        for m in CODEC2_MODES
    ]
    codecs.append(Codec("opus-6k", "Opus 6 kbps", 6.0, 16000, ("opusenc", "opusdec"), _opus(6)))
    codecs.append(Codec("speex-q0", "Speex NB q0", 2.15, 8000, ("speexenc", "speexdec"), _speex(0)))
    codecs.append(Codec("amr-nb-4.75", "AMR-NB 4.75", 4.75, 8000, ("libopencore-amrnb", "ffmpeg"), _amrnb))
    return {codec.name: codec for codec in codecs}


CODECS: dict[str, Codec] = _build()
