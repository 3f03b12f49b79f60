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

from ..audio import load_audio
from ..data.dataset import Segment, SegmentDataset
from ..data.manifest import Utterance
from ..modules.discriminators import Discriminators
from ..modules.gan_losses import (
    MultiResolutionMelLoss,
    discriminator_hinge,
    feature_matching,
    generator_hinge,
)
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
        d = self.model_config.discriminator
        return {"discriminator": Discriminators(d.periods, d.period_channels, d.resolutions, d.resolution_channels)}

    def dataset(self, rows: list[Utterance], model: nn.Module) -> SegmentDataset:
        from ..mel import MelSpectrogram

        return SegmentDataset(rows, MelSpectrogram(self.model_config.mel), self.train.segment_seconds, self.train.seed)

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
        fake, n = scratch["fake"], real.shape[0]
        c = self.model_config
        if phase == "discriminator":
            if not self._adversarial(step):
                return None
            # One call on real ‖ fake keeps DDP to one forward per backward.
            period, resolution = discriminator(torch.cat([real, fake.detach()]))
            d_period = discriminator_hinge(*_split(period, n))
            d_resolution = discriminator_hinge(*_split(resolution, n))
            scratch["disc"] = (d_period + c.resolution_weight * d_resolution).detach()
            return {"loss": d_period + c.resolution_weight * d_resolution}
        mel = self.mel_loss.to(dev)(fake, real)
        out = {"mel": mel}
        loss = c.mel_weight * mel
        if self._adversarial(step):
            period, resolution = discriminator(torch.cat([real, fake]))
            real_p, fake_p = _split(period, n)
            real_r, fake_r = _split(resolution, n)
            out["adv"] = generator_hinge(fake_p) + c.resolution_weight * generator_hinge(fake_r)
            out["fm"] = feature_matching(real_p, fake_p) + c.resolution_weight * feature_matching(real_r, fake_r)
            out["disc"] = scratch["disc"]
            loss = loss + out["adv"] + c.feature_weight * out["fm"]
        out["loss"] = loss
        return out

    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], data: SegmentDataset, model: nn.Module,
                 device: torch.device, sharded: bool) -> dict[str, float]:
        """Multi-resolution mel L1 of whole validation utterances vocoded from their true mel."""
        total = 0.0
        for utt in data.utterances:
            wav, _ = load_audio(utt.path, self.model_config.mel.sample_rate)
            real = torch.from_numpy(wav)[None, None].to(device)
            fake = modules["model"](data.mel.to(device)(real))[..., : real.shape[-1]]
            total += float(self.mel_loss.to(device)(fake, real))
        return {"valid_mel": total / len(data.utterances)}


def _split(judgements: list, n: int) -> tuple[list, list]:
    """Judgements of ``real ‖ fake`` → (real judgements, fake judgements)."""
    real = [(logits[:n], [f[:n] for f in feats]) for logits, feats in judgements]
    fake = [(logits[n:], [f[n:] for f in feats]) for logits, feats in judgements]
    return real, fake
