"""HoliTok's progressive training (SYSTEMS.md B.3), one stage per run, each ``--init`` from the last.

=====  ===============================  ================================================================
stage  trained                          objective
=====  ===============================  ================================================================
1      encoder + decoder (no bottleneck) 45 × multi-scale mel + adversarial + 2 × feature matching (L_gen)
2      bottleneck (+ flow) only          L_gen + β 0.1 × KL, through the frozen encoder and decoder
3      everything (+ flow, heads)        L_gen + β 7 × KL + CTC + speaker-ID (+ teacher distillation)
0      everything, from scratch          L_gen + β × KL: the "vanilla VAE" ablation (β 0.1 by default)
=====  ===============================  ================================================================

The discriminators (multi-period + multi-resolution, :mod:`speechtok.modules.discriminators`)
train in every stage and carry over between stages with ``--init``. The mel decoder head
(``decoder_head: mel``, a documented deviation) replaces L_gen by the L1 of its normalised mel
against the input's, with no discriminator: its vocoder is already trained. The flow and the semantic heads
are training-only modules: they are checkpointed for resume but not exported (as the paper's
``flow.*`` / ``supervise_net.*`` keys are dropped at load). KL is averaged per latent element.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..data.dataset import Segment, SegmentDataset
from ..data.manifest import Utterance
from ..data.teacher import Teacher, load_teacher
from ..errors import ConfigError
from ..mel import MelSpectrogram
from ..models.holitok import MODEL_KIND, HoliTok
from ..models.holitok_semantic import SemanticHeads
from ..modules.discriminators import DiscriminatorConfig, Discriminators
from ..modules.flows import LatentFlow, flow_kl
from ..modules.gan_losses import MultiResolutionMelLoss, discriminator_loss, generator_gan_losses
from ..text import get_vocabulary
from ..waveform import resample_batch
from .recipe import Recipe

PAPER_BETA = {0: 0.1, 1: 0.0, 2: 0.1, 3: 7.0}


@dataclass(frozen=True)
class HoliTokObjective:
    stage: int = 1  # 1, 2, 3, or 0 for the vanilla-VAE ablation
    mel_weight: float = 45.0
    feature_weight: float = 2.0
    resolution_weight: float = 1.0
    mel_resolutions: tuple[int, ...] = (512, 1024, 2048)
    discriminator: DiscriminatorConfig = field(default_factory=lambda: DiscriminatorConfig(
        period_channels=(8, 32, 64, 128, 128), resolution_channels=8))
    adversarial_start: int = 0  # steps of this run before the GAN terms start
    kl_weight: float | None = None  # None: the paper's β for the stage (0.1 in II, 7 in III)
    flow_layers: int = 4  # 0: plain N(0, I) prior
    flow_hidden: int = 64
    ctc_weight: float = 1.0
    ctc_vocab: Literal["char", "phoneme"] = "char"
    ctc_dim: int = 128
    ctc_layers: int = 2
    speaker_weight: float = 1.0
    teacher: str | None = None  # package.module:factory returning a speechtok.data.teacher.Teacher
    teacher_frame_weight: float = 1.0
    teacher_utterance_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.stage not in PAPER_BETA:
            raise ConfigError(f"objective.stage must be 1, 2, 3 (or 0: vanilla VAE), got {self.stage}")

    @property
    def beta(self) -> float:
        return PAPER_BETA[self.stage] if self.kl_weight is None else self.kl_weight

    @property
    def variational(self) -> bool:
        return self.stage != 1

    @property
    def semantic(self) -> bool:
        return self.stage == 3


@dataclass
class WaveBatch:
    wav: torch.Tensor  # [B, 1, T] at 48 kHz
    labels: torch.Tensor  # [B, L], 0-padded
    label_lengths: torch.Tensor  # [B]
    speakers: torch.Tensor  # [B]
    seconds: float
    mel: torch.Tensor | None = None  # the mel head's target [B, n_mels, T'·2], else None


class HoliTokRecipe(Recipe):
    kind = MODEL_KIND
    objective_class = HoliTokObjective
    stages = tuple(str(stage) for stage in PAPER_BETA)
    phases = ("discriminator", "model")
    progress_keys = ("loss", "mel", "kl", "ctc", "disc")
    plot_panels = (
        ("mel", "valid_mel", "multi-scale log-mel L1"),
        ("kl", "valid_kl", "KL per latent element"),
        ("adv", None, "generator adversarial loss (hinge)"),
        ("disc", None, "discriminator loss (hinge)"),
        ("ctc", None, "stage III: CTC on latents"),
        ("speaker_acc", None, "stage III: speaker-ID accuracy"),
    )

    def __init__(self, model_config: Any, train: Any, objective: HoliTokObjective | None = None, *,
                 progress: bool = True) -> None:
        super().__init__(model_config, train, objective, progress=progress)
        self.teacher: Teacher | None = load_teacher(self.objective.teacher) if self.objective.teacher else None
        self.vocabulary = get_vocabulary(self.objective.ctc_vocab) if self.objective.semantic else None
        self.speakers: list[str] = []

    @property
    def mel_head(self) -> bool:
        """The mel decoder head learns its mel by L1 and needs no discriminator (the vocoder is trained)."""
        return self.model_config.decoder_head == "mel"

    def build_model(self) -> HoliTok:
        o = self.objective
        self.mel_loss = MultiResolutionMelLoss(self.model_config.sample_rate, o.mel_resolutions)
        self.mel_target = MelSpectrogram(self.model_config.mel)
        model = HoliTok(self.model_config)
        trained = {1: ("encoder", "decoder"), 2: ("bottleneck",)}.get(o.stage, ("encoder", "bottleneck", "decoder"))
        for name in ("encoder", "bottleneck", "decoder"):
            getattr(model, name).requires_grad_(name in trained)
        return model

    def auxiliary_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        o = self.objective
        modules: dict[str, nn.Module] = {} if self.mel_head else {"discriminator": Discriminators.from_config(o.discriminator)}
        if o.variational and o.flow_layers:
            modules["flow"] = LatentFlow(self.model_config.latent_dim, o.flow_layers, o.flow_hidden)
        if o.semantic:
            modules["semantic"] = SemanticHeads(
                self.model_config.latent_dim, vocab_size=len(self.vocabulary) if o.ctc_weight else 0,
                ctc_dim=o.ctc_dim, ctc_layers=o.ctc_layers, speakers=len(self.speakers) if o.speaker_weight else 0,
                teacher_frame_dim=self.teacher.frame_dim if self.teacher else 0,
                teacher_utterance_dim=self.teacher.utterance_dim if self.teacher else 0)
        return modules

    def dataset(self, rows: list[Utterance], model: nn.Module) -> SegmentDataset:
        c = self.model_config
        data = SegmentDataset(rows, c.sample_rate, c.hop_length, self.train.segment_seconds, self.train.seed,
                              vocabulary=self.vocabulary)
        if not self.speakers:  # the first dataset built is the training set
            self.speakers = data.speakers
        return data

    def collate(self, examples: list[Segment], model: nn.Module) -> WaveBatch:
        lengths = torch.tensor([len(e.labels) for e in examples])
        labels = torch.zeros(len(examples), max(1, int(lengths.max())), dtype=torch.long)
        for i, e in enumerate(examples):
            labels[i, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
        wav = torch.stack([e.wav for e in examples])
        return WaveBatch(wav, labels, lengths, torch.tensor([e.speaker for e in examples]),
                         wav.shape[0] * wav.shape[-1] / self.model_config.sample_rate,
                         self.target_mel(wav) if self.mel_head else None)

    def target_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """The mel head's target: the vocoder's normalised log-mel of ``wav`` [B, 1, T] (48 kHz),
        ``mel_frames_per_latent`` frames per latent."""
        c = self.model_config
        lengths = torch.full((wav.shape[0],), wav.shape[-1])
        low = resample_batch(wav.cpu(), lengths, c.sample_rate, c.mel.sample_rate)[0]
        frames = -(-wav.shape[-1] // c.hop_length) * c.mel_frames_per_latent
        mel = self.mel_target(low)
        return nn.functional.pad(mel, (0, frames - mel.shape[-1]), value=self.mel_target.silence_value)[..., :frames]

    def batch_seconds(self, batch: WaveBatch) -> float:
        return batch.seconds

    # ----------------------------------------------------------------------------------- losses
    def autoencode(self, modules: dict[str, nn.Module], wav: torch.Tensor, *, sample: bool = True) -> dict[str, torch.Tensor]:
        """The stage's path from waveform to reconstruction, with its KL and latents."""
        fake, posterior, z = modules["model"](wav, variational=self.objective.variational, sample=sample)
        if posterior is None:
            return {"fake": fake}
        mean, log_std = posterior.chunk(2, dim=1)
        return {"fake": fake, "z": z, "kl": flow_kl(mean, log_std, z, modules.get("flow"))}

    def losses(self, modules: dict[str, nn.Module], batch: WaveBatch, phase: str, scratch: dict[str, Any],
               step: int) -> dict[str, torch.Tensor] | None:
        o = self.objective
        dev = next(modules["model"].parameters()).device
        real = batch.wav.to(dev)
        if "fake" not in scratch:
            scratch.update(self.autoencode(modules, real))
        adversarial = not self.mel_head and step >= o.adversarial_start
        if phase == "discriminator":
            if not adversarial:
                return None
            loss = discriminator_loss(modules["discriminator"], real, scratch["fake"], o.resolution_weight)
            scratch["disc"] = loss.detach()
            return {"loss": loss}
        out = {"mel": self.reconstruction_loss(scratch["fake"], real, batch.mel)}
        loss = o.mel_weight * out["mel"]
        if adversarial:
            fake = scratch["fake"][..., : real.shape[-1]]
            out.update(generator_gan_losses(modules["discriminator"], real, fake, o.resolution_weight),
                       disc=scratch["disc"])
            loss = loss + out["adv"] + o.feature_weight * out["fm"]
        if "kl" in scratch:
            out["kl"] = scratch["kl"]
            loss = loss + o.beta * out["kl"]
        if o.semantic:
            out.update(self._semantic(modules["semantic"], scratch["z"], batch, real))
            weights = {"ctc": o.ctc_weight, "speaker": o.speaker_weight, "teacher_frame": o.teacher_frame_weight,
                       "teacher_utterance": o.teacher_utterance_weight}
            loss = loss + sum(weights[k] * out[k] for k in weights if k in out)
        out["loss"] = loss
        return out

    def reconstruction_loss(self, fake: torch.Tensor, real: torch.Tensor, target_mel: torch.Tensor | None) -> torch.Tensor:
        """Multi-scale log-mel L1 of the waveform, or for the mel head L1 of its normalised mel."""
        if target_mel is None:
            return self.mel_loss.to(real.device)(fake[..., : real.shape[-1]], real)
        return (fake - target_mel.to(fake.device)).abs().mean()

    def _semantic(self, heads: nn.Module, z: torch.Tensor, batch: WaveBatch, real: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = teacher_utt = None
        if self.teacher is not None:
            with torch.no_grad():
                wav = real
                if self.teacher.sample_rate != self.model_config.sample_rate:
                    lengths = torch.full((real.shape[0],), real.shape[-1])
                    wav = resample_batch(real, lengths, self.model_config.sample_rate, self.teacher.sample_rate)[0].to(real.device)
                frames = self.teacher.frame_features(wav) if self.teacher.frame_dim else None
                teacher_utt = self.teacher.utterance_embedding(wav) if self.teacher.utterance_dim else None
        mask = torch.ones(z.shape[0], z.shape[-1], dtype=torch.bool, device=z.device)
        return heads(z, mask, batch.labels.to(z.device), batch.label_lengths.to(z.device),
                            batch.speakers.to(z.device), frames, teacher_utt)

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], data: SegmentDataset, model: nn.Module,
                 device: torch.device, sharded: bool) -> dict[str, float]:
        """The reconstruction loss (:meth:`reconstruction_loss`) of whole validation utterances and the
        KL, with fixed posterior noise."""
        totals = {"valid_mel": 0.0, "valid_kl": 0.0}
        for index in range(len(data)):
            real = data.load(index)[0][None].to(device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(index)
                out = self.autoencode(modules, real)
            target = self.target_mel(real) if self.mel_head else None
            totals["valid_mel"] += float(self.reconstruction_loss(out["fake"], real, target)) / len(data)
            if "kl" in out:
                totals["valid_kl"] += float(out["kl"]) / len(data)
        if not self.objective.variational:
            del totals["valid_kl"]
        return totals
