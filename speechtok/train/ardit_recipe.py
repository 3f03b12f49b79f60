"""Training recipe of the AR+DiT model: joint TTS and ASR over a frozen tokenizer's representation.

Each training utterance (whole, with its transcript) is encoded once by the tokenizer named in the
model config: HoliTok posteriors (a fresh latent sample is drawn every epoch, as the paper's
reference code samples μ + ε·σ) or SiTok codes. Every item is a TTS item with probability
``tts_ratio`` (the paper's TTS:ASR ≈ 5:1 is 0.833; 1 trains TTS only, 0 ASR only), drawn from
``(seed, epoch, index)`` so resume is exact.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..audio import load_audio
from ..data.engine_config import source_of
from ..data.manifest import Utterance
from ..data.teacher import Teacher, load_teacher, teacher_frames
from ..data.threads import read_ahead
from ..errors import ConfigError, DataError
from ..models.ardit import MODEL_KIND, ARDiT, AttentionPrior, Example
from ..models.ardit_config import ARDiTConfig
from ..models.speech_lm import check_pair, encode_clip, load_tokenizer, tokenizer_sha256
from ..modules.distillation import FeatureHead
from ..text import Vocabulary, get_vocabulary
from .recipe import Recipe


@dataclass(frozen=True)
class ARDiTObjective:
    tts_ratio: float = 5 / 6  # share of TTS items (paper: TTS:ASR ≈ 5:1)
    max_seconds: float = 12.0  # longer utterances are left out (items are whole utterances)
    # Diagonal attention prior on the LM's first `prior_heads` heads (0: off; a deviation from the
    # paper, see models.ardit.AttentionPrior): full strength for `prior_steps` steps, then annealed
    # linearly to nothing over `prior_anneal_steps`, so the model ends reading the text on its own.
    prior_heads: int = 0
    prior_width: float = 0.1
    prior_steps: int = 1000
    prior_anneal_steps: int = 1000
    # SpecAugment on the latents ASR items read in training (Park et al. 2019; a deviation from the
    # paper, off at 0 masks): `asr_time_masks` spans of up to `asr_time_mask_frames` frames and
    # `asr_channel_masks` bands of up to `asr_channel_mask_dims` latent dimensions are set to 0, the
    # latents' mean. ASR overfits a few hours of speech (docs/ardit.md); masks are the standard cure.
    asr_time_masks: int = 0
    asr_time_mask_frames: int = 10
    asr_channel_masks: int = 0
    asr_channel_mask_dims: int = 16
    # Tempo perturbation of ASR items (after Ko et al. 2015's speed perturbation; a deviation from the
    # paper, off at 0): the latents are resampled in time by a factor drawn from 1 ± `asr_time_warp`
    # (linear interpolation, rounded to whole patches), so the encoder meets each sentence at several
    # speaking rates instead of memorising one.
    asr_time_warp: float = 0.0
    # Distillation into the ASR encoder (a deviation from the paper, off without a teacher): a linear
    # head on the encoder's states predicts a frozen teacher's frame features on every frame of an ASR
    # item, the masked ones too (cosine distance × `asr_teacher_weight`). Dense targets from a model
    # trained on far more speech, where a transcript gives a few letters a second. A teacher is named
    # `package.module:factory` as for HoliTok (`speechtok.data.moonshine:teacher`); the evaluation's
    # judges are refused. Its features are computed once per utterance, with the latents.
    asr_teacher: str | None = None
    asr_teacher_weight: float = 1.0
    # Each teacher-forced input unit of an ASR item is replaced by a random unit with this probability
    # (targets unchanged; a deviation from the paper, off at 0). The masks hide audio; this hides the
    # history the model otherwise completes from sentences it has seen, so the audio has to carry it.
    asr_text_noise: float = 0.0
    # Where a TTS item's speaker condition comes from in training (models with one): "item", its own
    # latents; "speaker", another utterance of its speaker (its own when it is the speaker's only one),
    # so that the condition can carry the voice but not the words it is to predict.
    speaker_reference: Literal["item", "speaker"] = "item"
    # The model's top-level parts that train (empty: all of them); the others keep their --init
    # weights. ``[asr_in, asr_encoder, asr_ctc_head, asr_lm_in, text_head]`` adds an ASR encoder to a
    # bundle without changing one weight of how it speaks.
    train_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_only", tuple(self.train_only))  # a YAML list
        if not 0.0 <= self.tts_ratio <= 1.0:
            raise ConfigError(f"objective.tts_ratio must be in 0..1, got {self.tts_ratio}")
        if self.speaker_reference not in ("item", "speaker"):
            raise ConfigError(f"objective.speaker_reference must be 'item' or 'speaker', got {self.speaker_reference!r}")
        if not 0.0 <= self.asr_time_warp < 0.5:
            raise ConfigError(f"objective.asr_time_warp must be in [0, 0.5), got {self.asr_time_warp}")
        if not (math.isfinite(self.asr_teacher_weight) and self.asr_teacher_weight >= 0.0):
            raise ConfigError(f"objective.asr_teacher_weight must be a finite number >= 0, got {self.asr_teacher_weight}")
        if self.asr_teacher and self.tts_ratio == 1.0:
            raise ConfigError("objective.asr_teacher distils into the ASR encoder; tts_ratio 1 trains no ASR item")
        if not 0.0 <= self.asr_text_noise < 1.0:
            raise ConfigError(f"objective.asr_text_noise must be in [0, 1), got {self.asr_text_noise}")
        if min(self.asr_time_masks, self.asr_time_mask_frames, self.asr_channel_masks, self.asr_channel_mask_dims) < 0:
            raise ConfigError("objective: asr_time_masks, asr_time_mask_frames, asr_channel_masks and"
                              " asr_channel_mask_dims must be >= 0")
        if self.prior_heads < 0 or self.prior_width <= 0 or self.prior_steps < 0 or self.prior_anneal_steps < 0:
            raise ConfigError("objective: prior_heads, prior_steps and prior_anneal_steps must be >= 0 and"
                              f" prior_width > 0, got {self.prior_heads}, {self.prior_steps},"
                              f" {self.prior_anneal_steps} and {self.prior_width}")

    @property
    def masks_asr(self) -> bool:
        return bool(self.asr_time_masks and self.asr_time_mask_frames or self.asr_channel_masks and self.asr_channel_mask_dims)

    @property
    def perturbs_asr(self) -> bool:
        return self.masks_asr or self.asr_text_noise > 0 or self.asr_time_warp > 0

    def noisy_asr_inputs(self, text: torch.Tensor, units: int, generator: torch.Generator) -> torch.Tensor:
        """``text`` ``[n]`` with each id replaced, with probability ``asr_text_noise``, by a random
        label id of ``1 .. units - 1`` (0 is the blank, never a text unit)."""
        hit = torch.rand(text.shape, generator=generator) < self.asr_text_noise
        return torch.where(hit, torch.randint(1, units, text.shape, generator=generator), text)

    def perturb_asr(self, example: Example, units: int, generator: torch.Generator, patch_size: int = 1) -> Example:
        """An ASR item with its latents time-warped (to whole ``patch_size`` patches) and masked, and its
        teacher-forced inputs noised, as configured."""
        audio, teacher = example.audio, example.teacher
        if self.asr_time_warp:  # the teacher's features, on the same frames, warped with them
            joined = audio if teacher is None else torch.cat([audio, teacher.to(audio.dtype)], dim=1)
            joined = self.warp_asr_audio(joined, generator, patch_size)
            audio, teacher = (joined, None) if teacher is None else joined.split([audio.shape[1], teacher.shape[1]], 1)
        audio = self.mask_asr_audio(audio, generator) if self.masks_asr else audio
        inputs = self.noisy_asr_inputs(example.text, units, generator) if self.asr_text_noise else None
        return dataclasses.replace(example, audio=audio, inputs=inputs, teacher=teacher)

    def warp_asr_audio(self, audio: torch.Tensor, generator: torch.Generator, patch_size: int = 1) -> torch.Tensor:
        """Latents ``[F, D]`` resampled in time by a factor drawn from 1 ± ``asr_time_warp`` (above 1: faster
        speech, fewer frames), to a whole number of ``patch_size`` patches, at least one."""
        factor = 1.0 + self.asr_time_warp * (2.0 * float(torch.rand((), generator=generator)) - 1.0)
        frames = max(patch_size, round(audio.shape[0] / factor / patch_size) * patch_size)
        return torch.nn.functional.interpolate(audio.T[None], size=frames, mode="linear", align_corners=True)[0].T

    def mask_asr_audio(self, audio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Latents ``[F, D]`` with the time and channel masks drawn from ``generator`` set to 0."""
        masked = audio.clone()
        for count, width, axis in ((self.asr_time_masks, self.asr_time_mask_frames, 0),
                                   (self.asr_channel_masks, self.asr_channel_mask_dims, 1)):
            for _ in range(count):
                size = int(torch.randint(0, width + 1, (), generator=generator))
                start = int(torch.randint(0, max(1, audio.shape[axis] - size + 1), (), generator=generator))
                masked.narrow(axis, start, min(size, audio.shape[axis] - start)).zero_()
        return masked

    def prior(self, step: int) -> AttentionPrior | None:
        """The attention prior of training step ``step`` (None once annealed away, or when off)."""
        if not self.prior_heads or step >= self.prior_steps + self.prior_anneal_steps:
            return None
        scale = 1.0 if step < self.prior_steps else 1.0 - (step - self.prior_steps) / self.prior_anneal_steps
        return AttentionPrior(self.prior_heads, self.prior_width, scale)


class SpeechTextData:
    """Transcribed utterances with their tokenizer features (and a teacher's), computed once up front."""

    def __init__(self, rows: list[Utterance], tokenizer: Any, model: ARDiT, vocabulary: Vocabulary,
                 objective: ARDiTObjective, seed: int, progress: bool = True, load_workers: int = 1,
                 teacher: Teacher | None = None) -> None:
        self.model, self.objective, self.seed = model, objective, seed
        self.items: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (text ids, features, seconds)
        self.item_teacher: list[torch.Tensor | None] = []  # [F, D_t] fp16 on the latent frames, with a teacher
        self.item_units: list[torch.Tensor | None] = []  # the text aligner's own unit ids (aligner_vocab)
        self.item_sources: list[str] = []  # the data engine source of each item (the data mix)
        self.item_speakers: list[str] = []
        own_units = model.config.aligner_vocab is not None
        usable = [r for r in rows if r.transcript and r.seconds <= objective.max_seconds]
        # `load_workers` threads decode the audio a few clips ahead (decoding releases the GIL); the
        # tokenizer encodes in this thread, in order, on the training device
        clips = read_ahead(lambda row: load_audio(row.path), usable, load_workers)
        for row, (wav, rate) in tqdm(zip(usable, clips), total=len(usable), desc="tokenizer features",
                                     disable=not progress, unit="utt", dynamic_ncols=True):
            ids = vocabulary.encode(row.transcript)
            units = model.aligner_vocabulary.encode(row.transcript) if own_units else None
            features = encode_clip(tokenizer, torch.from_numpy(wav), rate)
            frames = features.shape[0]
            features = model.trim_to_patches(features.cpu())
            if ids and features.shape[0] and units != []:
                self.items.append((torch.tensor(ids, dtype=torch.long), features, row.seconds))
                self.item_teacher.append(None if teacher is None else
                                         teacher_frames(teacher, wav, rate, frames)[: features.shape[0]])
                self.item_units.append(None if units is None else torch.tensor(units, dtype=torch.long))
                self.item_sources.append(source_of(row.path))
                self.item_speakers.append(row.speaker)
        if not self.items:
            raise DataError(f"no utterance with a transcript and at most {objective.max_seconds} s of speech")
        self.by_speaker: dict[str, list[int]] = {}
        for index, speaker in enumerate(self.item_speakers):
            self.by_speaker.setdefault(speaker, []).append(index)

    def __len__(self) -> int:
        return len(self.items)

    def durations(self) -> list[float]:
        return [seconds for _, _, seconds in self.items]

    def sources(self) -> list[str]:
        return self.item_sources

    def preload(self, workers: int, progress: bool = False) -> None:
        """Nothing to do: every item was encoded up front (with `preload_workers` threads decoding)."""

    def posterior_means(self) -> list[torch.Tensor]:
        dim = self.model.config.latent_dim
        return [features[:, :dim] for _, features, _ in self.items]

    def get(self, index: int, epoch: int) -> Example:
        rng = np.random.default_rng([self.seed, epoch, index])
        ids, features, _ = self.items[index]
        task = "tts" if rng.random() < self.objective.tts_ratio else "asr"
        if self.model.config.audio == "latents":
            mean, log_std = features.chunk(2, dim=1)
            noise = torch.from_numpy(rng.standard_normal(mean.shape).astype(np.float32))
            audio = self.model.normalize(mean + noise * log_std.exp())
        else:
            audio = features
        reference = None
        if task == "tts" and self.model.config.speaker_condition and self.objective.speaker_reference == "speaker":
            others = [j for j in self.by_speaker[self.item_speakers[index]] if j != index] or [index]
            mean = self.items[others[int(rng.integers(len(others)))]][1][:, : self.model.config.latent_dim]
            reference = self.model.normalize(mean)
        teacher = self.item_teacher[index] if task == "asr" else None
        return Example(task, ids, audio, self.item_units[index], reference=reference, teacher=teacher)


@torch.no_grad()
def text_gain(model: nn.Module, items: list[Example], batch: int = 8, seed: int = 4321,
              prior: AttentionPrior | None = None, loss: str = "tts") -> float:
    """How much worse the TTS loss gets when each utterance is paired with the next one's transcript
    (same audio, flow times and noise). Near 0 while the model speaks without reading the text, which
    a falling TTS loss does not reveal: a model that only continues the audio also lowers it. With
    ``prior``, under that attention prior (whether the model can use the text once shown where it is);
    ``loss`` names another TTS loss to compare (e.g. ``regress``)."""
    gain = 0.0
    for start in range(0, len(items), batch):
        chunk = range(start, min(start + batch, len(items)))
        losses = []
        for shift in (0, 1):
            torch.manual_seed(seed + start)
            # item i's audio with item i + shift's text (and aligner units)
            examples = [dataclasses.replace(items[(i + shift) % len(items)], task="tts", audio=items[i].audio)
                        for i in chunk]
            losses.append(float(model(examples, prior)[loss]))
        gain += (losses[1] - losses[0]) * len(chunk)
    return gain / len(items)


class ARDiTRecipe(Recipe):
    kind = MODEL_KIND
    objective_class = ARDiTObjective
    progress_keys = ("loss", "tts", "eos", "asr", "asr_encoder", "asr_teacher", "align", "asr_ctc", "regress", "aligner", "duration")
    plot_panels = (
        ("tts", "valid_tts", "TTS: flow matching (latents) or code cross-entropy (tokens)"),
        ("eos", "valid_eos", "end-of-speech BCE"),
        ("asr", "valid_asr", "ASR: text cross-entropy"),
        ("asr_encoder", "valid_asr_encoder", "ASR encoder → transcript CTC (asr_encoder_layers > 0)"),
        ("asr_teacher", "valid_asr_teacher", "ASR encoder → teacher features (asr_teacher_weight × cosine distance)"),
        ("align", "valid_align", "TTS states → transcript CTC (align_weight × loss)"),
        ("asr_ctc", "valid_asr_ctc", "ASR audio states → transcript CTC (asr_ctc_weight × loss)"),
        ("regress", "valid_regress", "TTS states → next patch regression (regression_weight × MSE)"),
        ("aligner", "valid_aligner", "text aligner: frames vs their units' means on the alignment (MSE)"),
        ("duration", "valid_duration", "text aligner: log-duration error"),
        ("asr_accuracy", "valid_asr_accuracy", "ASR: next-unit accuracy"),
        (None, "valid_text_gain", "TTS: loss with the wrong text − with the right one (> 0: text is used)"),
        (None, "valid_text_gain_prior", "the same under the full attention prior (when training with one)"),
        ("lr", None, "learning rate"),
    )

    @classmethod
    def complete_model_config(cls, model_config: ARDiTConfig) -> ARDiTConfig:
        """Record the tokenizer's weights hash; a resumed run refuses a tokenizer that changed."""
        if not model_config.tokenizer:
            raise ConfigError(f"{model_config.name}: set model.tokenizer (a HoliTok or SiTok checkpoint) in the YAML")
        actual = tokenizer_sha256(model_config.tokenizer)
        if model_config.tokenizer_sha256 and model_config.tokenizer_sha256 != actual:
            raise ConfigError(f"{model_config.tokenizer}: its weights changed since this run started")
        return dataclasses.replace(model_config, tokenizer_sha256=actual)

    def build_model(self) -> ARDiT:
        if self.objective.prior_heads > self.model_config.heads:  # before any data is encoded
            raise ConfigError(f"objective.prior_heads is {self.objective.prior_heads}; {self.model_config.name}"
                              f" has {self.model_config.heads} heads")
        if (self.objective.masks_asr or self.objective.asr_time_warp) and self.model_config.audio != "latents":
            raise ConfigError(f"objective: ASR masks and time warp act on latents; {self.model_config.name} reads codes")
        if self.objective.asr_teacher and not self.model_config.asr_encoder_layers:
            raise ConfigError(f"objective.asr_teacher distils into the ASR encoder; {self.model_config.name} has none"
                              " (model.asr_encoder_layers is 0)")
        self.teacher: Teacher | None = load_teacher(self.objective.asr_teacher) if self.objective.asr_teacher else None
        if self.teacher is not None and not self.teacher.frame_dim:
            raise ConfigError(f"objective.asr_teacher {self.objective.asr_teacher!r} gives no frame features")
        model = ARDiT(self.model_config)
        self.freeze_all_but(model, self.objective.train_only)
        self.tokenizer = load_tokenizer(self.model_config.tokenizer)
        check_pair(self.model_config, self.tokenizer)
        self.fitted = False
        return model

    @staticmethod
    def freeze_all_but(model: ARDiT, names: tuple[str, ...]) -> None:
        """``objective.train_only``: only these top-level parts train (none named: all)."""
        if not names:
            return
        parts = list(dict.fromkeys(name.split(".")[0] for name, _ in model.named_parameters()))
        unknown = [n for n in names if n not in parts]
        if unknown:
            raise ConfigError(f"objective.train_only: {', '.join(unknown)} is not a part of {model.config.name}"
                              f" (its parts: {', '.join(parts)})")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.split(".")[0] in names)

    def dataset(self, rows: list[Utterance], model: nn.Module) -> SpeechTextData:
        self.tokenizer.to(model.device)  # encode once, up front, on the training device (a GPU when there is one)
        data = SpeechTextData(rows, self.tokenizer, model, model.vocabulary, self.objective, self.train.seed,
                              progress=self.progress, load_workers=self.train.preload_workers, teacher=self.teacher)
        if model.config.audio == "latents" and not self.fitted:  # the training set comes first
            model.fit_latent_stats(data.posterior_means())
            self.fitted = True
        return data

    def auxiliary_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """With ``objective.asr_teacher``: the head that maps the ASR encoder's states to the teacher's
        features (checkpointed with the run, not bundled)."""
        if self.teacher is None:
            return {}
        return {"asr_teacher": FeatureHead(self.model_config.asr_encoder_dim, self.teacher.frame_dim,
                                           self.objective.asr_teacher_weight)}

    def collate(self, examples: list[Example], model: nn.Module) -> list[Example]:
        return examples

    def batch_seconds(self, batch: list[Example]) -> float:
        return sum(e.audio.shape[0] for e in batch) / self.model_config.frame_rate

    @functools.cached_property
    def text_units(self) -> int:
        """Size of the text vocabulary (from the config: the model may be wrapped by DDP)."""
        return len(get_vocabulary(self.model_config.text_vocab))

    def losses(self, modules: dict[str, nn.Module], batch: list[Example], phase: str, scratch: dict[str, Any],
               step: int) -> dict[str, torch.Tensor]:
        """The batch's training losses under the attention prior of ``step``, ASR items' latents masked
        and inputs noised (validation runs without either: it measures the model as it is used). The
        noise is drawn from the seed, step and rank, so a resumed run draws the same and ranks their own."""
        if self.objective.perturbs_asr:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            generator = torch.Generator().manual_seed((self.train.seed * 1_000_003 + step) * 1009 + rank)
            batch = [self.objective.perturb_asr(e, self.text_units, generator, self.model_config.patch_size)
                     if e.task == "asr" else e for e in batch]
        return modules["model"](batch, self.objective.prior(step), modules.get("asr_teacher"))

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], data: SpeechTextData, model: nn.Module,
                 device: torch.device, sharded: bool) -> dict[str, float]:
        """Losses over the validation set (epoch-0 tasks and latent samples, fixed noise), and
        ``text_gain`` (see :func:`text_gain`)."""
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        items = [data.get(i, 0) for i in range(len(data))]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(1234)
            for start in range(0, len(items), 8):
                out = modules["model"](items[start:start + 8], asr_teacher=modules.get("asr_teacher"))
                for key, value in out.items():
                    if key != "loss":
                        sums[key] = sums.get(key, 0.0) + float(value)
                        counts[key] = counts.get(key, 0) + 1
            if len(items) > 1:
                sums["text_gain"], counts["text_gain"] = text_gain(modules["model"], items), 1
                if self.objective.prior_heads:
                    shown = AttentionPrior(self.objective.prior_heads, self.objective.prior_width)
                    sums["text_gain_prior"], counts["text_gain_prior"] = text_gain(modules["model"], items, prior=shown), 1
        return {f"valid_{k}": sums[k] / counts[k] for k in sums}
