"""SiTok: a discrete diffusion-autoencoder speech tokenizer (12.5 Hz, one 65,536-entry codebook, or a
residual VQ of ``codebooks`` codebooks whose first k decode on their own).

    wav 24 kHz ─ log-mel 50 Hz ─ stack ×4 ─ causal encoder ─ vq_in ─ VQ (16 bit) ─ vq_out ─┬─ CTC head
                                                                                          └─ flow-matching decoder ─ mel ─ vocoder

Training minimises ``L1 flow matching + VQ commitment + ctc_weight × CTC``: ``forward`` returns
these losses (so DDP/FSDP wrappers see the training computation); ``encode``/``decode`` are for use.
Decoding integrates the learned velocity field from noise (t=0) to mel (t=1) with Euler steps;
token classifier-free guidance mixes conditional and token-free velocities.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..waveform import check_waveform, prepare_batch
from ..checkpoint import LoadedCheckpoint
from ..errors import CheckpointError, ConfigError
from ..mel import MelSpectrogram
from ..modules.distillation import cosine_distance
from ..modules.flow_matching import (StepEmbedding, TimestepEmbedding, euler_integrate_indexed, flow_pair, guided,
                                      on_prefix_path, time_grid)
from ..modules.transformer import Transformer, TransformerConfig
from ..quantization import (BinarySphericalQuantizer, EMAVectorQuantizer, QuantizerOutput, ResidualQuantizerOutput,
                             ResidualVectorQuantizer)
from ..text import get_vocabulary
from ..vocoder.griffin_lim import GriffinLim
from ..vocoder.vocos import Vocos, load_vocoder
from .pretrained import PretrainedMixin
from .sitok_config import SiTokConfig, check_decoding_scale, get_preset
from .sitok_stream import SiTokEncoderStream

MODEL_KIND = "sitok"


@dataclass
class PromptPrefix:
    """A prompt clip as an in-context prefix: its decoder condition and its true stacked mel."""

    cond: torch.Tensor  # [1, P, dim]
    mel: torch.Tensor  # [1, P, stack·n_mels], normalised

    @property
    def length(self) -> int:
        return self.cond.shape[1]

    def prepend(self, cond: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prompt's condition (and valid positions) before every item's."""
        b = cond.shape[0]
        cond = torch.cat([self.cond.expand(b, -1, -1).to(cond.dtype), cond], dim=1)
        if mask is not None:
            mask = torch.cat([torch.ones(b, self.length, dtype=torch.bool, device=mask.device), mask], dim=1)
        return cond, mask


@dataclass
class EncoderOutput:
    cond: torch.Tensor  # [B, T', dim] decoder/CTC condition from the quantised tokens
    quant: QuantizerOutput
    token_mask: torch.Tensor  # [B, T']


class SiTok(PretrainedMixin, nn.Module):
    def __init__(self, config: SiTokConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        stacked = c.mel.n_mels * c.stack
        self.mel = MelSpectrogram(c.mel)
        self.encoder_in = nn.Linear(stacked, c.dim)
        self.encoder = Transformer(TransformerConfig(c.dim, c.encoder_layers, c.heads, c.mlp_dim, causal=True))
        if c.codebooks > 1:
            self.quantizer: nn.Module = ResidualVectorQuantizer(
                c.codebooks, c.codebook_size, c.code_dim, dropout=c.codebook_dropout, decay=c.vq_decay,
                commitment=c.vq_commitment, dead_threshold=c.vq_dead_threshold)
        elif c.quantizer == "vq":
            self.quantizer = EMAVectorQuantizer(
                c.codebook_size, c.code_dim, decay=c.vq_decay, commitment=c.vq_commitment,
                dead_threshold=c.vq_dead_threshold)
        else:
            self.quantizer = BinarySphericalQuantizer(int(math.log2(c.codebook_size)), commitment=c.vq_commitment)
        self.vq_in = nn.Linear(c.dim, self.quantizer.dim)
        self.vq_out = nn.Linear(self.quantizer.dim, c.dim)
        self.vocabulary = get_vocabulary(c.ctc_vocab)
        self.ctc_head = Transformer(TransformerConfig(c.dim, c.ctc_layers, c.heads, c.mlp_dim, causal=True))
        self.ctc_out = nn.Linear(c.dim, len(self.vocabulary) * c.ctc_upsample)
        self.teacher_head = nn.Linear(c.dim, c.teacher_dim) if c.teacher_dim else None
        self.time_embed = TimestepEmbedding(c.time_embed_dim, c.dim)
        self.decoder_in = nn.Linear(stacked, c.dim)
        # With a light-weight head the body runs once per decode on the tokens: it sees no x_t nor t.
        self.decoder_body = (Transformer(TransformerConfig(c.dim, c.decoder_layers - c.decoder_head_layers, c.heads,
                                                           c.mlp_dim)) if c.decoder_head_layers else None)
        self.decoder = Transformer(TransformerConfig(c.dim, c.decoder_head_layers or c.decoder_layers, c.heads,
                                                     c.mlp_dim, cond_dim=c.dim))
        self.decoder_out = nn.Linear(c.dim, stacked)
        # Linear path from x_t to the velocity, initialised to −I (exact at t = 0, where v = x − x_t).
        # Without it a decoder narrower than the stacked mel (512) cannot pass the noise through and
        # its flow loss stalls near E|ε| ≈ 0.8.
        self.decoder_skip = nn.Linear(stacked, stacked, bias=False)
        nn.init.eye_(self.decoder_skip.weight)
        self.decoder_skip.weight.data.neg_()
        if c.shortcut:  # built last: the other modules initialise as without it
            self.step_embed = StepEmbedding(c.time_embed_dim, c.dim)
        if c.guidance_distill:  # an adapter over the frozen decoder (see freeze_for_guidance_distillation)
            self.guidance_embed = StepEmbedding(c.time_embed_dim, c.dim)
            self.guidance_cond = nn.Linear(c.dim, c.dim)
            nn.init.zeros_(self.guidance_cond.weight)
            nn.init.zeros_(self.guidance_cond.bias)
        self.vocoder: Vocos | None = None  # attached from the checkpoint's info["vocoder"]
        self.vocoder_source: str | None = None

    #: Code at the padded positions of a batched ``encode``; ``decode`` reads it as the item's end.
    PAD_CODE = -1

    # ----------------------------------------------------------------- construction and checkpoints
    model_kind = MODEL_KIND
    config_class = SiTokConfig
    get_preset = staticmethod(get_preset)
    companion_modules = ("vocoder",)

    # ----------------------------------------------------------------------------- rates and sizes
    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def token_rate(self) -> float:
        return self.config.token_rate

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def codebooks(self) -> int:
        return self.config.codebooks

    @property
    def bits_per_token(self) -> int:
        """Bits of one token frame, over all codebooks."""
        return self.quantizer.bits_per_token

    @property
    def bitrate(self) -> float:
        """Bits per second of the token stream (all codebooks): token_rate × bits_per_token."""
        return self.token_rate * self.bits_per_token

    @property
    def samples_per_token(self) -> int:
        return self.config.mel.hop_length * self.config.stack

    def num_tokens(self, num_samples: int, sample_rate: int) -> int:
        """Tokens produced for ``num_samples`` at ``sample_rate``: ceil(seconds × token_rate)."""
        samples = num_samples if sample_rate == self.sample_rate else math.ceil(num_samples * self.sample_rate / sample_rate)
        return -(-samples // self.samples_per_token)

    # ------------------------------------------------------------------------------- mel stacking
    def stack(self, mel: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, n_mels, F]`` → ``[B, T', stack·n_mels]``; frames past each length become silence.

        Returns the stacked tensor, the token mask ``[B, T']`` and a per-value target mask of the
        stacked shape (True on real frames), used to ignore padding in the flow loss.
        """
        b, n_mels, frames = mel.shape
        s = self.config.stack
        tokens = -(-frames // s)
        frame_valid = torch.arange(tokens * s, device=mel.device)[None] < frame_lengths[:, None]
        mel = F.pad(mel, (0, tokens * s - frames), value=self.mel.silence_value)
        mel = torch.where(frame_valid[:, None, :], mel, torch.full_like(mel, self.mel.silence_value))
        stacked = mel.transpose(1, 2).reshape(b, tokens, s * n_mels)
        token_mask = frame_valid.view(b, tokens, s).any(-1)
        value_mask = frame_valid.view(b, tokens, s, 1).expand(b, tokens, s, n_mels).reshape(b, tokens, s * n_mels)
        return stacked, token_mask, value_mask

    def unstack(self, stacked: torch.Tensor) -> torch.Tensor:
        b, tokens, _ = stacked.shape
        return stacked.reshape(b, tokens * self.config.stack, self.config.mel.n_mels).transpose(1, 2)

    # -------------------------------------------------------------------------------- the network
    def encode_mel(self, stacked: torch.Tensor, token_mask: torch.Tensor) -> EncoderOutput:
        h = self.encoder(self.encoder_in(stacked), token_mask)
        quant = self.quantizer(self.vq_in(h), token_mask)
        return EncoderOutput(self.vq_out(quant.quantized), quant, token_mask)

    def cond_from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, k, T']`` codes of the first ``k <= codebooks`` codebooks → ``[B, T', dim]`` decoder condition."""
        indices = codes.transpose(1, 2)
        return self.vq_out(self.quantizer.lookup(indices if self.codebooks > 1 else indices[..., 0]))

    def decoder_condition(self, cond: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """What the iterated decoder adds to ``x_t``: the token condition itself, or with a light-weight
        head the body's output on it (computed once per decode, not once per step)."""
        return cond if self.decoder_body is None else self.decoder_body(cond, token_mask)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                 token_mask: torch.Tensor | None, step: torch.Tensor | None = None,
                 guidance: torch.Tensor | None = None) -> torch.Tensor:
        """``cond`` comes from :meth:`decoder_condition`; ``step`` ``[B]`` is a shortcut decoder's Euler
        step size d (None or 0: the flow-matching velocity); ``guidance`` ``[B]`` a guidance-distilled
        decoder's scale w (None or 1: unguided). The time reaches each block as its condition (not as
        precomputed gains): under FSDP a block's weights exist only inside its forward."""
        if self.config.guidance_distill and guidance is not None:
            cond = self.guided_condition(cond, guidance)
        return self._velocity(x_t, cond, token_mask, time=self.time_features(t, step, guidance))

    def time_features(self, t: torch.Tensor, step: torch.Tensor | None = None,
                      guidance: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's time condition: the flow time ``t``, plus a shortcut decoder's step size and a
        guidance-distilled decoder's scale."""
        time = self.time_embed(t)
        if self.config.shortcut:
            time = time + self.step_embed(torch.zeros_like(t) if step is None else step)
        if self.config.guidance_distill and guidance is not None:
            time = time + self.guidance_features(guidance)
        return time

    def guidance_features(self, scale: torch.Tensor) -> torch.Tensor:
        """The scale's embedding relative to w = 1, which is therefore exactly the unguided decoder
        however far training moves the embedding; w is mapped to [0, 1] over the trained range."""
        u = (scale - 1.0) / (self.config.guidance_max - 1.0)
        return self.guidance_embed(u) - self.guidance_embed(torch.zeros_like(u))

    def guided_condition(self, cond: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
        """A distilled decoder's token condition at guidance ``scale`` (a float, or ``[B]``): plus (w − 1)
        times a learnt correction of it, so w = 1 is exactly the unguided condition. With the scale's
        embedding (which reaches the norm gains, the same for every token) it lets the one pass move
        each token's output as guidance does."""
        shift = scale - 1.0 if isinstance(scale, float) else (scale - 1.0).view(-1, 1, 1)
        return cond + shift * self.guidance_cond(cond)

    def one_pass_guidance(self, cfg: float) -> bool:
        """Whether guidance at ``cfg`` runs as one distilled pass (else conditional and token-free halves)."""
        return self.config.guidance_distill and 1.0 < cfg <= self.config.guidance_max

    def _velocity(self, x_t: torch.Tensor, cond: torch.Tensor, token_mask: torch.Tensor | None,
                  gains: list[torch.Tensor] | None = None, rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                  cfg: float | None = None, uncond: torch.Tensor | None = None,
                  time: torch.Tensor | None = None) -> torch.Tensor:
        """The velocity given the decoder's adaptive-norm ``gains`` for the time(s) ``t`` (precomputed by
        a sampler), or the ``time`` features the decoder turns into them.

        With ``cfg`` the token-free velocity is computed in the same batch (``token_mask`` then covers
        both halves; its condition is ``uncond``, zero unless a light head maps zeros to something else)
        and guidance applied; the input and skip projections of ``x_t``, identical for both halves, are
        computed once.
        """
        h = self.decoder_in(x_t)
        if cfg is None:
            h = h + cond
        else:
            h = torch.cat([h + cond, h if uncond is None else h + uncond])
        out = self.decoder_out(self.decoder(h, token_mask, cond=time, gains=gains, rotary=rotary))
        if cfg is not None:
            out = guided(*out.chunk(2), cfg)
        return out + self.decoder_skip(x_t)

    def step_size(self, steps: int) -> float:
        """The step size a shortcut decoder is told for ``steps`` Euler steps: 1/steps down to the
        smallest trained shortcut, and 0 (the flow velocity) for finer grids."""
        return 1.0 / steps if self.config.shortcut and steps < 2 ** self.config.shortcut_levels else 0.0

    def ctc_log_probs(self, cond: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """``[B, T'·ctc_upsample, vocab]`` log-probabilities of the CTC head."""
        logits = self.ctc_out(self.ctc_head(cond, token_mask))
        b, t, _ = logits.shape
        return logits.view(b, t * self.config.ctc_upsample, len(self.vocabulary)).log_softmax(-1)

    def forward(self, mel: torch.Tensor, frame_lengths: torch.Tensor, labels: torch.Tensor,
                label_lengths: torch.Tensor, teacher: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training losses for a batch of normalised mel ``[B, n_mels, F]``.

        ``labels`` ``[B, L]`` are CTC label ids, ``label_lengths`` ``[B]`` their lengths; items with
        length 0 (no transcript) are left out of the CTC term. ``teacher`` ``[B, F, D]`` are a
        teacher's features on the mel frames (a model with a teacher head).
        """
        c = self.config
        x, token_mask, value_mask = self.stack(mel, frame_lengths)
        frozen = self.tokenizer_frozen
        with torch.no_grad() if frozen else contextlib.nullcontext():
            enc = self.encode_mel(x, token_mask)

        b = x.shape[0]
        t = torch.rand(b, device=x.device)
        x_t, target = flow_pair(x, t, torch.randn_like(x))
        drop = c.token_drop if self.training else 0.0
        keep = (torch.rand(b, device=x.device) >= drop).to(x.dtype)
        cond = self.decoder_condition(enc.cond * keep[:, None, None], token_mask)
        pred = self.velocity(x_t, t, cond, token_mask)
        weight = value_mask.to(x.dtype)
        flow = ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1)

        with torch.no_grad() if frozen else contextlib.nullcontext():
            ctc = self._ctc_loss(enc.cond, token_mask, labels, label_lengths)
        total = flow + enc.quant.loss + c.ctc_weight * ctc
        out = {"flow": flow, "vq": enc.quant.loss, "ctc": ctc,
               "perplexity": enc.quant.perplexity, "indices": enc.quant.indices[token_mask]}
        if self.teacher_head is not None:
            with torch.no_grad() if frozen else contextlib.nullcontext():
                out["teacher"] = self._teacher_loss(enc.cond, token_mask, teacher)
            total = total + c.teacher_weight * out["teacher"]
        if isinstance(enc.quant, ResidualQuantizerOutput):
            out.update({f"perplexity_{level}": p for level, p in enumerate(enc.quant.level_perplexity)})
        if c.shortcut:
            out["shortcut"] = self._shortcut_loss(x, cond, token_mask, weight)
            total = total + out["shortcut"]
        if c.guidance_distill:
            out["guidance"] = self._guidance_loss(x, enc.cond, token_mask, weight)
            total = total + out["guidance"]
        return {"loss": total, **out}

    def _shortcut_loss(self, x: torch.Tensor, cond: torch.Tensor, token_mask: torch.Tensor,
                       weight: torch.Tensor) -> torch.Tensor:
        """Self-consistency (Frans et al. 2024) on the first ``shortcut_fraction`` of the batch: the
        velocity for a step of 2d must equal the mean of two d-steps (a stop-gradient target).

        2d is drawn from 1, 1/2, ..., 2^-(levels-1) and t from the 2d grid, as a 1/(2d)-step Euler
        decode visits it; the smallest d is queried as the flow velocity (d = 0). L1, like the flow term.
        """
        c = self.config
        k = max(1, round(x.shape[0] * c.shortcut_fraction))
        x, cond, mask, weight = x[:k], cond[:k], token_mask[:k], weight[:k]
        level = torch.randint(0, c.shortcut_levels, (k,), device=x.device)
        double = 0.5 ** level.to(x.dtype)  # 2d
        d = double / 2
        t = torch.floor(torch.rand(k, device=x.device) / double) * double
        x_t, _ = flow_pair(x, t, torch.randn_like(x))
        d_query = torch.where(level == c.shortcut_levels - 1, torch.zeros_like(d), d)
        with torch.no_grad():
            first = self.velocity(x_t, t, cond, mask, d_query)
            second = self.velocity(x_t + first * d[:, None, None], t + d, cond, mask, d_query)
            target = (first + second) / 2
        pred = self.velocity(x_t, t, cond, mask, double)
        return ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1)

    def _guidance_loss(self, x: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor,
                       weight: torch.Tensor) -> torch.Tensor:
        """Guidance distillation on the first ``guidance_fraction`` of the batch: the velocity told a
        scale w ~ U[1, guidance_max] is pulled (L1, like the flow term) towards the stop-gradient
        two-pass CFG velocity ``v_u + w·(v_c − v_u)`` of the same decoder told w = 1. Only the adapter
        trains (:meth:`freeze_for_guidance_distillation`), so that target is the loaded decoder's own
        guided velocity throughout. ``tokens`` is the encoder's condition before any token drop."""
        c = self.config
        k = max(1, round(x.shape[0] * c.guidance_fraction))
        x, tokens, mask, weight = x[:k], tokens[:k], token_mask[:k], weight[:k]
        t = torch.rand(k, device=x.device)
        x_t, _ = flow_pair(x, t, torch.randn_like(x))
        scale = 1.0 + torch.rand(k, device=x.device) * (c.guidance_max - 1.0)
        both_mask = torch.cat([mask, mask])
        with torch.no_grad():
            both = self.decoder_condition(torch.cat([tokens, torch.zeros_like(tokens)]), both_mask)
            v_cond, v_uncond = self.velocity(torch.cat([x_t, x_t]), torch.cat([t, t]), both, both_mask).chunk(2)
            target = guided(v_cond, v_uncond, scale[:, None, None])
        pred = self.velocity(x_t, t, self.decoder_condition(tokens, mask), mask, guidance=scale)
        return ((pred - target).abs() * weight).sum() / weight.sum().clamp(min=1)

    def _teacher_loss(self, cond: torch.Tensor, token_mask: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        """Cosine distance of the teacher head's prediction from each token's mean teacher feature."""
        pred = self.teacher_head(cond)
        if teacher is None:  # zero-weighted pass, as for CTC: DDP and exact resume need every gradient
            return pred.sum() * 0.0
        tokens, stack = cond.shape[1], self.config.stack
        teacher = F.pad(teacher.to(pred.dtype), (0, 0, 0, tokens * stack - teacher.shape[1]))
        target = teacher.view(teacher.shape[0], tokens, stack, -1).mean(2)
        return cosine_distance(pred, target, token_mask)

    # ------------------------------------------------------------------- decoder-only fine-tuning
    def tokenizer_modules(self) -> tuple[nn.Module, ...]:
        """The parts that map audio to codes and codes to text: fixed by decoder-only fine-tuning."""
        heads = (self.ctc_head, self.ctc_out) + ((self.teacher_head,) if self.teacher_head is not None else ())
        return (self.encoder_in, self.encoder, self.vq_in, self.quantizer, self.vq_out) + heads

    def freeze_tokenizer(self) -> None:
        """Freeze encoder, quantiser (its EMA codebook too: the modules stay in eval mode) and CTC head,
        as the paper's decoder and shortcut fine-tuning do, so every clip keeps its codes."""
        for module in self.tokenizer_modules():
            module.requires_grad_(False)
        self.train(self.training)

    def freeze_for_guidance_distillation(self) -> None:
        """Train only the guidance adapter (scale embedding and condition correction). Fine-tuning the
        decoder as well moved its unguided and two-pass outputs, which the one pass should reproduce
        (measured: after 400 such steps from sitok-default on the training split, its unguided 16-step
        decode lay 0.20 mel-L1 from sitok-default's guided one, against 0.09 before)."""
        self.freeze_tokenizer()
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith(("guidance_embed.", "guidance_cond.")))

    @property
    def finetune_additions(self) -> tuple[str, ...]:
        """Modules a fine-tuning run may add over its --init checkpoint (see ``FINETUNE_FIELDS``)."""
        c = self.config
        return ((("step_embed",) if c.shortcut else ())
                + (("guidance_embed", "guidance_cond") if c.guidance_distill else ())
                + (("teacher_head",) if c.teacher_dim else ()))

    @property
    def finetune_removals(self) -> tuple[str, ...]:
        """Modules an --init checkpoint may carry that this run switched off, left behind: the teacher
        head (training only: without a teacher no features are computed), and the guidance adapter and
        step embedding (made for the decoder as it was: a fine-tune that changes it must not keep them)."""
        c = self.config
        return ((() if c.shortcut else ("step_embed",))
                + (() if c.guidance_distill else ("guidance_embed", "guidance_cond"))
                + (() if c.teacher_dim else ("teacher_head",)))

    @property
    def tokenizer_frozen(self) -> bool:
        return not any(p.requires_grad for m in self.tokenizer_modules() for p in m.parameters())

    def train(self, mode: bool = True) -> "SiTok":
        super().train(mode)
        if self.tokenizer_frozen:
            for module in self.tokenizer_modules():
                module.eval()
        return self

    def _ctc_loss(self, cond: torch.Tensor, token_mask: torch.Tensor, labels: torch.Tensor,
                  label_lengths: torch.Tensor) -> torch.Tensor:
        labelled = label_lengths > 0
        if not bool(labelled.any()):
            # Zero-weighted pass: every parameter gets a gradient, as DDP and exact resume require.
            return self.ctc_log_probs(cond, token_mask).sum() * 0.0
        log_probs = self.ctc_log_probs(cond[labelled], token_mask[labelled])
        input_lengths = token_mask[labelled].sum(-1) * self.config.ctc_upsample
        return F.ctc_loss(log_probs.transpose(0, 1), labels[labelled], input_lengths, label_lengths[labelled],
                          blank=0, reduction="mean", zero_infinity=True)

    # ------------------------------------------------------------------------------ inference API
    def _prepare(self, wav: torch.Tensor, sample_rate: int,
                 lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate, resample to the model rate item by item, return ``[B, 1, T]`` and sample lengths."""
        wav, lengths = prepare_batch(wav, sample_rate, self.sample_rate, lengths)
        return wav.to(self.device), lengths

    @property
    def device(self) -> torch.device:
        return self.encoder_in.weight.device

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, sample_rate: int, lengths: torch.Tensor | None = None, *,
               return_lengths: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Audio ``[B, 1, T]`` at ``sample_rate`` → codes ``[B, K, T']`` (K = :attr:`codebooks`),
        ``T' = ceil(seconds × 12.5)``.

        ``lengths`` (samples at ``sample_rate``) marks padding in a batch of unequal clips; each item's
        first ``num_tokens(length)`` codes equal those of encoding it alone, and the positions after them
        hold :attr:`PAD_CODE` (-1), never a code the padding happened to produce. With
        ``return_lengths=True`` the per-item token counts ``[B]`` come back too.
        """
        wav, lengths = self._prepare(wav, sample_rate, lengths)
        mel = self.mel(wav)
        frame_lengths = (lengths + self.config.mel.hop_length - 1) // self.config.mel.hop_length
        x, token_mask, _ = self.stack(mel, frame_lengths.to(mel.device))
        enc = self.encode_mel(x, token_mask)
        codes = self.codes_from_indices(enc.quant.indices).masked_fill(~token_mask[:, None, :], self.PAD_CODE)
        return (codes, token_mask.sum(-1)) if return_lengths else codes

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The quantiser's indices (``[B, T']``, or ``[B, T', K]`` from the residual VQ) → channel-first
        codes ``[B, K, T']``. Offline and streaming encoding both lay out codes here."""
        return indices.reshape(indices.shape[0], indices.shape[1], -1).transpose(1, 2).contiguous()

    def encode_stream(self, chunks: Iterable[torch.Tensor], sample_rate: int) -> Iterator[torch.Tensor]:
        """Waveform chunks (``[T]``, ``[1, T]`` or ``[1, 1, T]`` at ``sample_rate``, any sizes) → code
        chunks ``[1, K, n]`` as soon as each token is complete; concatenated they equal ``encode`` of
        the whole clip. See :class:`~speechtok.models.sitok_stream.SiTokEncoderStream`."""
        stream = SiTokEncoderStream(self, sample_rate)
        for chunk in chunks:
            codes = stream.push(chunk)
            if codes.shape[-1]:
                yield codes
        codes = stream.flush()
        if codes.shape[-1]:
            yield codes

    @torch.inference_mode()
    def decode_mel(self, codes: torch.Tensor, *, steps: int | None = None, cfg: float | None = None,
                   token_lengths: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   prompt: torch.Tensor | None = None, prompt_sample_rate: int | None = None,
                   temperature: float | None = None) -> torch.Tensor:
        """Codes ``[B, k, T']`` → normalised mel ``[B, n_mels, 4·T']`` by Euler integration.

        With a ``prompt`` (see :meth:`prompt_prefix`) every item continues the prompt's voice and
        channel: its tokens lead as an in-context prefix held on its true mel path; the prefix is not
        returned.
        """
        codes, padded_lengths = self._check_codes(codes)
        steps = self.config.sample_steps if steps is None else int(steps)
        cfg = check_decoding_scale(self.config.cfg_scale if cfg is None else float(cfg), "cfg")
        temperature = check_decoding_scale(self.config.sample_temperature if temperature is None else float(temperature),
                                           "temperature")
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        prefix = None if prompt is None else self.prompt_prefix(prompt, prompt_sample_rate)
        if generator is None:  # the same tokens decode to the same audio unless a generator says otherwise
            generator = torch.Generator().manual_seed(0)
        b, _, tokens = codes.shape
        token_lengths = padded_lengths if token_lengths is None else token_lengths
        mask = None
        if token_lengths is not None:
            mask = torch.arange(tokens, device=codes.device)[None] < token_lengths.to(codes.device)[:, None]
        cond = self.cond_from_codes(codes.clamp(min=0))
        if prefix is not None:
            cond, mask = prefix.prepend(cond, mask)
        length = cond.shape[1]
        noise = torch.randn(b, length, self.decoder_in.in_features, generator=generator, device="cpu").to(self.device)
        noise = noise * temperature
        # Everything that does not depend on x_t is computed once per decode: the condition (with a light
        # head, the body's output), each step's adaptive-norm gains (the time grid, a shortcut decoder's
        # step size and a distilled guidance scale are shared by the batch, so they are [dim] vectors)
        # and the rotary tables.
        grid = time_grid(steps, self.device)
        step = torch.full_like(grid, self.step_size(steps)) if self.config.shortcut else None
        one_pass = self.one_pass_guidance(cfg)
        scale = torch.full_like(grid, cfg) if one_pass else None
        step_gains = list(zip(*self.decoder.norm_gains(self.time_features(grid, step, scale))))
        rotary = self.decoder.rotary(length, self.device)
        # Two-pass guidance: conditional and token-dropped halves in one batch.
        guidance = None if cfg == 1.0 or one_pass else cfg
        uncond = None
        if guidance is None:
            cond = self.decoder_condition(cond, mask)
            if one_pass:
                cond = self.guided_condition(cond, cfg)
        else:
            mask = None if mask is None else torch.cat([mask, mask])
            if self.decoder_body is not None:  # the token-free half's condition: the body's output on zeros
                cond, uncond = self.decoder_condition(torch.cat([cond, torch.zeros_like(cond)]), mask).chunk(2)

        def velocity(x: torch.Tensor, i: int) -> torch.Tensor:
            return self._velocity(x, cond, mask, list(step_gains[i]), rotary, guidance, uncond)
        if prefix is None:
            return self.unstack(euler_integrate_indexed(velocity, noise, steps))
        held = on_prefix_path(velocity, prefix.mel.expand(b, -1, -1), noise, grid)
        return self.unstack(euler_integrate_indexed(held, noise, steps)[:, prefix.length:])

    def prompt_prefix(self, prompt: torch.Tensor, sample_rate: int | None = None) -> "PromptPrefix":
        """A prompt as whole tokens (a partial last token is cut, so no padding sits between prompt and
        speech): a mono waveform ``[T]``, ``[1, T]`` or ``[1, 1, T]`` at ``sample_rate``, or, without a
        rate, a normalised mel ``[1, n_mels, F]`` such as :meth:`decode_mel` returns."""
        n_mels, stack = self.config.mel.n_mels, self.config.stack
        if not isinstance(prompt, torch.Tensor) or not prompt.is_floating_point():
            raise ConfigError(f"prompt: expected a float tensor, got {getattr(prompt, 'dtype', type(prompt).__name__)}")
        if sample_rate is None:
            if prompt.dim() != 3 or tuple(prompt.shape[:2]) != (1, n_mels):
                raise ConfigError(f"prompt: a mel prompt is [1, {n_mels}, F] (give prompt_sample_rate for a "
                                  f"waveform), got {list(prompt.shape)}")
            mel = prompt.to(self.device, torch.float32)
        else:
            if prompt.dim() > 3 or prompt.numel() != prompt.shape[-1]:
                raise ConfigError(f"prompt: expected one mono waveform [T], [1, T] or [1, 1, T], got {list(prompt.shape)}")
            wav, _ = self._prepare(check_waveform(prompt.reshape(-1), sample_rate, name="prompt"), sample_rate, None)
            mel = self.mel(wav)
        if not bool(torch.isfinite(mel).all()):
            raise ConfigError("prompt: contains NaN or Inf")
        tokens = mel.shape[-1] // stack
        if tokens == 0:
            raise ConfigError(f"prompt: shorter than one token ({stack} mel frames, {self.samples_per_token / self.sample_rate * 1000:g} ms)")
        frames = torch.full((1,), tokens * stack, device=mel.device)
        x, token_mask, _ = self.stack(mel[..., : tokens * stack], frames)
        return PromptPrefix(self.encode_mel(x, token_mask).cond, x)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, *, steps: int | None = None, cfg: float | None = None,
               vocoder: str | None = None, generator: torch.Generator | None = None,
               prompt: torch.Tensor | None = None, prompt_sample_rate: int | None = None,
               temperature: float | None = None) -> torch.Tensor:
        """Codes ``[B, k, T']`` → waveform ``[B, 1, T' · 1920]`` at :attr:`sample_rate`; ``k`` may be
        below :attr:`codebooks` (a residual-VQ model decodes from its first ``k`` codebooks).

        Deterministic by default (noise seeded with 0; pass a ``generator`` for other draws). Trailing
        :attr:`PAD_CODE` positions (a padded batch from ``encode``) are masked and come out silent.
        Uses the checkpoint's vocoder. ``vocoder="griffin-lim"`` selects the Griffin-Lim fallback
        explicitly (intelligible but phasey); it is never used silently. A ``prompt`` clip (another
        recording of the voice, see :meth:`decode_mel`) is continued but not part of the output.
        """
        codes, token_lengths = self._check_codes(codes)
        mel = self.decode_mel(codes, steps=steps, cfg=cfg, token_lengths=token_lengths, generator=generator,
                              prompt=prompt, prompt_sample_rate=prompt_sample_rate, temperature=temperature)
        wav = self.vocode(mel, vocoder)
        if token_lengths is None:
            return wav
        audible = torch.arange(wav.shape[-1], device=wav.device)[None] < token_lengths[:, None] * self.samples_per_token
        return wav * audible[:, None]  # silence where a batch was padded

    def vocode(self, mel: torch.Tensor, vocoder: str | None = None) -> torch.Tensor:
        """Normalised mel → waveform with the attached vocoder (``None``), ``"griffin-lim"``, or
        another vocoder checkpoint (a directory or bundled name)."""
        if vocoder == "griffin-lim":
            return GriffinLim(self.config.mel).to(mel.device)(self.mel.denormalize(mel))
        if vocoder is not None:
            return load_vocoder(vocoder, self.config.mel).to(mel.device).vocode(mel)
        if self.vocoder is None:
            raise CheckpointError(
                f"{self.config.name} has no neural vocoder; pass vocoder='griffin-lim' "
                "(CLI: --vocoder griffin-lim) to use the Griffin-Lim fallback")
        return self.vocoder.vocode(mel)

    def attach_vocoder(self, source: str | Path) -> None:
        """Use the Vocos checkpoint ``source`` (a directory or bundled name) as this model's vocoder."""
        self.vocoder = load_vocoder(str(source), self.config.mel).to(self.device)
        self.vocoder_source = str(source)

    def after_load(self, loaded: LoadedCheckpoint) -> None:
        source = loaded.info.get("vocoder")
        if source:
            self.attach_vocoder(self.companion(loaded, source))

    @torch.inference_mode()
    def reconstruct(self, wav: torch.Tensor, sample_rate: int, *, steps: int | None = None,
                    cfg: float | None = None, vocoder: str | None = None,
                    generator: torch.Generator | None = None, prompt: torch.Tensor | None = None,
                    prompt_sample_rate: int | None = None, temperature: float | None = None) -> torch.Tensor:
        """Encode then decode; output is at :attr:`sample_rate`, trimmed to the input's duration."""
        codes = self.encode(wav, sample_rate)
        out = self.decode(codes, steps=steps, cfg=cfg, vocoder=vocoder, generator=generator, prompt=prompt,
                          prompt_sample_rate=prompt_sample_rate, temperature=temperature)
        duration = math.ceil(wav.shape[-1] * self.sample_rate / sample_rate)
        return out[..., :duration]

    def _check_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated codes on the model's device, and per-item lengths when a batch carries trailing
        :attr:`PAD_CODE` padding (as batched ``encode`` writes it), else None."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or not 1 <= codes.shape[1] <= self.codebooks:
            shape = list(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            expected = "[B, 1, T']" if self.codebooks == 1 else f"[B, k, T'] with k <= {self.codebooks} codebooks"
            raise ConfigError(f"codes: expected a LongTensor {expected}, got {shape}")
        if codes.shape[-1] == 0:
            raise ConfigError("codes: empty token sequence")
        if codes.dtype.is_floating_point or int(codes.min()) < self.PAD_CODE or int(codes.max()) >= self.codebook_size:
            raise ConfigError(f"codes: values must be integers in [0, {self.codebook_size}) or {self.PAD_CODE} padding")
        codes = codes.long().to(self.device)
        valid = codes[:, 0] != self.PAD_CODE
        if not bool(((codes != self.PAD_CODE) == valid[:, None]).all()):
            raise ConfigError(f"codes: {self.PAD_CODE} padding must cover every codebook of a position")
        if bool(valid.all()):
            return codes, None
        lengths = valid.sum(-1)
        positions = torch.arange(codes.shape[-1], device=codes.device)[None]
        if not bool(((positions < lengths[:, None]) == valid).all()) or bool((lengths == 0).any()):
            raise ConfigError(f"codes: {self.PAD_CODE} may only pad the end of a non-empty item")
        return codes, lengths
