"""One Llama-style transformer stack shared by every sequence model in speechtok.

RMSNorm, rotary position embeddings, SwiGLU MLP and PyTorch's fused scaled-dot-product attention.
Two switches cover all uses: ``causal`` (SiTok's encoder and CTC head are causal, its flow-matching
decoder is not) and ``cond_dim`` (when set, every RMSNorm becomes an *adaptive* RMSNorm whose gain
is predicted from a conditioning vector, which is how the diffusion time enters the decoder).
A sampler that runs the same stack many times can compute the adaptive gains (:meth:`Transformer.norm_gains`)
and the rotary tables once and pass them in, since neither depends on the input sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    dim: int
    depth: int
    heads: int
    mlp_dim: int
    causal: bool = False
    cond_dim: int | None = None
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    # Residual dropout on every block's attention and MLP outputs, in training only: the regulariser of a
    # stack that would otherwise learn a few hours of speech by heart. 0 builds no dropout at all.
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                gain: torch.Tensor | None = None) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class AdaptiveRMSNorm(nn.Module):
    """RMSNorm whose per-channel gain is ``Linear(cond)``, initialised to exactly 1.

    Starting at the identity gain lets a freshly initialised decoder behave like a plain one.
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.to_gain = nn.Linear(cond_dim, dim)
        nn.init.zeros_(self.to_gain.weight)
        nn.init.ones_(self.to_gain.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                gain: torch.Tensor | None = None) -> torch.Tensor:
        """``gain`` (``to_gain(cond)``, precomputed) replaces ``cond``; a ``[dim]`` gain shared by the
        whole batch goes into the norm's own weight, saving one pass over ``x``."""
        if gain is None:
            if cond is None:
                raise ValueError("AdaptiveRMSNorm needs a conditioning vector")
            gain = self.to_gain(cond)
        if gain.dim() == 1:
            return F.rms_norm(x, (x.shape[-1],), gain, self.eps)
        if gain.dim() == 2:
            gain = gain[:, None, :]
        return F.rms_norm(x, (x.shape[-1],), None, self.eps) * gain


def _norm(cfg: TransformerConfig) -> nn.Module:
    if cfg.cond_dim is None:
        return RMSNorm(cfg.dim, cfg.norm_eps)
    return AdaptiveRMSNorm(cfg.dim, cfg.cond_dim, cfg.norm_eps)


def rotary_tables(length: int, head_dim: int, theta: float, device: torch.device,
                  offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)
    angles = torch.outer(pos, inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head's channels; x is ``[B, H, T, Dh]``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"dim {cfg.dim} is not divisible by heads {cfg.heads}")
        self.heads = cfg.heads
        self.head_dim = cfg.dim // cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                attn_mask: torch.Tensor | None, is_causal: bool,
                past: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Returns the output and this call's keys/values (past ones included) for a KV cache."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(b, t, -1)), (k, v)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attn_norm = _norm(cfg)
        self.attn = Attention(cfg)
        self.mlp_norm = _norm(cfg)
        self.mlp = SwiGLU(cfg.dim, cfg.mlp_dim)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None,
                is_causal: bool, cond: torch.Tensor | None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                gains: tuple[torch.Tensor, torch.Tensor] | tuple[None, None] = (None, None),
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, kv = self.attn(self.attn_norm(x, cond, gains[0]), cos, sin, attn_mask, is_causal, past)
        x = x + self.dropout(h)
        return x + self.dropout(self.mlp(self.mlp_norm(x, cond, gains[1]))), kv


@dataclass
class KVCache:
    """Keys and values of every block for the positions seen so far (incremental causal decoding)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0


class Transformer(nn.Module):
    """A stack of blocks plus a final norm, operating on channel-last ``[B, T, dim]`` sequences."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.depth))
        self.final_norm = _norm(cfg)
        for module in self.modules():  # adaptive-norm gains keep their identity initialisation
            if isinstance(module, (Attention, SwiGLU)):
                for linear in module.children():
                    nn.init.normal_(linear.weight, std=0.02)

    def silence_blocks(self, start: int) -> None:
        """Zero the output projections of blocks ``start:`` so that each adds nothing to the residual
        stream: a stack grown from a trained one then computes exactly what that one did, and the new
        blocks learn from there (their output projections get gradients at once)."""
        for block in self.blocks[start:]:
            nn.init.zeros_(block.attn.out.weight)
            nn.init.zeros_(block.mlp.down.weight)

    def rotary(self, length: int, device: torch.device, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary tables of positions ``offset … offset + length − 1`` for :meth:`forward`."""
        return rotary_tables(length, self.cfg.dim // self.cfg.heads, self.cfg.rope_theta, device, offset=offset)

    def norm_gains(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """Every adaptive norm's gain for ``cond`` ``[..., cond_dim]``, in the order :meth:`forward`
        takes them (two per block, then the final norm): ``[..., dim]`` each."""
        norms = [norm for block in self.blocks for norm in (block.attn_norm, block.mlp_norm)] + [self.final_norm]
        if not all(isinstance(norm, AdaptiveRMSNorm) for norm in norms):
            raise ValueError("norm_gains needs a stack built with cond_dim")
        return [norm.to_gain(cond) for norm in norms]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, cache: KVCache | None = None, *,
                gains: list[torch.Tensor] | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` is ``[B, T]`` True at valid positions; ``cond`` is ``[B, cond_dim]`` or ``[B, T, cond_dim]``.
        ``bias`` ``[B, heads, T, T]`` is added to the attention logits (a training-time prior on where
        heads look; masked positions stay masked).

        ``gains`` (from :meth:`norm_gains`; a ``[dim]`` gain applies to the whole batch) replaces
        ``cond``, and ``rotary`` (from :meth:`rotary`) the tables computed here, when a caller runs the
        stack repeatedly on sequences of one length. With ``cache`` (causal stacks, no padding mask),
        ``x`` holds only the new positions: they attend to the cached ones and to each other causally,
        and the cache is extended in place. The result equals running the whole sequence at once.
        """
        cfg = self.cfg
        t = x.shape[1]
        past = cache.length if cache is not None else 0
        cos, sin = rotary if rotary is not None else self.rotary(t, x.device, offset=past)
        if gains is None:
            gains = [None] * (2 * len(self.blocks) + 1)
        if cache is None:
            attn_mask, is_causal = self._attention_mask(mask, t, x.device, bias)
        else:
            if not cfg.causal or mask is not None or bias is not None:
                raise ValueError("a KV cache needs a causal stack and no padding mask or bias")
            # new position i may see every cached position and new positions ≤ i
            attn_mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
            is_causal = False
        for index, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, attn_mask, is_causal, cond, cache.layers[index] if past else None,
                          (gains[2 * index], gains[2 * index + 1]))
            if cache is not None:
                if past:
                    cache.layers[index] = kv
                else:
                    cache.layers.append(kv)
        return self.final_norm(x, cond, gains[-1])

    def _attention_mask(self, mask: torch.Tensor | None, t: int, device: torch.device,
                        bias: torch.Tensor | None = None) -> tuple[torch.Tensor | None, bool]:
        if mask is None and bias is None:
            return None, self.cfg.causal
        allowed = torch.ones(1, 1, 1, t, dtype=torch.bool, device=device) if mask is None else mask[:, None, None, :]
        if self.cfg.causal:
            allowed = allowed & torch.ones(t, t, dtype=torch.bool, device=device).tril()
        if bias is None:
            return allowed, False
        return bias.masked_fill(~allowed, float("-inf")), False
