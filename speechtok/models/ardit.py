"""The unified AR+DiT model: one causal LM that writes speech (TTS) and reads it (ASR).

Sequences (text units are the character or phoneme vocabulary of :mod:`speechtok.text`)::

    TTS   <tts> t₁ … tₙ <speech> a₁ … a_m          the state before aₖ generates aₖ; end-of-speech after a_m
    ASR   <asr> <speech> a₁ … a_m <text> t₁ … tₙ   the state before tₖ predicts tₖ; end-of-text after tₙ

With ``audio="latents"`` each aₖ is a patch of ``patch_size`` normalised tokenizer latents: a causal
patch encoder maps frames to the LM width, and a DiT head, conditioned on the LM state and the
``history_patches`` previous patches, generates the next patch by flow matching (CFG by dropping the
LM state). The end-of-speech head reads the *detached* LM state, as in the paper's reference code.
With ``audio="tokens"`` each aₖ is one discrete code, embedded by a table and predicted by a softmax.
A speaker prompt is a prefix of audio positions whose transcript starts the text (continuation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..ctc_decode import ctc_beam_search, ctc_greedy
from ..errors import ConfigError
from ..modules.flow_matching import TimestepEmbedding, euler_integrate, flow_pair, guided
from ..modules.monotonic_alignment import expand
from ..modules.text_aligner import TextAligner
from ..modules.transformer import KVCache, Transformer, TransformerConfig
from ..text import get_vocabulary
from .ardit_config import ARDiTConfig, check_eos_threshold, get_preset
from .pretrained import PretrainedMixin

if TYPE_CHECKING:
    from ..checkpoint import LoadedCheckpoint
    from ..text_lm import CharNgramLM

MODEL_KIND = "ardit"
#: Task and boundary symbols, after the text vocabulary in the LM's input table.
SPECIALS = ("<tts>", "<asr>", "<speech>", "<text>")
Task = Literal["tts", "asr"]


@dataclass
class Example:
    """One training item: ``audio`` is normalised latents ``[F, D]`` or codes ``[F]``, F a whole number of patches."""

    task: Task
    text: torch.Tensor  # [n] label ids (no blank)
    audio: torch.Tensor
    units: torch.Tensor | None = None  # [u] the text aligner's own unit ids (``aligner_vocab``), TTS items
    inputs: torch.Tensor | None = None  # [n] ASR items' teacher-forced input ids where training noised them
    reference: torch.Tensor | None = None  # [F', D] TTS items: whose statistics the speaker condition gets (default: audio)
    teacher: torch.Tensor | None = None  # [F, D_t] ASR items: a teacher's frame features on the audio's frames


@dataclass(frozen=True)
class AttentionPrior:
    """A training-time diagonal prior on where the LM's first ``heads`` heads of every layer look (a
    deviation from the paper, after the attention prior of T5-TTS / RAD-TTS): the state before speech
    patch k of m is pulled towards text unit ≈ k·n/m, and the state before text unit j of n (ASR)
    towards patch ≈ j·m/n, by adding ``-scale·(Δ/width)²/2`` to those heads' logits, Δ the difference
    of relative positions (0..1 along each side), capped at 0.5, which every other key counts as.
    ``width`` is relative too: 0.1 of a 90-character text is ±9 characters. The end-of-speech and
    end-of-text states are left free. Known lengths make the diagonal free in training; annealing
    ``scale`` to 0 leaves a model that must find it alone, as it must in generation."""

    heads: int
    width: float = 0.1
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.heads < 1 or self.width <= 0 or self.scale < 0:
            raise ConfigError(f"the attention prior needs >= 1 heads, a width > 0 and a scale >= 0,"
                              f" got {self.heads}, {self.width} and {self.scale}")


class _Context:
    """A causal stack's view of a growing sequence. With a KV cache only new positions run; without,
    the whole sequence reruns every time (the reference the cache is tested against)."""

    def __init__(self, stack: Transformer, cached: bool) -> None:
        self.stack, self.cache, self.seq = stack, KVCache() if cached else None, None

    def extend(self, x: torch.Tensor) -> torch.Tensor:
        """New positions ``[1, n, dim]`` → their outputs ``[n, dim]``."""
        if self.cache is not None:
            return self.stack(x, cache=self.cache)[0]
        self.seq = x if self.seq is None else torch.cat([self.seq, x], dim=1)
        return self.stack(self.seq)[0, -x.shape[1]:]


def _padded(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch ``[B, T, …]`` of ``[T_i, …]`` items and its mask of real positions ``[B, T]``."""
    mask = nn.utils.rnn.pad_sequence([torch.ones(len(x), dtype=torch.bool, device=x.device) for x in items], batch_first=True)
    return nn.utils.rnn.pad_sequence(items, batch_first=True), mask


class ARDiT(PretrainedMixin, nn.Module):
    model_kind = MODEL_KIND
    config_class = ARDiTConfig
    get_preset = staticmethod(get_preset)

    def __init__(self, config: ARDiTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.vocabulary = get_vocabulary(c.text_vocab)
        #: what the text aligner reads: the text vocabulary, or its own (``aligner_vocab``)
        self.aligner_vocabulary = get_vocabulary(c.aligner_vocab) if c.aligner_vocab else self.vocabulary
        units = len(self.vocabulary)
        self.end_of_text = units  # the text head's extra class (an output id; <tts> shares the number as an input id)
        #: the character n-gram that CTC beam search reads with (``asr_text_lm``), loaded when first needed
        #: (from ``_text_lm_source``: beside the checkpoint, else the name), so a missing LM stops only ASR
        self.text_lm: CharNgramLM | None = None
        self._text_lm_source: str | None = None
        self.special = {name: units + i for i, name in enumerate(SPECIALS)}
        self.text_embed = nn.Embedding(units + len(SPECIALS), c.dim)
        self.lm = Transformer(TransformerConfig(c.dim, c.layers, c.heads, c.mlp_dim, causal=True))
        self.text_head = nn.Linear(c.dim, units + 1)
        self.eos_head = nn.Linear(c.dim, 1)
        switches = self._head_switches()
        if switches["align_head"]:  # CTC over text units + blank, ``align_upsample`` sub-frames per state
            self.align_head = nn.Linear(c.dim, c.align_upsample * (units + 1))
        if c.audio == "latents":
            self.patch_in = nn.Linear(c.latent_dim, c.patch_dim)
            self.patch_encoder = Transformer(TransformerConfig(c.patch_dim, c.patch_layers, c.patch_heads,
                                                               c.patch_mlp_dim, causal=True))
            self.patch_out = nn.Linear(c.patch_size * c.patch_dim, c.dim)
            self.dit_state = nn.Linear(c.dim, c.dit_dim)
            self.null_state = nn.Parameter(torch.zeros(c.dit_dim))
            self.dit_in = nn.Linear(c.latent_dim, c.dit_dim)
            self.dit_role = nn.Embedding(3, c.dit_dim)  # 0 LM state, 1 history frame, 2 noisy frame
            self.time_embed = TimestepEmbedding(c.time_embed_dim, c.dit_dim)
            self.dit = Transformer(TransformerConfig(c.dit_dim, c.dit_layers, c.dit_heads, c.dit_mlp_dim,
                                                     cond_dim=c.dit_dim))
            self.dit_out = nn.Linear(c.dit_dim, c.latent_dim)
            if switches["regress_head"]:
                self.regress_head = nn.Linear(c.dim, c.patch_size * c.latent_dim)
            if switches["speaker_in"]:  # at zero: a fine-tune that adds it starts as its checkpoint
                self.speaker_in = nn.Linear(2 * c.latent_dim, c.dit_dim)
                nn.init.zeros_(self.speaker_in.weight)
                nn.init.zeros_(self.speaker_in.bias)
            if switches["asr_encoder"]:
                self.asr_in = nn.Linear(c.latent_dim, c.asr_encoder_dim)
                self.asr_encoder = Transformer(TransformerConfig(c.asr_encoder_dim, c.asr_encoder_layers,
                                                                 c.asr_encoder_heads, c.asr_encoder_mlp_dim,
                                                                 dropout=c.asr_encoder_dropout))
                self.asr_ctc_head = nn.Linear(c.asr_encoder_dim, c.asr_encoder_upsample * (units + 1))
                # At zero: a fine-tune that adds the encoder starts as its checkpoint.
                self.asr_lm_in = nn.Linear(c.patch_size * c.asr_encoder_dim, c.dim)
                nn.init.zeros_(self.asr_lm_in.weight)
                nn.init.zeros_(self.asr_lm_in.bias)
            if switches["aligner"]:
                self.aligner = TextAligner(c.dim, c.aligner_layers, c.heads, c.mlp_dim, c.latent_dim)
                if switches["aligner_embed"]:
                    self.aligner_embed = nn.Embedding(len(self.aligner_vocabulary), c.dim)
                # Both start at zero: a fine-tune that adds the aligner starts as its checkpoint.
                self.aligned_lm_in = nn.Linear(c.patch_size * c.dim, c.dim)
                self.aligned_dit_in = nn.Linear(c.dim, c.dit_dim)
                for layer in (self.aligned_lm_in, self.aligned_dit_in):
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
            # Global per-dimension statistics of the tokenizer's latents (fitted on the training
            # set by the recipe): the model reads and writes zero-mean, unit-variance latents.
            self.register_buffer("latent_mean", torch.zeros(c.latent_dim))
            self.register_buffer("latent_std", torch.ones(c.latent_dim))
        else:
            self.code_embed = nn.Embedding(c.codebook_size, c.dim)
            self.code_head = nn.Linear(c.dim, c.codebook_size)

    @property
    def finetune_additions(self) -> tuple[str, ...]:
        """Heads a fine-tuning run may add over its --init checkpoint (see ``FINETUNE_FIELDS``)."""
        return self._auxiliary_heads(present=True)

    @property
    def finetune_removals(self) -> tuple[str, ...]:
        """Heads an --init checkpoint may carry that this run switched off (training-only heads)."""
        return self._auxiliary_heads(present=False)

    def _head_switches(self) -> dict[str, bool]:
        """Which optional modules this config builds (one place for ``__init__`` and fine-tunes)."""
        c = self.config
        aligner = c.aligner_layers > 0
        return {"align_head": c.align_weight > 0 or c.asr_ctc_weight > 0, "regress_head": c.regression_weight > 0,
                "aligner": aligner, "aligned_lm_in": aligner, "aligned_dit_in": aligner,
                "aligner_embed": aligner and c.aligner_vocab is not None, "speaker_in": c.speaker_condition,
                **dict.fromkeys(("asr_in", "asr_encoder", "asr_ctc_head", "asr_lm_in"), c.asr_encoder_layers > 0)}

    def _auxiliary_heads(self, present: bool) -> tuple[str, ...]:
        """Modules switched on (``present``) or off. Only the training-only heads may be dropped: the
        aligner is how such a model speaks, so a checkpoint's aligner never loads into a model without one."""
        training_only = ("align_head", "regress_head")
        return tuple(name for name, on in self._head_switches().items()
                     if on == present and (present or name in training_only))

    # ----------------------------------------------------------------------------- sizes
    @property
    def device(self) -> torch.device:
        return self.text_embed.weight.device

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the LM (body and text side), the audio input path, the audio output head, the
        text aligner and the ASR encoder (0 without one)."""
        groups = {"lm": ("lm", "text_embed", "text_head", "eos_head", "align_head"),
                  "audio_in": ("patch_in", "patch_encoder", "patch_out", "code_embed"),
                  "audio_out": ("dit_state", "null_state", "dit_in", "dit_role", "time_embed", "dit", "dit_out",
                                "code_head", "regress_head"),
                  "aligner": ("aligner", "aligner_embed", "aligned_lm_in", "aligned_dit_in"),
                  "asr_encoder": ("asr_in", "asr_encoder", "asr_ctc_head", "asr_lm_in")}
        counts = {}
        for group, names in groups.items():
            counts[group] = sum(p.numel() for n, p in self.named_parameters() if n.split(".")[0] in names)
        counts["lm_body"] = sum(p.numel() for p in self.lm.parameters())
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Tokenizer latents ``[F, D]`` → what the model reads (identity for codes)."""
        if self.config.audio == "tokens":
            return latents
        return (latents - self.latent_mean.to(latents.device)) / self.latent_std.to(latents.device)

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        if self.config.audio == "tokens":
            return latents
        return latents * self.latent_std.to(latents.device) + self.latent_mean.to(latents.device)

    def fit_latent_stats(self, latents: list[torch.Tensor]) -> None:
        """Set the normalisation from tokenizer latents ``[F, D]`` (e.g. every training utterance)."""
        count, total, squares = 0, 0.0, 0.0
        for z in latents:
            z = z.double()
            count, total, squares = count + z.shape[0], total + z.sum(0), squares + (z * z).sum(0)
        mean = total / count
        self.latent_mean.copy_(mean)
        self.latent_std.copy_((squares / count - mean * mean).clamp(min=1e-10).sqrt().clamp(min=1e-5))

    def after_load(self, loaded: LoadedCheckpoint) -> None:
        """A text LM the config names is looked for beside the checkpoint first, then by name."""
        if self.config.asr_text_lm:
            self._text_lm_source = self.companion(loaded, self.config.asr_text_lm)

    def set_decoding(self, **changes: object) -> None:
        """Change how the model reads or speaks (:meth:`ARDiTConfig.with_decoding`: no weight depends on
        it). Checked, and a new ``asr_text_lm`` loaded, before anything changes."""
        config = self.config.with_decoding(**changes)
        text_lm, source = self.text_lm, self._text_lm_source
        if config.asr_text_lm != self.config.asr_text_lm:
            text_lm = self._load_text_lm(config.asr_text_lm) if config.asr_text_lm else None
            source = config.asr_text_lm
        self.config, self.text_lm, self._text_lm_source = config, text_lm, source

    def _load_text_lm(self, source: str) -> CharNgramLM:
        from ..text_lm import CharNgramLM

        lm = CharNgramLM.from_pretrained(source)
        if lm.config.vocabulary != self.config.text_vocab:
            raise ConfigError(f"{source}: a {lm.config.vocabulary!r} language model cannot score this model's"
                              f" {self.config.text_vocab!r} text")
        return lm

    def _text_lm(self) -> CharNgramLM | None:
        if self.config.asr_text_lm and self.text_lm is None:
            self.text_lm = self._load_text_lm(self._text_lm_source or self.config.asr_text_lm)
        return self.text_lm

    def trim_to_patches(self, audio: torch.Tensor) -> torch.Tensor:
        """Drop the last frames that do not fill a patch (< 160 ms for HoliTok latents)."""
        p = self.config.patch_size
        return audio[: audio.shape[0] // p * p]

    def check_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Validate one item's audio: latents ``[F, latent_dim]`` floats or codes ``[F]`` in the codebook."""
        c = self.config
        if c.audio == "latents":
            if audio.dim() != 2 or audio.shape[1] != c.latent_dim or not audio.is_floating_point():
                raise ConfigError(f"{c.name} reads latents [frames, {c.latent_dim}], got {tuple(audio.shape)} {audio.dtype}")
            if not bool(torch.isfinite(audio).all()):
                raise ConfigError("latents contain NaN or Inf")
        elif audio.dim() != 1 or audio.is_floating_point() or (audio.numel() and not
                                                                 0 <= int(audio.min()) <= int(audio.max()) < c.codebook_size):
            raise ConfigError(f"{c.name} reads codes [frames] in 0..{c.codebook_size - 1}, got {tuple(audio.shape)} {audio.dtype}")
        return audio

    # ----------------------------------------------------------------------------- building blocks
    def _specials(self, *names: str) -> torch.Tensor:
        return self.text_embed(torch.tensor([self.special[n] for n in names], device=self.device))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """A batch of audio ``[B, F, D]`` latents or ``[B, F]`` codes → LM inputs ``[B, F / patch_size, dim]``.

        The patch encoder is causal, so right padding never changes the embeddings of real patches.
        """
        if self.config.audio == "tokens":
            return self.code_embed(audio)
        return self._patches(self.patch_encoder(self.patch_in(audio)))

    def _patches(self, frames: torch.Tensor) -> torch.Tensor:
        b, f, _ = frames.shape
        return self.patch_out(frames.reshape(b, f // self.config.patch_size, -1))

    def _drop_speech(self, embeds: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``speech_input_dropout`` on TTS speech inputs, whether training or not (the bottleneck must
        look the same to the model when it generates); ``generator`` makes generation reproducible."""
        p = self.config.speech_input_dropout
        if p == 0.0:
            return embeds
        keep = torch.rand(embeds.shape, generator=generator, device="cpu" if generator else embeds.device) >= p
        return embeds * keep.to(embeds.device) / (1.0 - p)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, state: torch.Tensor, history: torch.Tensor,
                 keep_state: torch.Tensor | None = None, text: torch.Tensor | None = None,
                 speaker: torch.Tensor | None = None) -> torch.Tensor:
        """The DiT head: noisy patch ``[N, P, D]``, time ``[N]``, LM state ``[N, dim]``, history frames
        ``[N, H·P, D]`` → velocity ``[N, P, D]``. ``keep_state`` False replaces the state by the learned
        null state (condition dropout, and the unconditional branch of CFG) and drops ``text``, the
        aligner's unit states of each noisy frame ``[N, P, dim]``; ``speaker`` ``[N, 2D]`` (see
        :meth:`speaker_vector`) is kept in both branches, so CFG strengthens the text, not the voice."""
        cond = self.dit_state(state)
        noisy = self.dit_in(x_t)
        if text is not None:
            noisy = noisy + self.aligned_dit_in(text) * (1.0 if keep_state is None else keep_state[:, None, None])
        if keep_state is not None:
            cond = torch.where(keep_state[:, None], cond, self.null_state.expand_as(cond))
        roles = self.dit_role.weight
        seq = torch.cat([(cond + roles[0])[:, None], self.dit_in(history) + roles[1], noisy + roles[2]], dim=1)
        global_cond = self.time_embed(t)
        if self.config.speaker_condition:
            global_cond = global_cond + self.speaker_in(x_t.new_zeros(x_t.shape[0], 2 * x_t.shape[2])
                                                        if speaker is None else speaker)
        out = self.dit(seq, cond=global_cond)
        return self.dit_out(out[:, -x_t.shape[1]:])

    @staticmethod
    def speaker_vector(audio: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[F, D]`` → ``[2D]``: their mean and standard deviation over time, what
        stays of a voice (and its channel) when the words are averaged away."""
        return torch.cat([audio.mean(0), audio.std(0, unbiased=False)])

    def _history(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, F, D]`` → per patch k the ``history_patches`` patches before it, zero-padded:
        ``[B, F/P, H·P, D]``, with the patches themselves ``[B, F/P, P, D]``."""
        c = self.config
        p, span = c.patch_size, c.history_patches * c.patch_size
        padded = F.pad(frames, (0, 0, span, 0))
        windows = padded.unfold(1, span + p, p).permute(0, 1, 3, 2)  # [B, F/P, span + P, D]
        return windows[:, :, :span], windows[:, :, span:]

    # ----------------------------------------------------------------------------- training
    def forward(self, examples: list[Example], prior: AttentionPrior | None = None,
                asr_teacher: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced losses of a mixed batch: ``tts`` (flow matching, or code cross-entropy),
        ``eos`` (end of speech) and ``asr`` (text cross-entropy), with a text aligner its ``aligner``
        and ``duration`` losses, with an ASR encoder its CTC ``asr_encoder``, summed with weight 1 into
        ``loss``; the optional heads' losses carry their configured weights.
        ``prior`` biases the LM's attention towards the diagonal (training only). ``asr_teacher``
        (training only, e.g. :class:`~speechtok.modules.distillation.FeatureHead`) maps the ASR encoder's
        states ``[B, F, E]``, the ASR items' ``teacher`` features and their mask to a distillation loss,
        ``asr_teacher``."""
        c, dev = self.config, self.device
        audio = [self.check_audio(e.audio).to(dev) for e in examples]
        lengths = [a.shape[0] for a in audio]
        if not examples:
            raise ConfigError("an empty batch")
        if min(lengths) < c.patch_size or any(n % c.patch_size for n in lengths):
            raise ConfigError(f"every item needs a whole, non-zero number of {c.patch_size}-frame patches")
        padded = nn.utils.rnn.pad_sequence(audio, batch_first=True)
        audio_embeds = self.embed_audio(padded)
        out: dict[str, torch.Tensor] = {}
        tts = [i for i, e in enumerate(examples) if e.task == "tts"]
        asr = [i for i, e in enumerate(examples) if e.task == "asr"]
        aligned: dict[int, torch.Tensor] = {}  # TTS item → its frames' aligned unit states [F, dim]
        idle_units = None
        if tts and c.aligner_layers:
            states, out["aligner"], out["duration"] = self._align([self._aligner_ids(examples[i]) for i in tts],
                                                                  [audio[i] for i in tts])
            aligned = dict(zip(tts, states))
        elif c.aligner_layers:  # a zero-weighted pass, before the LM as on every other rank: FSDP pairs
            # the ranks' gathers of transformer blocks by the order they run in
            idle_units = self.aligner(self._aligner_embeds(torch.ones(1, dtype=torch.long, device=dev))[None],
                                      torch.ones(1, 1, dtype=torch.bool, device=dev))

        asr_states: dict[int, torch.Tensor] = {}  # ASR item → its ASR encoder states [F, E]
        idle_asr = None
        if asr and c.asr_encoder_layers:
            states = self.encode_asr(*_padded([audio[i] for i in asr]))
            asr_states = {i: states[k, : lengths[i]] for k, i in enumerate(asr)}
            out["asr_encoder"] = self._ctc_loss([self._asr_ctc_log_probs(asr_states[i]) for i in asr],
                                                [examples[i].text.to(dev) for i in asr])
            if asr_teacher is not None:
                if any(examples[i].teacher is None for i in asr):
                    raise ConfigError("ASR distillation needs every ASR item's teacher features")
                targets, mask = _padded([examples[i].teacher.to(dev).float() for i in asr])
                out["asr_teacher"] = asr_teacher(states, targets, mask)
        elif c.asr_encoder_layers:  # its zero-weighted pass here, before the LM, for FSDP as the aligner's
            idle_asr = self.encode_asr(audio_embeds.new_zeros(1, c.patch_size, c.latent_dim))[0]

        rows, before = [], []  # per item: LM input rows, and the position of the state before its first target
        windows: list[tuple[int, int, int, int]] = []  # per item: (first query, queries, first key, keys) of the prior
        for i, e in enumerate(examples):
            m, n = lengths[i] // c.patch_size, len(e.text)
            text = self.text_embed((e.text if e.inputs is None or e.task == "tts" else e.inputs).to(dev))
            if e.task == "tts":
                head = torch.cat([self._specials("<tts>"), text, self._specials("<speech>")])
                speech = torch.cat([head[-1:], self._drop_speech(audio_embeds[i, :m])])  # before patch 0, …, after the last
                if i in aligned:
                    speech = speech + F.pad(self._patch_conditions(aligned[i]), (0, 0, 0, 1))
                rows.append(torch.cat([head[:-1], speech]))
                before.append(head.shape[0] - 1)  # <speech>
                windows.append((before[-1], m, 1, n))  # states before each patch → text units
            else:
                head = self._specials("<asr>", "<speech>")
                speech = audio_embeds[i, :m] + (self._asr_lm_inputs(asr_states[i]) if i in asr_states else 0.0)
                rows.append(torch.cat([head, speech, self._specials("<text>"), text]))
                before.append(head.shape[0] + m)  # <text>
                windows.append((before[-1], n, head.shape[0], m))  # states before each unit → patches
        inputs, mask = _padded(rows)
        bias = None if prior is None or prior.scale == 0 else self._prior_bias(windows, mask.shape[1], prior)
        hidden = self.lm(inputs, mask, bias=bias)

        if tts:
            spans = [hidden[i, before[i]: before[i] + lengths[i] // c.patch_size] for i in tts]  # states before each patch
            out["tts"] = self._speech_loss(torch.cat(spans), [padded[i, : lengths[i]] for i in tts],
                                           [aligned[i] for i in tts] if aligned else None,
                                           [examples[i].reference for i in tts])
            if c.regression_weight > 0:
                patches = torch.cat([padded[i, : lengths[i]].reshape(len(span), -1) for span, i in zip(spans, tts)])
                out["regress"] = c.regression_weight * F.mse_loss(self.regress_head(torch.cat(spans)), patches)
            eos_states = torch.cat([hidden[i, before[i]: before[i] + lengths[i] // c.patch_size + 1] for i in tts])
            eos_target = torch.cat([F.one_hot(torch.tensor(lengths[i] // c.patch_size), lengths[i] // c.patch_size + 1)
                                    for i in tts]).float().to(dev)
            out["eos"] = F.binary_cross_entropy_with_logits(self.eos_head(eos_states.detach())[:, 0], eos_target)
            if c.align_weight > 0:
                out["align"] = c.align_weight * self._align_loss(spans, [examples[i].text.to(dev) for i in tts])
        if asr:
            logits = torch.cat([self.text_head(hidden[i, before[i]: before[i] + len(examples[i].text) + 1]) for i in asr])
            target = torch.cat([torch.cat([examples[i].text.to(dev), torch.tensor([self.end_of_text], device=dev)])
                                for i in asr])
            out["asr"] = F.cross_entropy(logits, target)
            out["asr_accuracy"] = (logits.argmax(-1) == target).float().mean().detach()
            if c.asr_ctc_weight > 0:
                audio_states = [hidden[i, windows[i][2]: windows[i][2] + windows[i][3]] for i in asr]  # its audio positions
                out["asr_ctc"] = c.asr_ctc_weight * self._align_loss(audio_states, [examples[i].text.to(dev) for i in asr])
        loss = sum(v for k, v in out.items() if k != "asr_accuracy")
        if not (tts and asr):
            loss = loss + self._idle_branches(hidden[0, :1], tts=not tts, asr=not asr, units=idle_units,
                                              asr_states=idle_asr)
        out["loss"] = loss
        return out

    def _prior_bias(self, windows: list[tuple[int, int, int, int]], length: int, prior: AttentionPrior) -> torch.Tensor:
        """The attention logits' bias ``[B, heads, T, T]`` of :class:`AttentionPrior`."""
        c = self.config
        if prior.heads > c.heads:
            raise ConfigError(f"the attention prior asks for {prior.heads} heads; {c.name} has {c.heads}")
        bias = torch.zeros(len(windows), c.heads, length, length, device=self.device)
        for i, (query, queries, key, keys) in enumerate(windows):
            q = (torch.arange(queries, device=self.device) + 0.5) / queries
            k = (torch.arange(keys, device=self.device) + 0.5) / keys
            rows = torch.full((queries, length), 0.5, device=self.device)
            rows[:, key: key + keys] = (q[:, None] - k[None, :]).clamp(-0.5, 0.5)
            bias[i, : prior.heads, query: query + queries] = -0.5 * prior.scale * (rows / prior.width) ** 2
        return bias

    def _idle_branches(self, state: torch.Tensor, *, tts: bool, asr: bool,
                       units: tuple[torch.Tensor, torch.Tensor] | None = None,
                       asr_states: torch.Tensor | None = None) -> torch.Tensor:
        """Zero-weighted passes through the heads of a task absent from this batch, so every rank
        runs the same modules (DDP needs a gradient for each parameter; FSDP the same gathers);
        ``units``: the text aligner's idle output (states, log-durations), ``asr_states`` the ASR
        encoder's, both run before the LM."""
        c, terms = self.config, []
        align_used = (not tts and c.align_weight > 0) or (not asr and c.asr_ctc_weight > 0)
        if hasattr(self, "align_head") and not align_used:
            terms.append(self.align_head(state).sum())
        if tts:
            terms.append(self.eos_head(state).sum())
            if c.regression_weight > 0:
                terms.append(self.regress_head(state).sum())
            if c.audio == "latents":
                zeros = state.new_zeros(1, c.patch_size, c.latent_dim)
                history = state.new_zeros(1, c.history_patches * c.patch_size, c.latent_dim)
                text = None
                if units is not None:
                    states, log_durations = units
                    text = states.expand(1, c.patch_size, -1)
                    terms += [self.aligner.mean(states).sum(), log_durations.sum(), self._patch_conditions(text[0]).sum()]
                terms.append(self.velocity(zeros, state.new_zeros(1), state, history,
                                           torch.zeros(1, dtype=torch.bool, device=state.device), text).sum())
            else:
                terms.append(self.code_head(state).sum())
        if asr:
            terms.append(self.text_head(state).sum())
            if asr_states is not None:
                terms += [self._asr_ctc_log_probs(asr_states).sum(), self._asr_lm_inputs(asr_states).sum()]
        return 0.0 * sum(terms)

    def _align_loss(self, spans: list[torch.Tensor], texts: list[torch.Tensor]) -> torch.Tensor:
        """CTC from each item's states ``[m, dim]`` to its text units: a TTS item's speech-generating
        states (the state before patch k has not seen it, so it must read the text to know what comes
        next) or an ASR item's audio states."""
        return self._ctc_loss([self.align_head(h).reshape(-1, self.end_of_text + 1).log_softmax(-1) for h in spans], texts)

    def _ctc_loss(self, log_probs: list[torch.Tensor], texts: list[torch.Tensor]) -> torch.Tensor:
        """CTC of each item's ``[T, units + 1]`` log-probabilities (blank: the end-of-text class) to its units."""
        padded = nn.utils.rnn.pad_sequence(log_probs)  # [T, N, C]
        return F.ctc_loss(padded, torch.cat(texts), [len(p) for p in log_probs], [len(t) for t in texts],
                          blank=self.end_of_text, zero_infinity=True)

    def encode_asr(self, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The bidirectional ASR encoder: normalised latents ``[B, F, D]`` (``mask`` ``[B, F]``: the real
        frames of right-padded items) → states ``[B, F, asr_encoder_dim]``."""
        return self.asr_encoder(self.asr_in(audio), mask)

    def _asr_ctc_log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states ``[F, E]`` → CTC log-probabilities ``[F · asr_encoder_upsample, units + 1]``."""
        return self.asr_ctc_head(states).reshape(-1, self.end_of_text + 1).log_softmax(-1)

    def _asr_lm_inputs(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states ``[F, E]`` → what they add to the LM's audio positions ``[F / patch_size, dim]``."""
        return self.asr_lm_in(states.reshape(states.shape[0] // self.config.patch_size, -1))

    def _speech_loss(self, states: torch.Tensor, audio: list[torch.Tensor], text: list[torch.Tensor] | None = None,
                     references: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Flow matching on every patch (latents) or cross-entropy on every code (tokens); ``text``:
        each item's aligned unit states per frame, for the DiT; ``references``: each item's speaker
        reference (None: its own audio)."""
        if self.config.audio == "tokens":
            return F.cross_entropy(self.code_head(states), torch.cat(audio))
        history, patches = zip(*(self._history(a[None]) for a in audio))
        history, patches = torch.cat([h[0] for h in history]), torch.cat([p[0] for p in patches])
        if text is not None:
            text = torch.cat(text).reshape(patches.shape[0], self.config.patch_size, -1)
        t = torch.rand(patches.shape[0], device=patches.device)
        x_t, target = flow_pair(patches, t, torch.randn_like(patches))
        keep = torch.rand(patches.shape[0], device=patches.device) >= (self.config.cond_drop if self.training else 0.0)
        speakers = self._training_speakers(audio, references or [None] * len(audio))
        return F.mse_loss(self.velocity(x_t, t, states, history, keep, text, speakers), target)

    def _training_speakers(self, audio: list[torch.Tensor], references: list[torch.Tensor | None]) -> torch.Tensor | None:
        """Each item's :meth:`speaker_vector` (of its reference, else its own audio) for each of its
        patches ``[N, 2D]``, an item's all zeros with probability ``speaker_drop`` in training (what
        generation without a prompt sees)."""
        c = self.config
        if not c.speaker_condition:
            return None
        vectors = torch.stack([self.speaker_vector(a if r is None else r.to(a.device)) for a, r in zip(audio, references)])
        if self.training:
            vectors = vectors * (torch.rand(len(audio), 1, device=vectors.device) >= c.speaker_drop)
        counts = torch.tensor([a.shape[0] // c.patch_size for a in audio], device=vectors.device)
        return torch.repeat_interleave(vectors, counts, dim=0)

    def _aligner_ids(self, example: Example) -> torch.Tensor:
        if self.config.aligner_vocab is None:
            return example.text.to(self.device)
        if example.units is None:
            raise ConfigError(f"a TTS item needs its {self.config.aligner_vocab} units for the text aligner (Example.units)")
        return example.units.to(self.device)

    def _aligner_embeds(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_embed(ids) if self.config.aligner_vocab is None else self.aligner_embed(ids)

    def _align(self, texts: list[torch.Tensor], audio: list[torch.Tensor]
               ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The aligner on TTS items: each item's frames' unit states ``[F, dim]``, the means' loss and
        the durations' loss."""
        dev = self.device
        text_lengths = torch.tensor([len(t) for t in texts], device=dev)
        frame_lengths = torch.tensor([a.shape[0] for a in audio], device=dev)
        embeds = nn.utils.rnn.pad_sequence([self._aligner_embeds(t) for t in texts], batch_first=True)
        mask = torch.arange(embeds.shape[1], device=dev)[None] < text_lengths[:, None]
        states, log_durations = self.aligner(embeds, mask)
        path, mean_loss = self.aligner.align(states, nn.utils.rnn.pad_sequence(audio, batch_first=True),
                                             text_lengths, frame_lengths)
        frames = expand(path, states)
        return ([frames[j, : a.shape[0]] for j, a in enumerate(audio)], mean_loss,
                self.aligner.duration_loss(log_durations, path, mask))

    def _patch_conditions(self, frames: torch.Tensor) -> torch.Tensor:
        """Aligned unit states per frame ``[F, dim]`` → the LM input added before each patch ``[F/P, dim]``."""
        return self.aligned_lm_in(frames.reshape(-1, self.config.patch_size * frames.shape[-1]))

    def require_speaker_condition(self) -> None:
        """Refuse a voice reference on a model that cannot hear one (checked before the reference is encoded)."""
        if not self.config.speaker_condition:
            raise ConfigError(f"{self.config.name} has no speaker condition (speaker_condition): give the voice"
                              " as a prompt to be continued")

    # ----------------------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate_speech(self, text: str, *, prompt: torch.Tensor | None = None, steps: int | None = None,
                        cfg: float | None = None, max_seconds: float | None = None, temperature: float = 1.0,
                        top_k: int = 50, eos_threshold: float | None = None, generator: torch.Generator | None = None,
                        use_cache: bool = True, prompt_units: int | None = None,
                        speaker: torch.Tensor | None = None) -> torch.Tensor:
        """TTS: text → normalised latents ``[F, D]`` or codes ``[F]`` (the prompt not included).

        ``prompt`` (same form) is continued: ``text`` must then start with the prompt's transcript,
        whose length in the text aligner's units a model with one needs as ``prompt_units``. Generation stops
        when the end-of-speech head's probability exceeds ``eos_threshold`` (after at least one patch);
        a model with a text aligner never asks that head (``eos_threshold`` has no effect) and stops
        after the last unit's predicted frames. At ``max_seconds`` in any case. ``use_cache=False``
        reruns the whole sequence at every step (same result). ``speaker`` (normalised latents) is the
        voice a model with a speaker condition is told (default: the prompt's); it is not continued, so
        it needs no transcript.
        """
        c = self.config
        if speaker is not None:
            self.require_speaker_condition()
        steps = c.sample_steps if steps is None else int(steps)
        cfg = c.cfg_scale if cfg is None else float(cfg)
        eos_threshold = c.eos_threshold if eos_threshold is None else check_eos_threshold(float(eos_threshold))
        if steps < 1 or top_k < 1:
            raise ConfigError(f"steps and top_k must be >= 1, got {steps} and {top_k}")
        ids = torch.tensor(self.vocabulary.encode(text), dtype=torch.long, device=self.device)
        if not ids.numel():
            raise ConfigError(f"nothing to say: {text!r} has no units of the {c.text_vocab} vocabulary")
        lm = _Context(self.lm, use_cache)
        frames_ctx = _Context(self.patch_encoder, use_cache) if c.audio == "latents" else None
        prefix = torch.cat([self._specials("<tts>"), self.text_embed(ids), self._specials("<speech>")])[None]
        empty = torch.zeros((0, c.latent_dim) if c.audio == "latents" else (0,), device=self.device,
                            dtype=torch.float32 if c.audio == "latents" else torch.long)
        past = empty
        if prompt is not None:
            past = self.check_audio(self.trim_to_patches(self._on_device(prompt)))
            if not past.shape[0]:
                raise ConfigError(f"the prompt is shorter than one patch ({c.patch_size} frames)")
        text_frames = None
        if c.aligner_layers:
            units = ids if c.aligner_vocab is None else torch.tensor(
                self.aligner_vocabulary.encode(text), dtype=torch.long, device=self.device)
            if not units.numel():
                raise ConfigError(f"nothing to say: {text!r} has no units of the {c.aligner_vocab} vocabulary")
            text_frames = self._planned_frames(units, past, prompt_units)
        # what is added to the LM input before each patch (prompt and generated), then a zero after the last
        conditions = None if text_frames is None else F.pad(self._patch_conditions(text_frames), (0, 0, 0, 1))
        if speaker is not None:
            speaker = self.speaker_vector(self.check_audio(self._on_device(speaker)))
        elif c.speaker_condition and past.shape[0]:
            speaker = self.speaker_vector(past)
        first = past.shape[0] // c.patch_size  # the global index of the first generated patch
        if conditions is not None:
            prefix = prefix + F.pad(conditions[:1], (0, 0, prefix.shape[1] - 1, 0))[None]
        if past.shape[0]:
            embeds = self._drop_speech(self._embed_new(past, frames_ctx), generator)
            prefix = torch.cat([prefix, embeds if conditions is None else embeds + conditions[1: first + 1]], dim=1)
        state = lm.extend(prefix)[-1]
        generated = []
        limit = int((c.max_speech_seconds if max_seconds is None else max_seconds) * c.patch_rate)
        planned = None if text_frames is None else text_frames.shape[0] // c.patch_size - first
        for k in range(limit if planned is None else min(limit, planned)):
            if planned is None and k and torch.sigmoid(self.eos_head(state))[0] > eos_threshold:
                break
            if c.audio == "latents":
                text = None if text_frames is None else text_frames[(first + k) * c.patch_size:][: c.patch_size]
                piece = self._sample_patch(state, torch.cat([past, *generated]), steps, cfg, generator, text, speaker)
            else:
                piece = self._sample_code(state, temperature, top_k, generator)
            generated.append(piece)
            embeds = self._drop_speech(self._embed_new(piece, frames_ctx), generator)
            state = lm.extend(embeds if conditions is None else embeds + conditions[first + k + 1])[-1]
        return torch.cat(generated) if generated else empty

    def _planned_frames(self, ids: torch.Tensor, prompt: torch.Tensor, prompt_units: int | None) -> torch.Tensor:
        """The aligner's unit state for every frame to come ``[F, dim]``: the prompt's frames aligned to
        its ``prompt_units`` first units, then the other units for their predicted durations, the last
        repeated to fill a patch."""
        c = self.config
        units = 0
        if prompt.shape[0]:
            if prompt_units is None or not 0 < prompt_units < len(ids):
                raise ConfigError(f"a model with a text aligner aligns the prompt to its transcript, which must be"
                                  f" 1 to {len(ids) - 1} of the text's {len(ids)} units (prompt_units, --prompt-text);"
                                  f" got {prompt_units}")
            units = prompt_units
        states, log_durations = self.aligner(self._aligner_embeds(ids)[None],
                                             torch.ones(1, len(ids), dtype=torch.bool, device=self.device))
        frames = []
        if units:
            path, _ = self.aligner.align(states[:, :units], prompt[None], torch.tensor([units], device=self.device),
                                         torch.tensor([prompt.shape[0]], device=self.device))
            frames.append(expand(path, states[:, :units])[0])
        rest = torch.repeat_interleave(states[0, units:], self.aligner.frames_per_unit(log_durations[0, units:]), dim=0)
        frames.append(F.pad(rest[None], (0, 0, 0, -rest.shape[0] % c.patch_size), mode="replicate")[0])
        return torch.cat(frames)

    def _on_device(self, audio: torch.Tensor) -> torch.Tensor:
        return audio.to(self.device, torch.float32) if self.config.audio == "latents" else audio.to(self.device)

    def _embed_new(self, audio: torch.Tensor, frames_ctx: _Context | None) -> torch.Tensor:
        """LM inputs ``[1, n, dim]`` for audio appended to a growing sequence."""
        if frames_ctx is None:
            return self.code_embed(audio)[None]
        return self._patches(frames_ctx.extend(self.patch_in(audio)[None])[None])

    def _sample_patch(self, state: torch.Tensor, frames: torch.Tensor, steps: int, cfg: float,
                      generator: torch.Generator | None, text: torch.Tensor | None = None,
                      speaker: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        span = c.history_patches * c.patch_size
        history = F.pad(frames[-span:] if span else frames[:0], (0, 0, span - min(span, frames.shape[0]), 0))[None]
        noise = torch.randn((1, c.patch_size, c.latent_dim), generator=generator, device="cpu").to(self.device)
        if cfg == 1.0:
            def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self.velocity(x, t, state[None], history, text=None if text is None else text[None],
                                     speaker=None if speaker is None else speaker[None])
        else:
            keep = torch.tensor([True, False], device=self.device)

            def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                v = self.velocity(torch.cat([x, x]), torch.cat([t, t]), state[None].expand(2, -1),
                                  history.expand(2, -1, -1), keep, None if text is None else text[None].expand(2, -1, -1),
                                  None if speaker is None else speaker[None].expand(2, -1))
                return guided(*v.chunk(2), cfg)
        return euler_integrate(velocity, noise, steps)[0]

    def _sample_code(self, state: torch.Tensor, temperature: float, top_k: int,
                     generator: torch.Generator | None) -> torch.Tensor:
        logits = self.code_head(state).float().cpu()
        if temperature <= 0:
            return logits.argmax()[None].to(self.device)
        values, indices = logits.topk(min(top_k, logits.numel()))
        choice = torch.multinomial(torch.softmax(values / temperature, -1), 1, generator=generator)
        return indices[choice].to(self.device)

    @torch.inference_mode()
    def asr_log_probs(self, audio: torch.Tensor) -> torch.Tensor:
        """The ASR encoder's CTC log-probabilities ``[F · asr_encoder_upsample, units + 1]`` of normalised
        latents ``[F, D]`` (blank: the last class), for :meth:`read_ctc` with other decoding settings."""
        if not self.config.asr_encoder_layers:
            raise ConfigError(f"{self.config.name}: has no ASR encoder (asr_encoder_layers is 0)")
        return self._asr_ctc_log_probs(self.encode_asr(self._asr_audio(audio)[None])[0])

    def _asr_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """What ASR reads: the audio on the model's device, checked and trimmed to whole patches (at least one)."""
        audio = self.check_audio(self.trim_to_patches(self._on_device(audio)))
        if not audio.shape[0]:
            raise ConfigError(f"audio shorter than one patch ({self.config.patch_size} frames) cannot be transcribed")
        return audio

    def read_ctc(self, log_probs: torch.Tensor, *, max_units: int | None = None) -> str:
        """CTC log-probabilities → text (at most ``max_units`` units), as the config says: greedy, or beam
        search with its text LM."""
        c = self.config
        units = range(1, self.end_of_text)  # blank: end-of-text; 0, the vocabulary's own blank, is never a unit
        if c.asr_beam_width > 1:
            ids = ctc_beam_search(log_probs, self.end_of_text, units, width=c.asr_beam_width,
                                  lm=self._text_lm(), lm_weight=c.asr_lm_weight, unit_bonus=c.asr_unit_bonus)
        else:
            ids = ctc_greedy(log_probs, self.end_of_text, units)
        return self.vocabulary.decode(ids[:max_units])

    @torch.inference_mode()
    def transcribe(self, audio: torch.Tensor, *, max_units: int | None = None, use_cache: bool = True) -> str:
        """ASR: normalised latents ``[F, D]`` or codes ``[F]`` → text, greedy until end-of-text (the LM),
        or CTC over the ASR encoder (``asr_decoding: ctc``, :meth:`read_ctc`); at most ``max_units`` units."""
        c = self.config
        limit = c.max_text_units if max_units is None else max_units
        if c.asr_decoding == "ctc":
            return self.read_ctc(self.asr_log_probs(audio), max_units=limit)
        audio = self._asr_audio(audio)
        speech = self.embed_audio(audio[None])[0]
        if c.asr_encoder_layers:
            speech = speech + self._asr_lm_inputs(self.encode_asr(audio[None])[0])
        lm = _Context(self.lm, use_cache)
        prefix = torch.cat([self._specials("<asr>", "<speech>"), speech, self._specials("<text>")])
        state = lm.extend(prefix[None])[-1]
        ids: list[int] = []
        for _ in range(limit):
            logits = self.text_head(state)
            logits[0] = float("-inf")  # the CTC blank shares the vocabulary but is never a target
            unit = int(logits.argmax())
            if unit == self.end_of_text:
                break
            ids.append(unit)
            state = lm.extend(self.text_embed(torch.tensor([[unit]], device=self.device)))[-1]
        return self.vocabulary.decode(ids)
