"""An AR+DiT model together with its tokenizer: text ↔ waveform for TTS and ASR.

The tokenizer is either HoliTok (continuous latents, normalised by the model's own latent
statistics, fitted on its training set) or SiTok (discrete codes).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..assets import ASSETS
from ..audio import load_audio
from ..bundled import load_checkpoint_kind, resolve
from ..errors import CheckpointError, ConfigError
from .ardit import ARDiT
from .ardit_config import ARDiTConfig
from .holitok import HoliTok
from .sitok import SiTok

Tokenizer = HoliTok | SiTok


def tokenizer_sha256(source: str | Path) -> str:
    """The recorded sha256 of a tokenizer checkpoint's weights (verified when it is loaded)."""
    try:
        return json.loads((resolve(source) / "config.json").read_text())["weights"]["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: not a tokenizer checkpoint ({exc})") from None


def load_tokenizer(source: str | Path) -> Tokenizer:
    kind = load_checkpoint_kind(source)
    classes = {"holitok": HoliTok, "sitok": SiTok}
    if kind not in classes:
        raise CheckpointError(f"{source}: is no HoliTok or SiTok checkpoint (kind {kind!r})")
    return classes[kind].from_pretrained(source).eval()


def check_pair(config: ARDiTConfig, tokenizer: Tokenizer) -> None:
    """Refuse a tokenizer whose representation the model cannot read."""
    if config.audio == "latents":
        if not isinstance(tokenizer, HoliTok) or tokenizer.latent_dim != config.latent_dim \
                or abs(tokenizer.latent_rate - config.frame_rate) > 1e-6:
            raise ConfigError(f"{config.name} reads {config.latent_dim}-dim latents at {config.frame_rate} Hz;"
                              f" the tokenizer is a {type(tokenizer).__name__}")
    elif not isinstance(tokenizer, SiTok) or tokenizer.codebook_size != config.codebook_size \
            or tokenizer.codebooks != 1 or abs(tokenizer.token_rate - config.frame_rate) > 1e-6:
        raise ConfigError(f"{config.name} reads {config.codebook_size} codes (one codebook) at {config.frame_rate} Hz;"
                          f" the tokenizer is a {type(tokenizer).__name__}")


def match_voice(latents: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Normalised latents ``[F, D]`` moved by ``strength`` × (the reference's mean over time − theirs).

    What stays of latents when the words are averaged away over time is mostly the voice and its
    channel (:meth:`ARDiT.speaker_vector`), so this gives speech the reference's voice where the model
    did not take it from its condition or prompt, and leaves what changes from frame to frame (the words)
    as generated. A deviation from the paper, measured in docs/ardit.md.
    """
    return latents + strength * (reference.mean(0) - latents.mean(0))


def check_voice_match(value: float, name: str = "voice_match") -> float:
    """How far the speech moves to a voice's mean latent: 0 (not at all) or more."""
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def encode_clip(tokenizer: Tokenizer, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One clip → the tokenizer's raw representation on the CPU: HoliTok's posterior ``[F, 2D]``
    (μ ‖ log σ) or SiTok's codes ``[F]``. Training data and inference both start here."""
    batch = wav.reshape(1, 1, -1)
    with torch.inference_mode():
        if isinstance(tokenizer, HoliTok):
            return tokenizer.encode_posterior(batch, sample_rate)[0].T.float().cpu()
        return tokenizer.encode(batch, sample_rate)[0, 0].cpu()


class SpeechLM:
    """``tts(text) → waveform`` and ``asr(waveform) → text`` with one model and its tokenizer."""

    def __init__(self, model: ARDiT, tokenizer: Tokenizer, *, vocoder: str | None = None) -> None:
        """``vocoder`` overrides a SiTok tokenizer's own (``"griffin-lim"`` or a vocoder checkpoint)."""
        check_pair(model.config, tokenizer)
        self.model, self.tokenizer, self.vocoder = model.eval(), tokenizer.eval(), vocoder
        self._default_voice: torch.Tensor | None = None

    @classmethod
    def from_pretrained(cls, source: str | Path, *, tokenizer: str | Path | None = None,
                        vocoder: str | None = None) -> SpeechLM:
        """Load a model and the tokenizer recorded in its config (or ``tokenizer``, whose weights must
        be the recorded ones)."""
        model = ARDiT.from_pretrained(source)
        tokenizer_source = tokenizer or model.config.tokenizer
        if not tokenizer_source:
            raise CheckpointError(f"{source}: records no tokenizer; pass one")
        expected = model.config.tokenizer_sha256
        if expected and tokenizer_sha256(tokenizer_source) != expected:
            raise CheckpointError(f"{tokenizer_source}: is not the tokenizer {source} was trained with"
                                  f" (weights sha256 {expected[:12]}…)")
        return cls(model, load_tokenizer(tokenizer_source), vocoder=vocoder)

    @property
    def sample_rate(self) -> int:
        return self.tokenizer.sample_rate

    def features(self, wav: np.ndarray | torch.Tensor, sample_rate: int, *, sample: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """One clip → what the model reads: normalised latents ``[F, D]`` (posterior mean, or a
        sample) or codes ``[F]``, trimmed to whole patches."""
        wav = torch.as_tensor(np.asarray(wav, dtype=np.float32) if isinstance(wav, np.ndarray) else wav)
        out = encode_clip(self.tokenizer, wav, sample_rate)
        if isinstance(self.tokenizer, HoliTok):
            latents = self.tokenizer.sample_posterior(out.T[None], generator=generator)[0].T if sample \
                else out[:, : self.model.config.latent_dim]
            out = self.model.normalize(latents)
        return self.model.trim_to_patches(out)

    @torch.inference_mode()
    def synthesize(self, audio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model-side audio (normalised latents ``[F, D]`` or codes ``[F]``) → waveform ``[1, 1, T]``
        (``generator`` seeds SiTok's decoder noise)."""
        if isinstance(self.tokenizer, HoliTok):
            return self.tokenizer.decode(self.model.denormalize(audio).T[None].to(self.tokenizer.device))
        return self.tokenizer.decode(audio[None, None].to(self.tokenizer.device), vocoder=self.vocoder,
                                     generator=generator)

    def default_voice(self) -> torch.Tensor | None:
        """The features of the clip of speechtok/assets named by the model's ``default_voice`` (None
        without one), encoded once."""
        name = self.model.config.default_voice
        if name is None:
            return None
        if self._default_voice is None:
            path = ASSETS / name
            if not path.is_file():
                raise CheckpointError(f"{self.model.config.name}: its default voice {name!r} is not in {ASSETS}")
            self._default_voice = self.features(*load_audio(path))
        return self._default_voice

    def check_voice(self) -> None:
        """Refuse a voice reference on a model that cannot take one (checked before it is encoded): codes
        have no latent mean to move and a code model no speaker condition."""
        if self.model.config.audio != "latents":
            raise ConfigError(f"{self.model.config.name} speaks SiTok codes: a voice reference needs latents"
                              " (give the voice as a prompt to be continued)")

    def generate(self, text: str, *, prompt: tuple[np.ndarray, int] | None = None, prompt_text: str | None = None,
                 voice: tuple[np.ndarray, int] | None = None, voice_match: float = 1.0,
                 default_voice: bool = True, **generation: Any) -> torch.Tensor:
        """Text → model-side audio (normalised latents ``[F, D]`` or codes ``[F]``), what :meth:`tts` decodes.

        With ``prompt`` (audio, rate) the model continues the prompt's voice; its transcript is
        ``prompt_text`` or, when not given, the model's own transcription of it. ``voice`` (audio, rate)
        needs no transcript and is not continued: a model with a speaker condition hears it there. Given
        neither, the model's :meth:`default_voice` (if it has one, and unless ``default_voice`` is False)
        is the voice. On latents the speech's
        mean over time is then moved ``voice_match`` of the way to the voice's (else the prompt's): 0
        leaves it as generated, 1 matches it (:func:`match_voice`).
        """
        check_voice_match(voice_match)
        reference = None
        if voice is not None:
            self.check_voice()
            reference = self.features(*voice)
            if not reference.shape[0]:
                raise ConfigError(f"the voice is shorter than one patch ({self.model.config.patch_size} frames)")
        elif prompt is None and default_voice and self.model.config.default_voice:
            reference = self.default_voice()
        if reference is not None and self.model.config.speaker_condition:
            generation["speaker"] = reference
        prompt_audio = None
        if prompt is not None:
            prompt_audio = self.features(*prompt)
            prompt_text = self.model.transcribe(prompt_audio) if prompt_text is None else prompt_text
            # the prompt's share of the joined text (exact for characters; phonemes of the joined text may differ slightly)
            generation.setdefault("prompt_units", len(self.model.aligner_vocabulary.encode(prompt_text)))
            text = f"{prompt_text} {text}"
        audio = self.model.generate_speech(text, prompt=prompt_audio, **generation)
        if not audio.shape[0]:
            raise ConfigError("no speech generated: max_seconds is shorter than one patch")
        reference = prompt_audio if reference is None else reference
        if reference is not None and self.model.config.audio == "latents" and voice_match:
            audio = match_voice(audio, reference.to(audio.device), voice_match)
        return audio

    def tts(self, text: str, **options: Any) -> torch.Tensor:
        """Text → waveform ``[1, 1, T]`` at :attr:`sample_rate`; ``options`` as for :meth:`generate`."""
        return self.synthesize(self.generate(text, **options), options.get("generator"))

    def asr(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> str:
        return self.model.transcribe(self.features(wav, sample_rate))
