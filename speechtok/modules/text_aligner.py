"""A text aligner in the manner of Grad-TTS: a bidirectional text encoder predicts, per text unit, a
mean frame and a duration. Monotonic alignment search pairs units with frames under a unit-variance
Gaussian around each mean; the means are trained on that path (maximum likelihood) and the durations
on its lengths. Generation expands the units by their predicted durations.

Why: it learns where each unit is spoken from a few hours of speech, which an autoregressive model's
attention does not (docs/ardit.md); the aligned unit states then tell a decoder what to say at each
frame.
"""
from __future__ import annotations

import torch
from torch import nn

from .monotonic_alignment import durations, expand, monotonic_alignment
from .transformer import Transformer, TransformerConfig


class TextAligner(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, mlp_dim: int, frame_dim: int) -> None:
        super().__init__()
        self.encoder = Transformer(TransformerConfig(dim, layers, heads, mlp_dim))
        self.mean = nn.Linear(dim, frame_dim)
        self.duration = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit embeddings ``[B, N, dim]`` (``mask`` True at real units) → states ``[B, N, dim]`` and
        predicted ``log(1 + frames)`` per unit ``[B, N]`` (from detached states: durations do not
        shape what the states say)."""
        states = self.encoder(embeds, mask)
        return states, self.duration(states.detach())[..., 0]

    def align(self, states: torch.Tensor, frames: torch.Tensor, text_lengths: torch.Tensor,
              frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best monotonic path ``[B, N, M]`` between units and frames ``[B, M, frame_dim]``, and
        the means' loss on it (squared error per frame dimension over real frames). A row with more
        units than frames, which no path can cover, is spread evenly instead."""
        means = self.mean(states)
        with torch.no_grad():  # -½‖x − μ‖², expanded in fp32 (no square root, whatever the autocast)
            m, x = means.float(), frames.float()
            log_likelihood = m @ x.transpose(1, 2) - 0.5 * (m * m).sum(-1, keepdim=True) - 0.5 * (x * x).sum(-1)[:, None]
        fits = text_lengths <= frame_lengths
        path = torch.zeros_like(log_likelihood)
        if bool(fits.any()):
            path[fits] = monotonic_alignment(log_likelihood[fits], text_lengths[fits], frame_lengths[fits])
        for b in torch.nonzero(~fits)[:, 0].tolist():
            path[b] = spread(int(text_lengths[b]), int(frame_lengths[b]), *path.shape[1:])
        frame_mask = torch.arange(frames.shape[1], device=frames.device)[None] < frame_lengths[:, None].to(frames.device)
        error = ((frames - expand(path, means)) ** 2).mean(-1)
        return path, (error * frame_mask).sum() / frame_mask.sum()

    @staticmethod
    def duration_loss(log_durations: torch.Tensor, path: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Squared error of the predicted ``log(1 + frames)`` against the path's, over real units, plus
        that of the log of each row's total. Per unit alone, the log domain predicts a geometric mean,
        short of the arithmetic one whenever durations vary (units of 1, 2 and 6 frames: 7.4 frames in
        all instead of 9), so generated speech would come out short."""
        predicted, frames = log_durations.float(), durations(path)
        per_unit = (((predicted - torch.log1p(frames)) ** 2) * mask).sum() / mask.sum()
        totals = (torch.expm1(predicted).clamp(min=0) * mask).sum(-1), (frames * mask).sum(-1)
        return per_unit + ((torch.log1p(totals[0]) - torch.log1p(totals[1])) ** 2).mean()

    @staticmethod
    def frames_per_unit(log_durations: torch.Tensor) -> torch.Tensor:
        """Predicted durations ``[..., N]`` → whole frames, at least one per unit. The running total is
        rounded, not each unit: units last one or two frames, and rounding each would lose up to half
        a frame per unit."""
        ends = torch.expm1(log_durations.float()).clamp(min=0).cumsum(-1).round()
        return torch.diff(ends, dim=-1, prepend=torch.zeros_like(ends[..., :1])).clamp(min=1).long()


def spread(units: int, frames: int, max_units: int, max_frames: int) -> torch.Tensor:
    """An even monotonic path ``[max_units, max_frames]``: frame j to unit ⌊j·units/frames⌋ (with more
    units than frames some units get none)."""
    path = torch.zeros(max_units, max_frames)
    owner = torch.arange(frames) * units // frames
    path[owner, torch.arange(frames)] = 1.0
    return path
