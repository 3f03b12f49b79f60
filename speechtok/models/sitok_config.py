"""SiTok's typed configuration and named presets.

Paper presets keep SiTok's width (1536), MLP (4096) and 16 heads and vary depth. The paper does not
publish the layer split; we split encoder/decoder evenly with a 4-layer CTC head (S 8+8, B 12+12,
L 16+16, XL 24+24), which reproduces the published 0.63B / 0.88B / 1.12B / 1.61B within 5 %.

The ``-rvq<K>`` presets are SiTok's multi-codebook variant: a residual VQ of K codebooks of 2^14
entries at 12.5 Hz (K × 14 bits per frame: 350, 700 or 1400 bps), trained with quantiser dropout so
that the first k codebooks decode on their own.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..config import InferenceDefaults
from ..errors import ConfigError
from ..mel_config import MelConfig


def check_decoding_scale(value: float, name: str) -> float:
    """A guidance scale or noise temperature: finite and >= 0 (NaN or inf would decode to NaN audio)."""
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    return value


@dataclass(frozen=True)
class SiTokConfig(InferenceDefaults):
    name: str = "sitok-tiny"
    mel: MelConfig = field(default_factory=MelConfig)
    stack: int = 4  # mel frames per token: 50 Hz → 12.5 Hz
    dim: int = 64
    heads: int = 4
    mlp_dim: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    ctc_layers: int = 1
    quantizer: Literal["vq", "bsq"] = "vq"
    codebook_size: int = 65536  # entries per codebook
    codebooks: int = 1  # > 1: residual VQ, one code per codebook and frame
    codebook_dropout: float = 1.0  # residual VQ: fraction of items that keep only their first k ~ U{1..K} codebooks
    code_dim: int = 32  # VQ code dimension; BSQ uses log2(codebook_size) instead
    vq_decay: float = 0.99
    vq_commitment: float = 0.25
    vq_dead_threshold: float = 0.01
    ctc_vocab: Literal["char", "phoneme"] = "char"
    # Characters (~14/s) outnumber 12.5 Hz tokens, which CTC cannot emit; each token therefore
    # predicts `ctc_upsample` consecutive CTC frames (50 Hz with 4).
    ctc_upsample: int = 4
    ctc_weight: float = 0.1
    token_drop: float = 0.1  # probability of dropping all tokens of an item (trains token CFG)
    time_embed_dim: int = 256
    sample_steps: int = 16
    cfg_scale: float = 1.0  # 1.0 = no guidance
    # Scale of the decoder's starting noise (Grad-TTS's temperature): 1 samples the trained prior; lower
    # values trade the variety of fine detail for closeness to what the tokens say (0: one fixed path).
    sample_temperature: float = 1.0
    # Shortcut decoder (Frans et al. 2024): the decoder also sees the Euler step size d and learns, by
    # self-consistency, that one step of 2d lands where two steps of d do, so 2-4 steps approach the
    # 16-step result. Off, the decoder has no step-size input (checkpoints without it load unchanged).
    shortcut: bool = False
    shortcut_fraction: float = 0.25  # share of each batch that also trains the self-consistency target
    shortcut_levels: int = 7  # step sizes 2d = 1, 1/2, ..., 2^-(levels-1) are trained; d = 2^-levels is the flow
    # Light-weight diffusion head (paper App. C.1): the first decoder_layers − decoder_head_layers layers
    # run once per decode on the token condition; only the last decoder_head_layers iterate with x_t.
    decoder_head_layers: int = 0  # 0 = every decoder layer iterates
    # Guidance distillation (Meng et al. 2023): the decoder also sees the guidance scale w and learns to
    # give, in one pass, the two-pass CFG velocity it gives at w = 1 (a stop-gradient target), so
    # guided decoding costs what unguided decoding does. Off, the decoder has no scale input.
    guidance_distill: bool = False
    guidance_fraction: float = 0.25  # share of each batch that also trains the one-pass guided target
    guidance_max: float = 4.0  # w ~ U[1, guidance_max]; decoding at a larger scale runs the two passes
    # Semantic distillation (a deviation from the paper, which has only CTC): a linear head on the
    # token condition is trained to point where a frozen teacher's frame features point (cosine),
    # e.g. teacher "speechtok.data.moonshine:teacher"; teacher_dim is filled in from the teacher.
    teacher: str | None = None
    teacher_dim: int = 0
    teacher_weight: float = 1.0

    #: Decoding defaults: they change no weight, so fine-tuning may start from a checkpoint that differs in them.
    INFERENCE_FIELDS: ClassVar[tuple[str, ...]] = ("sample_steps", "cfg_scale", "sample_temperature")
    #: Loss weights and training noise: a fine-tune may change them too (e.g. a stronger CTC weight).
    OBJECTIVE_FIELDS: ClassVar[tuple[str, ...]] = ("ctc_weight", "token_drop", "codebook_dropout", "vq_commitment",
                                                   "vq_decay", "vq_dead_threshold", "teacher_weight")
    #: Fields a fine-tuning run may switch on over its --init checkpoint: they add freshly initialised
    #: modules (the step-size and guidance embeddings, the teacher head) that the source checkpoint lacks.
    FINETUNE_FIELDS: ClassVar[tuple[str, ...]] = ("shortcut", "shortcut_fraction", "shortcut_levels", "teacher",
                                                  "teacher_dim", "guidance_distill", "guidance_fraction",
                                                  "guidance_max")
    #: Stacks a fine-tune may deepen, as {depth field: module}: when the run asks for more layers than its
    #: ``--init`` checkpoint has, the trained layers load and the new ones are appended silenced (they add
    #: nothing at first), so the model starts as the checkpoint: its codes unchanged. The encoder is where
    #: the words are lost (docs/training.md, "Where the words are lost"), so it is the one that may grow.
    GROWABLE_STACKS: ClassVar[dict[str, str]] = {"encoder_layers": "encoder"}
    #: Parts a fine-tune may replace, as {part: (its config fields, its modules)}: when an ``--init``
    #: checkpoint differs from the run in a part's fields, that part's modules start fresh and every
    #: other weight loads (``sitok-small-rvq4`` at 700 bps over a trained 200 bps ``sitok-small``; a
    #: phoneme CTC output over a character one; a light-weight diffusion head, whose iterated layers
    #: start fresh, over a decoder that iterates whole). The preset's name may change with a replaced part.
    REPLACEABLE_PARTS: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
        "quantiser": (("quantizer", "codebooks", "codebook_size"), ("quantizer",)),
        "CTC output": (("ctc_vocab", "ctc_upsample"), ("ctc_out",)),
        "decoder layout": (("decoder_head_layers",), ("decoder", "decoder_body")),
    }

    def __post_init__(self) -> None:
        if self.quantizer == "bsq" and self.codebook_size & (self.codebook_size - 1):
            raise ConfigError(f"{self.name}: BSQ needs a power-of-two codebook, got {self.codebook_size}")
        if self.codebooks < 1 or (self.codebooks > 1 and self.quantizer != "vq"):
            raise ConfigError(f"{self.name}: codebooks must be >= 1, and more than one needs quantizer 'vq'"
                              f" (got {self.codebooks} with {self.quantizer!r})")
        if not 0.0 <= self.codebook_dropout <= 1.0:
            raise ConfigError(f"{self.name}: codebook_dropout must lie in [0, 1], got {self.codebook_dropout}")
        if self.dim % self.heads:
            raise ConfigError(f"{self.name}: dim {self.dim} is not divisible by heads {self.heads}")
        check_decoding_scale(self.cfg_scale, f"{self.name}: cfg_scale")
        check_decoding_scale(self.sample_temperature, f"{self.name}: sample_temperature")
        if not 0 <= self.decoder_head_layers < self.decoder_layers:
            raise ConfigError(f"{self.name}: decoder_head_layers must lie in 0..{self.decoder_layers - 1}"
                              f" (decoder_layers - 1), got {self.decoder_head_layers}")
        if self.teacher_dim < 0 or (self.teacher_dim and not self.teacher):
            raise ConfigError(f"{self.name}: teacher_dim {self.teacher_dim} needs a teacher (package.module:factory)")
        if not 0 < self.shortcut_fraction <= 1 or self.shortcut_levels < 1:
            raise ConfigError(f"{self.name}: shortcut_fraction must lie in (0, 1] and shortcut_levels be >= 1")
        if not 0 < self.guidance_fraction <= 1 or not self.guidance_max > 1:
            raise ConfigError(f"{self.name}: guidance_fraction must lie in (0, 1] and guidance_max be > 1")

    @property
    def token_rate(self) -> float:
        return self.mel.frame_rate / self.stack

    @property
    def bits_per_token(self) -> int:
        """Bits of one 12.5 Hz frame over all codebooks."""
        return self.codebooks * int(math.log2(self.codebook_size))

    @property
    def bitrate(self) -> float:
        return self.token_rate * self.bits_per_token


def _rvq(base: SiTokConfig, codebooks: int) -> SiTokConfig:
    return dataclasses.replace(base, name=f"{base.name}-rvq{codebooks}", codebooks=codebooks, codebook_size=2**14)


def _paper(name: str, layers: int) -> SiTokConfig:
    return SiTokConfig(name=name, dim=1536, heads=16, mlp_dim=4096, encoder_layers=layers,
                       decoder_layers=layers, ctc_layers=4, time_embed_dim=256)


_TINY = SiTokConfig()
_SMALL = SiTokConfig(name="sitok-small", dim=256, heads=4, mlp_dim=768, encoder_layers=4, decoder_layers=6, ctc_layers=2)

PRESETS: dict[str, SiTokConfig] = {
    "sitok-tiny": _TINY,
    "sitok-small": _SMALL,
    "sitok-tiny-rvq4": _rvq(_TINY, 4),
    "sitok-small-rvq2": _rvq(_SMALL, 2),
    "sitok-small-rvq4": _rvq(_SMALL, 4),
    "sitok-small-rvq8": _rvq(_SMALL, 8),
    "sitok-s": _paper("sitok-s", 8),
    "sitok-b": _paper("sitok-b", 12),
    "sitok-l": _paper("sitok-l", 16),
    "sitok-xl": _paper("sitok-xl", 24),
}


def get_preset(name: str) -> SiTokConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown SiTok preset {name!r} (available: {', '.join(PRESETS)})")
    return dataclasses.replace(PRESETS[name])
