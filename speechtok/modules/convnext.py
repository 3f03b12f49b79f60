"""The ConvNeXt block of Vocos-style frame-rate decoders: depth-wise conv → LayerNorm → MLP, residual.

Used centred by the Vocos vocoder and causal (with stream memory) by HoliTok's iSTFT decoder head.
"""
from __future__ import annotations

import torch
from torch import nn

from .conv import StreamState, conv_window


class ConvNeXtBlock(nn.Module):
    """Depth-wise conv → LayerNorm → pointwise MLP (GELU), scaled residual, on ``[B, dim, F]``.

    ``causal``: frame ``i`` sees frames ≤ ``i`` only (left padding, or a stream's memory), so a
    decoder built of these blocks streams with offline-identical output.
    """

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float, *,
                 causal: bool = False) -> None:
        super().__init__()
        self.causal, self.kernel_size = causal, kernel_size
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=0 if causal else kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.up = nn.Linear(dim, intermediate_dim)
        self.down = nn.Linear(intermediate_dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = x
        if self.causal:
            h = conv_window(x, state, self, left=self.kernel_size - 1, right=0, span=self.kernel_size, stride=1)
            if h.shape[-1] < self.kernel_size:
                return x
        h = self.depthwise(h).transpose(1, 2)
        h = self.down(nn.functional.gelu(self.up(self.norm(h))))
        return x + (self.scale * h).transpose(1, 2)
