"""Typed configuration and presets of the unified AR+DiT speech model (TTS and ASR in one LM).

``audio="latents"``: continuous tokenizer latents (HoliTok, 25 Hz × 128) enter the LM as patches of
``patch_size`` frames through a causal patch encoder and leave through a flow-matching DiT head.
``audio="tokens"``: discrete codes (SiTok, 12.5 Hz, 65,536 codes) enter through an embedding table
and leave through a softmax over the codebook: the discrete variant, same LM and text side.

``ardit-base`` follows the paper (SYSTEMS.md B.4): a Qwen2.5-0.5B-shaped LM body (896 wide, 24
layers, 14 heads, MLP 4864), an 8-layer 1024-wide patch encoder (~102M) and an 18-layer 1024-wide
DiT head (~345M). Our text side is a character vocabulary, not Qwen's 151k BPE table, so the LM has
no 136M embedding matrix; its body is within 10 % of Qwen's (we use full multi-head attention).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..config import InferenceDefaults
from ..errors import ConfigError


@dataclass(frozen=True)
class ARDiTConfig(InferenceDefaults):
    name: str = "ardit-tiny"
    audio: Literal["latents", "tokens"] = "latents"
    # The tokenizer checkpoint whose latents/codes this model reads and writes (a directory or a
    # bundled name) and the sha256 of its weights: a model is only loaded with the tokenizer it
    # was trained on.
    tokenizer: str = ""
    tokenizer_sha256: str = ""
    latent_dim: int = 128  # latents: channels per frame
    patch_size: int = 4  # frames per LM position (latents: 4 × 40 ms = 6.25 patches/s); tokens: 1
    codebook_size: int = 65536  # tokens: size of the code vocabulary
    frame_rate: float = 25.0  # tokenizer frames per second (HoliTok 25, SiTok 12.5)
    text_vocab: Literal["char", "phoneme"] = "char"
    # causal LM
    dim: int = 64
    heads: int = 4
    mlp_dim: int = 128
    layers: int = 2
    # latents in: causal patch encoder over frames, then frames of a patch concatenated → LM width
    patch_dim: int = 64
    patch_heads: int = 4
    patch_mlp_dim: int = 128
    patch_layers: int = 1
    # latents out: DiT over [LM state | history frames | noisy patch], adaptive norm on flow time
    dit_dim: int = 64
    dit_heads: int = 4
    dit_mlp_dim: int = 128
    dit_layers: int = 2
    history_patches: int = 2
    time_embed_dim: int = 128
    cond_drop: float = 0.2  # probability of dropping the LM state in training (trains CFG)
    # Text alignment (a deviation from the paper, off by default): CTC from the TTS states that
    # generate the speech to the transcript, each state read as ``align_upsample`` sub-frames (a
    # 6.25 Hz patch is slower than English characters). It makes those states say which units come
    # next, which the flow loss alone never asks of them (docs/ardit.md, "Alignment loss").
    align_weight: float = 0.0
    align_upsample: int = 4
    # The same CTC head on the audio states of ASR items (joint CTC/attention ASR, Kim et al. 2017; a
    # deviation, off by default): the audio positions must carry their words before the text is written.
    asr_ctc_weight: float = 0.0
    # Dropout on the speech positions the TTS LM reads, in training and generation alike (Tacotron 2's
    # always-on pre-net dropout, a deviation from the paper, off by default): a bottleneck on the
    # audio so far, so the next patch cannot be predicted from it alone and the text must be read.
    speech_input_dropout: float = 0.0
    # Next-patch regression (latents; a deviation from the paper, off by default): a linear head on each
    # state that generates a patch predicts that patch, MSE × this weight. Unlike the flow loss, whose
    # gradient through the state is mostly noise from the flow time and the patch's unpredictable detail,
    # it asks the state for the patch's expected value, to which the upcoming text contributes
    # (docs/ardit.md, "Why the text is not read").
    regression_weight: float = 0.0
    # A text aligner for TTS (latents; Grad-TTS's, a deviation from the paper, off at 0 layers): a
    # bidirectional text encoder of this many layers predicts a mean latent frame and a duration per
    # text unit; monotonic alignment search pairs units with frames in training (its losses: the means'
    # squared error on the path and the durations'), predicted durations in generation, which then
    # ends with the last unit's frames. The unit states aligned to a patch are added to the LM input
    # that generates it and to the DiT's noisy frames, so the model is told what to say where
    # (docs/ardit.md, "The text aligner"). ASR does not use it.
    aligner_layers: int = 0
    # The units the aligner reads: None, the text vocabulary (sharing the LM's text embeddings), or
    # its own, e.g. phonemes while the LM reads and ASR writes characters. What a text sounds like is
    # far easier to learn from a few hours of speech in phonemes than in English spelling.
    aligner_vocab: Literal["char", "phoneme"] | None = None
    # A global speaker condition for the DiT (latents; a deviation from the paper, off by default): the
    # mean and standard deviation over time of a reference's normalised latents, projected by a layer
    # that starts at zero and added to the DiT's adaptive-norm condition in both CFG branches. In
    # training the reference is the item itself, replaced by zeros with probability `speaker_drop`;
    # in generation it is the voice prompt (zeros without one). Continuation alone keeps too little
    # of a prompt's voice at this size (docs/ardit.md, the voice prompt measurements).
    speaker_condition: bool = False
    speaker_drop: float = 0.2
    # A bidirectional ASR encoder (latents; a deviation from the paper, off at 0 layers): a transformer
    # over an ASR item's frames with its own CTC head (``asr_encoder_upsample`` sub-frames per frame),
    # whose states also enter the LM's audio positions of ASR items through a layer that starts at zero.
    # The paper's ASR reads the audio through the causal patch encoder TTS uses, and on ~10 h it did not
    # learn to transcribe (docs/ardit.md, "A bidirectional ASR encoder").
    asr_encoder_layers: int = 0
    asr_encoder_dim: int = 256
    asr_encoder_heads: int = 4
    asr_encoder_mlp_dim: int = 768
    asr_encoder_upsample: int = 2
    # Residual dropout in the ASR encoder's blocks (training only; 0: none): on ~1.3 h of real speech the
    # encoder's training CTC falls to a tenth of its dev CTC (docs/ardit.md, "Dropout in the ASR encoder
    # (session 34)": it keeps the dev CTC flat, but the words read no better).
    asr_encoder_dropout: float = 0.0
    # How ``transcribe`` reads: "attention", the LM writing text after the audio (the paper's), or
    # "ctc", greedy over the ASR encoder's CTC head (needs ``asr_encoder_layers``).
    asr_decoding: Literal["attention", "ctc"] = "attention"
    # CTC reading: prefix beam search over ``asr_beam_width`` prefixes (1: greedy) with the character
    # n-gram ``asr_text_lm`` (a bundled name or a directory, speechtok text-lm; None: no text prior),
    # ``asr_lm_weight`` · its log-probability and ``asr_unit_bonus`` per letter (speechtok.ctc_decode).
    asr_beam_width: int = 1
    asr_text_lm: str | None = None
    asr_lm_weight: float = 1.0
    asr_unit_bonus: float = 1.0
    sample_steps: int = 8
    cfg_scale: float = 1.0
    eos_threshold: float = 0.5  # TTS stops at the first patch whose end-of-speech probability exceeds this
    max_speech_seconds: float = 30.0  # generation stops here if no end-of-speech was predicted
    max_text_units: int = 400  # ASR stops here if no end-of-text was predicted
    # A clip of speechtok/assets whose voice TTS takes when given no voice or prompt (SpeechLM.generate:
    # the speaker condition and the mean latent); a bundle's choice, made on dev (docs/ardit.md).
    default_voice: str | None = None

    #: Decoding defaults: they change no weight, so fine-tuning may start from a checkpoint that differs in
    #: them (a bundle carries its chosen end-of-speech threshold; the run trains with its own config's).
    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = ("sample_steps", "cfg_scale", "eos_threshold",
                                                   "max_speech_seconds", "max_text_units", "default_voice",
                                                   "asr_decoding", "asr_beam_width", "asr_text_lm",
                                                   "asr_lm_weight", "asr_unit_bonus")
    #: Training noise with no weights of its own: a fine-tune may change it. (Not speech_input_dropout:
    #: it acts in generation too, so it is part of how the model speaks.)
    OBJECTIVE_FIELDS: ClassVar[tuple[str, ...]] = ("cond_drop", "speaker_drop", "asr_encoder_dropout")
    #: The ASR encoder's shape: free while a fine-tune adds the encoder, fixed once its --init has one.
    ASR_ENCODER_FIELDS: ClassVar[tuple[str, ...]] = ("asr_encoder_layers", "asr_encoder_dim", "asr_encoder_heads",
                                                     "asr_encoder_mlp_dim", "asr_encoder_upsample")

    #: Fields a fine-tune may switch on over its --init checkpoint: they add a fresh head it lacks.
    FINETUNE_FIELDS: ClassVar[tuple[str, ...]] = ("align_weight", "asr_ctc_weight", "regression_weight",
                                                  "aligner_layers", "speaker_condition")
    #: Parts a fine-tune may replace, as {part: (its config fields, its modules)}: an aligner that reads
    #: other units, or an ASR encoder added or of another shape, starts fresh, its input layers at zero
    #: again, so the model starts as its checkpoint (a reshaped encoder loaded over a trained one would
    #: compute something else without a shape error).
    REPLACEABLE_PARTS: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
        "text aligner": (("aligner_vocab",), ("aligner", "aligner_embed", "aligned_lm_in", "aligned_dit_in")),
        "ASR encoder": (ASR_ENCODER_FIELDS, ("asr_in", "asr_encoder", "asr_ctc_head", "asr_lm_in")),
    }

    def with_decoding(self, **changes: object) -> ARDiTConfig:
        """This config with other decoding settings (checked). Greedy reading (``asr_beam_width=1``)
        without a text LM named drops the config's: greedy has no prior."""
        if changes.get("asr_beam_width") == 1:
            changes.setdefault("asr_text_lm", None)
        return super().with_decoding(**changes)

    def check_init(self, source: ARDiTConfig, where: str) -> None:
        """A fine-tune over ``source`` may add an ASR encoder or replace a trained one by another shape
        (``REPLACEABLE_PARTS``), but not drop a trained one: a preset's default of 0 layers would
        otherwise lose it without a word."""
        if source.asr_encoder_layers and not self.asr_encoder_layers:
            raise ConfigError(f"{where}: has a trained ASR encoder and this run's asr_encoder_layers is 0;"
                              " fine-tuning keeps it (or replaces it: give its shape)")

    def __post_init__(self) -> None:
        if self.audio not in ("latents", "tokens"):
            raise ConfigError(f"{self.name}: audio must be 'latents' or 'tokens', got {self.audio!r}")
        if self.audio == "tokens" and self.patch_size != 1:
            raise ConfigError(f"{self.name}: discrete tokens enter one per position (patch_size 1)")
        if self.patch_size < 1 or self.history_patches < 0 or self.sample_steps < 1 or self.time_embed_dim % 2:
            raise ConfigError(f"{self.name}: patch_size and sample_steps must be >= 1, history_patches >= 0,"
                              " time_embed_dim even")
        if not 0.0 <= self.cond_drop <= 1.0:
            raise ConfigError(f"{self.name}: cond_drop must be in 0..1, got {self.cond_drop}")
        if self.align_weight < 0.0 or self.asr_ctc_weight < 0.0 or self.align_upsample < 1:
            raise ConfigError(f"{self.name}: align_weight and asr_ctc_weight must be >= 0 and align_upsample >= 1,"
                              f" got {self.align_weight}, {self.asr_ctc_weight} and {self.align_upsample}")
        if self.regression_weight < 0.0 or (self.regression_weight and self.audio != "latents"):
            raise ConfigError(f"{self.name}: regression_weight must be >= 0 and needs audio 'latents',"
                              f" got {self.regression_weight} with {self.audio!r}")
        if self.aligner_vocab and not self.aligner_layers:
            raise ConfigError(f"{self.name}: aligner_vocab {self.aligner_vocab!r} needs aligner_layers > 0")
        if self.aligner_layers < 0 or (self.aligner_layers and self.audio != "latents"):
            raise ConfigError(f"{self.name}: aligner_layers must be >= 0 and needs audio 'latents',"
                              f" got {self.aligner_layers} with {self.audio!r}")
        if not 0.0 <= self.speaker_drop <= 1.0 or (self.speaker_condition and self.audio != "latents"):
            raise ConfigError(f"{self.name}: speaker_drop must be in 0..1 and speaker_condition needs audio 'latents',"
                              f" got {self.speaker_drop} with {self.audio!r}")
        for name in ("speech_input_dropout", "asr_encoder_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{self.name}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.asr_encoder_layers < 0 or self.asr_encoder_upsample < 1 or (self.asr_encoder_layers and self.audio != "latents"):
            raise ConfigError(f"{self.name}: asr_encoder_layers must be >= 0 and needs audio 'latents',"
                              f" asr_encoder_upsample >= 1, got {self.asr_encoder_layers} with {self.audio!r}"
                              f" and {self.asr_encoder_upsample}")
        if self.asr_decoding not in ("attention", "ctc") or (self.asr_decoding == "ctc" and not self.asr_encoder_layers):
            raise ConfigError(f"{self.name}: asr_decoding must be 'attention' or 'ctc' (which needs"
                              f" asr_encoder_layers > 0), got {self.asr_decoding!r}")
        if self.asr_beam_width < 1 or ((self.asr_beam_width > 1 or self.asr_text_lm) and self.asr_decoding != "ctc"):
            raise ConfigError(f"{self.name}: asr_beam_width must be >= 1, and beam search or asr_text_lm needs"
                              f" asr_decoding 'ctc', got {self.asr_beam_width} with {self.asr_decoding!r}")
        if self.asr_text_lm is not None and (not self.asr_text_lm or self.asr_beam_width < 2):
            raise ConfigError(f"{self.name}: asr_text_lm needs a name and asr_beam_width >= 2 (greedy reading"
                              f" has no prior), got {self.asr_text_lm!r} with width {self.asr_beam_width}")
        if not (math.isfinite(self.asr_lm_weight) and self.asr_lm_weight >= 0 and math.isfinite(self.asr_unit_bonus)):
            raise ConfigError(f"{self.name}: asr_lm_weight must be a finite number >= 0 and asr_unit_bonus finite,"
                              f" got {self.asr_lm_weight} and {self.asr_unit_bonus}")
        check_eos_threshold(self.eos_threshold, f"{self.name}: eos_threshold")
        voice = self.default_voice
        if voice is not None and (self.audio != "latents" or not voice or Path(voice).name != voice
                                  or Path(voice).suffix.lower() not in _audio_formats()):
            raise ConfigError(f"{self.name}: default_voice must name an audio clip of speechtok/assets and needs"
                              f" audio 'latents', got {voice!r} with {self.audio!r}")
        for width, heads in ((self.dim, self.heads), (self.patch_dim, self.patch_heads), (self.dit_dim, self.dit_heads),
                             (self.asr_encoder_dim, self.asr_encoder_heads)):
            if width % heads:
                raise ConfigError(f"{self.name}: width {width} is not divisible by {heads} heads")

    @property
    def patch_rate(self) -> float:
        return self.frame_rate / self.patch_size


def _audio_formats() -> tuple[str, ...]:
    from ..audio import AUDIO_FORMATS  # only when a default voice is named: configs load without the audio stack

    return tuple(AUDIO_FORMATS)


def check_eos_threshold(value: float, name: str = "eos_threshold") -> float:
    """The end-of-speech threshold is a probability strictly inside (0, 1): at 0 or 1 TTS would stop
    after the first patch or never."""
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {value}")
    return value


def _sitok(config: ARDiTConfig) -> ARDiTConfig:
    """The discrete variant of a preset: SiTok codes at 12.5 Hz, one per LM position."""
    return dataclasses.replace(config, name=config.name + "-sitok", audio="tokens", patch_size=1, frame_rate=12.5)


_TINY = ARDiTConfig()
_SMALL = ARDiTConfig(name="ardit-small", dim=192, heads=4, mlp_dim=512, layers=4, patch_dim=128, patch_heads=4,
                     patch_mlp_dim=256, patch_layers=2, dit_dim=128, dit_heads=4, dit_mlp_dim=256, dit_layers=3)
_BASE = ARDiTConfig(name="ardit-base", dim=896, heads=14, mlp_dim=4864, layers=24, patch_dim=1024, patch_heads=16,
                    patch_mlp_dim=2730, patch_layers=8, dit_dim=1024, dit_heads=16, dit_mlp_dim=4096, dit_layers=18,
                    time_embed_dim=256)

PRESETS: dict[str, ARDiTConfig] = {c.name: c for c in (_TINY, _SMALL, _BASE, _sitok(_TINY), _sitok(_SMALL), _sitok(_BASE))}


def get_preset(name: str) -> ARDiTConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown AR+DiT preset {name!r} (available: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])
