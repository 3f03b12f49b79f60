"""The Vocos vocoder's recipe: 45 × multi-resolution mel L1, then hinge GAN + 2 × feature matching.

Each step first updates the discriminators on real vs. generated audio, then the generator. The
adversarial terms start after ``adversarial_start`` steps of mel-only training, which gets a
small CPU budget to intelligible audio sooner; the paper's recipe is ``adversarial_start: 0``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.dataset import Segment, SegmentDataset
from ..data.manifest import Utterance
from ..mel import MelSpectrogram
from ..modules.discriminators import Discriminators
from ..modules.gan_losses import MultiResolutionMelLoss, discriminator_loss, generator_gan_losses
from ..vocoder.vocos import MODEL_KIND, Vocos
from .recipe import Recipe


@dataclass
class SegmentBatch:
    mel: torch.Tensor  # [B, n_mels, F]
    wav: torch.Tensor  # [B, 1, F · hop]
    seconds: float


class VocosRecipe(Recipe):
    kind = MODEL_KIND
    phases = ("discriminator", "model")
    progress_keys = ("loss", "mel", "disc")
    plot_panels = (
        ("mel", "valid_mel", "multi-resolution log-mel L1"),
        ("adv", None, "generator adversarial loss (hinge)"),
        ("disc", None, "discriminator loss (hinge)"),
        ("fm", None, "feature matching L1"),
        ("grad_norm", None, "generator gradient norm"),
        ("lr", None, "learning rate"),
    )

    def build_model(self) -> Vocos:
        self.mel_loss = MultiResolutionMelLoss(self.model_config.mel.sample_rate, self.model_config.loss_resolutions)
        return Vocos(self.model_config)

    def auxiliary_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        return {"discriminator": Discriminators.from_config(self.model_config.discriminator)}

    def dataset(self, rows: list[Utterance], model: nn.Module) -> SegmentDataset:
        mel = self.model_config.mel
        return SegmentDataset(rows, mel.sample_rate, mel.hop_length, self.train.segment_seconds, self.train.seed,
                              mel=MelSpectrogram(mel))

    def collate(self, examples: list[Segment], model: nn.Module) -> SegmentBatch:
        mel = torch.stack([e.mel for e in examples])
        return SegmentBatch(mel, torch.stack([e.wav for e in examples]), mel.shape[0] * mel.shape[-1] / self.model_config.mel.frame_rate)

    def batch_seconds(self, batch: SegmentBatch) -> float:
        return batch.seconds

    def _adversarial(self, step: int) -> bool:
        return step >= self.model_config.adversarial_start

    def losses(self, modules: dict[str, nn.Module], batch: SegmentBatch, phase: str, scratch: dict[str, Any],
               step: int) -> dict[str, torch.Tensor] | None:
        generator, discriminator = modules["model"], modules["discriminator"]
        dev = next(generator.parameters()).device
        real = batch.wav.to(dev)
        if "fake" not in scratch:
            scratch["fake"] = generator(batch.mel.to(dev))
        fake, c = scratch["fake"], self.model_config
        if phase == "discriminator":
            if not self._adversarial(step):
                return None
            loss = discriminator_loss(discriminator, real, fake, c.resolution_weight)
            scratch["disc"] = loss.detach()
            return {"loss": loss}
        out = {"mel": self.mel_loss.to(dev)(fake, real)}
        loss = c.mel_weight * out["mel"]
        if self._adversarial(step):
            out.update(generator_gan_losses(discriminator, real, fake, c.resolution_weight), disc=scratch["disc"])
            loss = loss + out["adv"] + c.feature_weight * out["fm"]
        out["loss"] = loss
        return out

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], data: SegmentDataset, model: nn.Module,
                 device: torch.device, sharded: bool) -> dict[str, float]:
        """Multi-resolution mel L1 of whole validation utterances vocoded from their true mel."""
        total = 0.0
        for index in range(len(data)):
            wav, mel = data.load(index)
            real = wav[None].to(device)
            fake = modules["model"](mel[None].to(device))[..., : real.shape[-1]]
            total += float(self.mel_loss.to(device)(fake, real))
        return {"valid_mel": total / len(data)}

