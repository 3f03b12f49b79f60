"""HoliTok stage III semantic enrichment: supervision heads and a pluggable teacher interface.

The paper distils frozen WavLM (frame level) and x-vector (utterance level) teachers and trains a
large LM decoder on task labels. Neither teacher can be downloaded here, so the objective is
pluggable:

* a CTC head (the shared causal transformer) that reads text or phonemes from the latents;
* a speaker-ID classifier on the latents pooled over time (labels from the manifest);
* a :class:`~speechtok.data.teacher.Teacher`: anything with ``frame_features`` and/or
  ``utterance_embedding`` (e.g. ``speechtok.data.moonshine:teacher``). Linear heads
  on the latents are trained to match them by cosine similarity (frame features are interpolated
  to the 25 Hz latent rate). A user with WavLM / x-vector weights plugs them in as
  ``objective.teacher: package.module:factory``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..modules.distillation import cosine_distance
from ..modules.transformer import Transformer, TransformerConfig


class SemanticHeads(nn.Module):
    """The stage III heads on latents ``[B, D, T']``; each is optional (size 0 disables it)."""

    def __init__(self, latent_dim: int, *, vocab_size: int, ctc_dim: int, ctc_layers: int, speakers: int,
                 teacher_frame_dim: int = 0, teacher_utterance_dim: int = 0) -> None:
        super().__init__()
        self.ctc_in = nn.Linear(latent_dim, ctc_dim) if vocab_size else None
        self.ctc = Transformer(TransformerConfig(ctc_dim, ctc_layers, max(1, ctc_dim // 64), 2 * ctc_dim, causal=True)) \
            if vocab_size else None
        self.ctc_out = nn.Linear(ctc_dim, vocab_size) if vocab_size else None
        self.speaker = nn.Sequential(nn.Linear(latent_dim, 256), nn.SiLU(), nn.Linear(256, speakers)) if speakers > 1 else None
        self.frame_head = nn.Linear(latent_dim, teacher_frame_dim) if teacher_frame_dim else None
        self.utterance_head = nn.Linear(latent_dim, teacher_utterance_dim) if teacher_utterance_dim else None

    def forward(self, z: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, label_lengths: torch.Tensor,
               speakers: torch.Tensor, teacher_frames: torch.Tensor | None = None,
               teacher_utterance: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The heads' losses (a forward, so a DDP wrapper syncs them). ``mask [B, T']`` marks real
        frames; items with ``label_lengths == 0`` are skipped by CTC."""
        x = z.transpose(1, 2)  # [B, T', D]
        out: dict[str, torch.Tensor] = {}
        if self.ctc is not None and bool((label_lengths > 0).any()):
            keep = label_lengths > 0
            h = self.ctc(self.ctc_in(x[keep]), mask[keep])
            log_probs = self.ctc_out(h).float().log_softmax(-1).transpose(0, 1)
            out["ctc"] = nn.functional.ctc_loss(log_probs, labels[keep], mask[keep].sum(1), label_lengths[keep],
                                                zero_infinity=True)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        if self.speaker is not None:
            logits = self.speaker(pooled)
            out["speaker"] = nn.functional.cross_entropy(logits, speakers)
            out["speaker_acc"] = (logits.argmax(-1) == speakers).float().mean().detach()
        if self.frame_head is not None and teacher_frames is not None:
            target = nn.functional.interpolate(teacher_frames.transpose(1, 2), size=x.shape[1], mode="linear").transpose(1, 2)
            out["teacher_frame"] = cosine_distance(self.frame_head(x), target, mask)
        if self.utterance_head is not None and teacher_utterance is not None:
            out["teacher_utterance"] = (1 - nn.functional.cosine_similarity(self.utterance_head(pooled), teacher_utterance, dim=-1)).mean()
        return out
