"""HoliTok: a continuous, causal 48 kHz speech VAE with 25 Hz × 128-d latents (arXiv 2605.29948).

    wav 48 kHz ─ causal conv encoder (÷2·2·2·4·6·10) ─ look-ahead conv ─ Linear─LSTM─Linear ─ (μ, log σ)
    z = μ + ε·σ ─ Linear ─ Linear─LSTM─Linear ─ look-ahead conv ─ BigVGAN (causal, anti-aliased SnakeBeta) ─ clamp

Everything is causal except two convolutions that each see 2 latent frames (80 ms) ahead, one in the
encoder and one in the decoder. That makes exact streaming possible: :class:`HoliTokStreamingEncoder`
and :class:`HoliTokStreamingDecoder` reproduce the offline outputs for any chunking. ``analyze`` and
``synthesize`` are the differentiable 48 kHz paths; ``encode``/``decode`` are for use (decoding
runs a folded channels-last copy of the decoder, :mod:`.holitok_inference`, several times faster).

Two documented deviations make a model trainable on a CPU (config fields, the ``holitok-small-mel``
preset that ``holitok-default`` is): a mel front-end for the encoder (:class:`MelEncoder`) and frame-
rate decoder heads (:class:`ISTFTDecoder`, :class:`MelDecoder` voiced by a trained Vocos), both causal
with the same look-aheads, so streaming stays exact (the Vocos stream waits for its context).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..waveform import check_waveform, prepare_batch
from ..errors import AudioError, ConfigError
from ..mel import MelSpectrogram
from ..modules.activations import AntiAliasedSnakeBeta
from ..modules.conv import CausalConv1d, CausalConvTranspose1d, StreamState, conv_window
from ..modules.convnext import ConvNeXtBlock
from ..modules.istft import CausalISTFT
from ..modules.upsample import Upsampler
from .holitok_config import HoliTokConfig, get_preset
from .holitok_inference import InferenceDecoder
from .pretrained import PretrainedMixin

if TYPE_CHECKING:
    from ..checkpoint import LoadedCheckpoint
    from ..vocoder.vocos import Vocos

MODEL_KIND = "holitok"
#: Convolution initialisation: weights N(0, gain²/fan_in), zero bias, so the input's scale survives
#: the deep encoder and decoder (the output conv starts small). BigVGAN's N(0, 0.01²) and PyTorch's
#: default both leave a HoliTok whose output does not depend on its input at initialisation
#: (holitok-small: a 0.1-std input moves the output by ~1e-10 and ~1e-7); then stage I and the
#: vanilla VAE logged identical losses for 130 steps: the budget went to learning a constant.
_INIT_GAIN, _OUTPUT_INIT_GAIN = 1.0, 0.01


# ------------------------------------------------------------------------------------------ encoder
class ResidualUnit(nn.Module):
    """LeakyReLU → dilated causal conv k3 → LeakyReLU → causal conv k3, added to the input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.act = nn.LeakyReLU()
        self.conv1 = CausalConv1d(channels, channels, 3, dilation=dilation, init_gain=_INIT_GAIN)
        self.conv2 = CausalConv1d(channels, channels, 3, init_gain=_INIT_GAIN)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x), state)), state)


class EncoderBlock(nn.Module):
    """Strided causal conv (kernel 2·stride) then dilated residual units, then LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, units: int, dilation_base: int) -> None:
        super().__init__()
        self.down = CausalConv1d(in_channels, out_channels, 2 * stride, stride=stride, init_gain=_INIT_GAIN)
        self.units = nn.ModuleList(ResidualUnit(out_channels, dilation_base ** i) for i in range(units))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.down(x, state)
        for unit in self.units:
            x = unit(x, state)
        return self.act(x)


class Encoder(nn.Module):
    """48 kHz waveform ``[B, 1, T]`` → pre-latent ``[B, latent_dim, ceil(T / hop)]``."""

    def __init__(self, c: HoliTokConfig) -> None:
        super().__init__()
        ch = c.encoder_channels
        self.conv_in = CausalConv1d(1, ch[0], 3, init_gain=_INIT_GAIN)
        self.act = nn.LeakyReLU(0.2)
        self.blocks = nn.ModuleList(
            EncoderBlock(ch[i], ch[i + 1], rate, c.encoder_res_units, c.encoder_dilation_base)
            for i, rate in enumerate(c.downsample_rates))
        self.conv_out = CausalConv1d(ch[-1], c.latent_dim, 2 * c.encoder_lookahead + 1, lookahead=c.encoder_lookahead,
                                    init_gain=_INIT_GAIN)

    def forward(self, wav: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.act(self.conv_in(wav, state))
        for block in self.blocks:
            x = block(x, state)
        return self.conv_out(x, state)


class MelEncoder(nn.Module):
    """``encoder_frontend="mel"`` (a documented deviation, not the paper's): 48 kHz ``[B, 1, T]`` →
    causal log-mel at 50 Hz → causal ConvNeXt blocks → strided conv to 25 Hz → look-ahead conv.

    The conv stack has to learn a spectral analysis from samples, which a 2-core CPU affords only
    slowly (docs/holitok.md); a fixed STFT gives it for free. Mel frame ``j`` is the window of
    ``n_fft`` samples ending at sample ``j·hop``, so, as for the conv stack, latent ``t`` sees audio
    up to sample ``(t + lookahead)·hop_length`` and a stream reproduces ``forward`` for any chunking.
    """

    def __init__(self, c: HoliTokConfig) -> None:
        super().__init__()
        self.mel = MelSpectrogram(c.encoder_mel)
        dim, frames = c.frontend_dim, c.hop_length // c.encoder_mel.hop_length
        self.conv_in = CausalConv1d(c.encoder_mel.n_mels, dim, 3, init_gain=_INIT_GAIN)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, 3 * dim, 7, 1.0 / c.frontend_layers, causal=True)
                                    for _ in range(c.frontend_layers))
        self.down = CausalConv1d(dim, dim, 2 * frames, stride=frames, init_gain=_INIT_GAIN)
        self.act = nn.GELU()
        self.conv_out = CausalConv1d(dim, c.latent_dim, 2 * c.encoder_lookahead + 1, lookahead=c.encoder_lookahead,
                                    init_gain=_INIT_GAIN)

    def forward(self, wav: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        cfg = self.mel.cfg
        x = conv_window(wav, state, self, left=cfg.n_fft - 1, right=0, span=cfg.n_fft, stride=cfg.hop_length)
        if x.shape[-1] < cfg.n_fft:
            return self.from_mel(x.new_zeros(x.shape[0], cfg.n_mels, 0), state)
        return self.from_mel(self.mel.windows(x[:, 0]), state)

    def from_mel(self, mel: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """The layers after the front-end: normalised log-mel ``[B, n_mels, F]`` → pre-latent."""
        h = self.conv_in(mel, state)
        for block in self.blocks:
            h = block(h, state)
        return self.conv_out(self.act(self.down(h, state)), state)


# -------------------------------------------------------------------------------------- bottleneck
class ResidualLSTM(nn.Module):
    """Unidirectional multi-layer LSTM plus its input; in a stream the ``(h, c)`` state carries over."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers=layers, batch_first=True)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        if x.shape[1] == 0:
            return x
        y, carry = self.lstm(x, None if state is None else state.memory.get(self))
        if state is not None:
            state.memory[self] = carry
        return y + x


class TemporalMixer(nn.Module):
    """Linear up to the LSTM width → residual LSTM → Linear back, on channel-first ``[B, D, T]``."""

    def __init__(self, dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(dim, hidden)
        self.lstm = ResidualLSTM(hidden, layers)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.proj_out(self.lstm(self.proj_in(x.transpose(1, 2)), state)).transpose(1, 2)


class VariationalBottleneck(nn.Module):
    """Temporal (LSTM) bottleneck: pre-latent → posterior ``μ ‖ log σ``, and latent → decoder input."""

    def __init__(self, c: HoliTokConfig) -> None:
        super().__init__()
        self.encode_mixer = TemporalMixer(c.latent_dim, c.bottleneck_dim, c.lstm_layers)
        self.to_posterior = nn.Linear(c.latent_dim, 2 * c.latent_dim)
        self.from_latent = nn.Linear(c.latent_dim, c.latent_dim)
        self.decode_mixer = TemporalMixer(c.latent_dim, c.bottleneck_dim, c.lstm_layers)

    def posterior(self, h: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.encode_mixer(h, state)
        return self.to_posterior(h.transpose(1, 2)).transpose(1, 2)

    def expand(self, z: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.decode_mixer(self.from_latent(z.transpose(1, 2)).transpose(1, 2), state)


# ----------------------------------------------------------------------------------------- decoder
class AMPBlock(nn.Module):
    """BigVGAN AMP block: per dilation, SnakeBeta → conv(k, d) → SnakeBeta → conv(k, 1), residual.

    Each SnakeBeta is anti-aliased (evaluated at twice the rate between low-pass filters).
    """

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], anti_alias_kernel: int) -> None:
        super().__init__()
        self.acts1 = nn.ModuleList(AntiAliasedSnakeBeta(channels, kernel_size=anti_alias_kernel) for _ in dilations)
        self.convs1 = nn.ModuleList(CausalConv1d(channels, channels, kernel_size, dilation=d, init_gain=_INIT_GAIN)
                                    for d in dilations)
        self.acts2 = nn.ModuleList(AntiAliasedSnakeBeta(channels, kernel_size=anti_alias_kernel) for _ in dilations)
        self.convs2 = nn.ModuleList(CausalConv1d(channels, channels, kernel_size, init_gain=_INIT_GAIN)
                                    for _ in dilations)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        for act1, conv1, act2, conv2 in zip(self.acts1, self.convs1, self.acts2, self.convs2):
            x = x + conv2(act2(conv1(act1(x, state), state), state), state)
        return x


class DecoderStage(nn.Module):
    """Causal ×rate upsampling, then the mean of AMP blocks with different kernels (multi-receptive field)."""

    def __init__(self, in_channels: int, out_channels: int, rate: int, c: HoliTokConfig) -> None:
        super().__init__()
        self.up = CausalConvTranspose1d(in_channels, out_channels, rate, init_gain=_INIT_GAIN)
        self.resblocks = nn.ModuleList(AMPBlock(out_channels, k, d, c.anti_alias_kernel)
                                       for k, d in zip(c.resblock_kernels, c.resblock_dilations))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.up(x, state)
        return sum(block(x, state) for block in self.resblocks) / len(self.resblocks)


class Decoder(nn.Module):
    """BigVGAN generator, causal: decoder input ``[B, latent_dim, T']`` → waveform ``[B, 1, T'·hop]`` in [−1, 1]."""

    def __init__(self, c: HoliTokConfig) -> None:
        super().__init__()
        ch = c.decoder_channels
        self.conv_pre = CausalConv1d(c.latent_dim, ch[0], 2 * c.decoder_lookahead + 1, lookahead=c.decoder_lookahead,
                                    init_gain=_INIT_GAIN)
        self.stages = nn.ModuleList(DecoderStage(ch[i], ch[i + 1], rate, c) for i, rate in enumerate(c.upsample_rates))
        self.act_post = AntiAliasedSnakeBeta(ch[-1], kernel_size=c.anti_alias_kernel)
        self.conv_post = CausalConv1d(ch[-1], 1, 7, bias=False, init_gain=_OUTPUT_INIT_GAIN)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.conv_pre(x, state)
        for stage in self.stages:
            x = stage(x, state)
        # A clamp, not tanh (as the official preset): the decoder learns to stay inside [-1, 1] itself.
        return self.conv_post(self.act_post(x, state), state).clamp(-1.0, 1.0)


class FrameDecoder(nn.Module):
    """A causal ConvNeXt stack at ``frames`` × the latent rate: decoder input ``[B, latent_dim, T']`` →
    ``[B, out_dim, T'·frames]``, with the BigVGAN decoder's look-ahead; streams with identical output.

    The base of both cheaper decoder heads (documented deviations, not the paper's): BigVGAN
    upsamples to 48 kHz and runs its convolutions there (holitok-base decodes at ~0.2× real time on
    2 CPU threads before the inference folding, and a training step is as slow); these stay at a
    frame rate, as Vocos does.
    """

    def __init__(self, c: HoliTokConfig, frames: int, out_dim: int) -> None:
        super().__init__()
        dim = c.head_dim
        self.conv_pre = CausalConv1d(c.latent_dim, dim, 2 * c.decoder_lookahead + 1, lookahead=c.decoder_lookahead,
                                    init_gain=_INIT_GAIN)
        self.up = CausalConvTranspose1d(dim, dim, frames, init_gain=_INIT_GAIN)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, 3 * dim, 7, 1.0 / c.head_layers, causal=True)
                                    for _ in range(c.head_layers))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)

    def frames(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = self.up(self.conv_pre(x, state), state)
        for block in self.blocks:
            x = block(x, state)
        return self.head(self.norm(x.transpose(1, 2))).transpose(1, 2)


class ISTFTDecoder(FrameDecoder):
    """``decoder_head="istft"``: STFT frames at 100 Hz (log-magnitude and phase), causal iSTFT to 48 kHz."""

    def __init__(self, c: HoliTokConfig) -> None:
        frame_hop = c.hop_length // c.istft_frames
        istft = CausalISTFT(c.istft_overlap * frame_hop, frame_hop)
        super().__init__(c, c.istft_frames, 2 * istft.bins)
        self.istft = istft

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        log_magnitude, phase = self.frames(x, state).chunk(2, dim=1)
        return self.istft(log_magnitude, phase, state).clamp(-1.0, 1.0)


class MelDecoder(FrameDecoder):
    """``decoder_head="mel"``: the vocoder's normalised log-mel ``[B, n_mels, T'·2]`` (50 Hz).

    Training compares it with the input's mel, with no discriminator; the waveform comes from a
    trained Vocos (:meth:`HoliTok.render`). Its frame ``2t + k`` is the causal mel frame that ends
    at 48 kHz sample ``t·hop + (k + 1)·hop/2``, which latent ``t`` (with its look-ahead) has heard.
    """

    def __init__(self, c: HoliTokConfig) -> None:
        super().__init__(c, c.mel_frames_per_latent, c.mel.n_mels)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        return self.frames(x, state)


DECODERS = {"bigvgan": Decoder, "istft": ISTFTDecoder, "mel": MelDecoder}


# ------------------------------------------------------------------------------------------- model
class HoliTok(PretrainedMixin, nn.Module):
    def __init__(self, config: HoliTokConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config) if config.encoder_frontend == "conv" else MelEncoder(config)
        self.bottleneck = VariationalBottleneck(config)
        self.decoder = DECODERS[config.decoder_head](config)
        self.vocoder_source = config.vocoder  # the mel head's vocoder; a checkpoint may keep its own beside it
        self.upsampler = Upsampler(config.sample_rate // config.mel.sample_rate) if config.decoder_head == "mel" else None
        # Global per-dimension latent statistics for downstream models (identity until fitted).
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    # ----------------------------------------------------------------- construction and checkpoints
    model_kind = MODEL_KIND
    config_class = HoliTokConfig
    get_preset = staticmethod(get_preset)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, split as the paper's Table 6 (encoder / bottleneck / decoder) and in total."""
        parts = {name: sum(p.numel() for p in getattr(self, name).parameters())
                 for name in ("encoder", "bottleneck", "decoder")}
        return {**parts, "total": sum(parts.values())}

    # ----------------------------------------------------------------------------- rates and sizes
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def latent_rate(self) -> float:
        return self.config.latent_rate

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return self.latent_mean.device

    def num_latents(self, num_samples: int, sample_rate: int) -> int:
        """Latent frames for ``num_samples`` at ``sample_rate``: ceil(samples at 48 kHz / hop)."""
        samples = num_samples if sample_rate == self.sample_rate else math.ceil(num_samples * self.sample_rate / sample_rate)
        return -(-samples // self.hop_length)

    # ------------------------------------------------------------------- differentiable 48 kHz paths
    def analyze(self, wav: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """48 kHz ``[B, 1, T]`` → posterior ``[B, 2·latent_dim, ceil(T / hop)]`` = ``μ ‖ log σ``."""
        return self.bottleneck.posterior(self.encoder(wav, state), state)

    def synthesize(self, latents: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """Latents ``[B, latent_dim, T']`` → what the decoder makes: the 48 kHz waveform ``[B, 1, T'·hop]``,
        or for the mel head the normalised mel ``[B, n_mels, T'·2]`` that :meth:`render` voices."""
        return self.decoder(self.bottleneck.expand(latents, state), state)

    def forward(self, wav: torch.Tensor, *, variational: bool = True,
                sample: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The differentiable training path in one call, so a DDP wrapper sees (and syncs) it.

        48 kHz ``[B, 1, T]`` → ``(reconstruction, posterior μ ‖ log σ, latents)``, the reconstruction
        being what :meth:`synthesize` returns (a mel for the mel head); with
        ``variational=False`` the bottleneck is bypassed (stage I's plain autoencoder) and the last
        two are None. ``sample=False`` uses the posterior mean as the latents.
        """
        h = self.encoder(wav)
        if not variational:
            return self.decoder(h), None, None
        posterior = self.bottleneck.posterior(h)
        mean, log_std = posterior.chunk(2, dim=1)
        z = mean + log_std.exp() * torch.randn_like(mean) if sample else mean
        return self.synthesize(z), posterior, z

    def sample_posterior(self, posterior: torch.Tensor, *, noise_scale: float = 1.0,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = μ + noise_scale·ε·exp(log σ)`` (the posterior stores the log standard deviation).

        ε is drawn time-major, so one generator gives the same noise whether the frames come at once
        or chunk by chunk from a stream.
        """
        mean, log_std = posterior.chunk(2, dim=1)
        b, d, t = mean.shape
        noise = torch.randn((t, b, d), generator=generator, device="cpu" if generator is None else generator.device)
        return mean + noise_scale * noise.permute(1, 2, 0).to(mean) * log_std.exp()

    # ------------------------------------------------------------------------------ inference API
    def _prepare(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Validate and resample to 48 kHz; returns ``[B, 1, T]`` on the model's device."""
        wav, _ = prepare_batch(wav, sample_rate, self.sample_rate)
        return wav.to(self.device)

    @torch.inference_mode()
    def encode_posterior(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Audio ``[B, 1, T]`` (or ``[T]``) at ``sample_rate`` → ``[B, 256, T']`` = ``μ ‖ log σ``, 25 Hz."""
        return self.analyze(self._prepare(wav, sample_rate))

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, sample_rate: int, sample: bool = False, *, noise_scale: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio → latents ``[B, 128, T']``, ``T' = ceil(seconds × 25)``: the posterior mean, or a sample."""
        posterior = self.encode_posterior(wav, sample_rate)
        if sample:
            return self.sample_posterior(posterior, noise_scale=noise_scale, generator=generator)
        return posterior[:, : self.latent_dim]

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Latents ``[B, 128, T']`` → waveform ``[B, 1, T'·1920]`` at 48 kHz (``dtype``: see :meth:`inference_decoder`)."""
        return self.render(self.check_latents(latents), dtype=dtype)

    def render(self, latents: torch.Tensor, state: StreamState | None = None, *,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """:meth:`synthesize` to audio for inference: the BigVGAN decoder through its folded copy, the
        iSTFT head as is, the mel head through its vocoder and the upsampler to 48 kHz."""
        if isinstance(self.decoder, Decoder):
            return self.inference_decoder(dtype)(self.bottleneck.expand(latents, state), state)
        if dtype not in (None, self.latent_mean.dtype):
            raise ConfigError("dtype: only the BigVGAN decoder head has a reduced-precision decode")
        out = self.synthesize(latents, state)
        if isinstance(self.decoder, MelDecoder):
            vocoder = self.vocoder
            out = self.upsampler(vocoder.vocode(out) if state is None else vocoder.stream(out, state), state).clamp(-1.0, 1.0)
        return out

    @property
    def vocoder(self) -> "Vocos":
        """The mel head's vocoder, loaded on first use (not part of this model's weights)."""
        if self.config.decoder_head != "mel":
            raise ConfigError(f"{self.config.name}: only the mel decoder head has a vocoder")
        from ..vocoder.vocos import load_vocoder

        return load_vocoder(self.vocoder_source, self.config.mel).to(self.device)

    def after_load(self, loaded: "LoadedCheckpoint") -> None:
        if self.config.decoder_head == "mel":
            self.vocoder_source = self.companion(loaded, self.config.vocoder)

    def inference_decoder(self, dtype: torch.dtype | None = None) -> InferenceDecoder:
        """The decoder folded for inference, rebuilt whenever a decoder weight has changed.

        ``dtype`` (default: the model's) may be ``torch.bfloat16``: about 1.8× faster on CPUs with
        AVX-512 BF16 or AMX, at bf16 precision (docs/performance.md); fp32 elsewhere.
        """
        dtype = dtype or self.latent_mean.dtype
        key = (dtype, tuple((p.data_ptr(), p._version) for p in self.decoder.parameters()))
        cached = self.__dict__.get("_inference_decoder")
        if cached is None or cached[0] != key:
            cached = (key, InferenceDecoder(self.decoder, dtype))
            self.__dict__["_inference_decoder"] = cached  # a plain attribute: not a module, not saved
        return cached[1]

    @torch.inference_mode()
    def reconstruct(self, wav: torch.Tensor, sample_rate: int, sample: bool = False, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode then decode; the output is at 48 kHz, trimmed to the input's duration."""
        out = self.decode(self.encode(wav, sample_rate, sample, generator=generator))
        return out[..., : math.ceil(wav.shape[-1] * self.sample_rate / sample_rate)]

    def streaming_encoder(self, sample: bool = False, *,
                          generator: torch.Generator | None = None) -> "HoliTokStreamingEncoder":
        return HoliTokStreamingEncoder(self, sample=sample, generator=generator)

    def streaming_decoder(self) -> "HoliTokStreamingDecoder":
        return HoliTokStreamingDecoder(self)

    def check_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if not isinstance(latents, torch.Tensor) or latents.dim() != 3 or latents.shape[1] != self.latent_dim:
            shape = list(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ConfigError(f"latents: expected a float tensor [B, {self.latent_dim}, T'], got {shape}")
        if latents.shape[-1] == 0:
            raise ConfigError("latents: empty sequence")
        if not latents.dtype.is_floating_point or not bool(torch.isfinite(latents).all()):
            raise ConfigError("latents: values must be finite floats")
        return latents.to(self.device, self.latent_mean.dtype)

    # ------------------------------------------------------------------------- latent statistics
    @torch.no_grad()
    def fit_latent_stats(self, latents: Iterable[torch.Tensor]) -> None:
        """Set ``latent_mean``/``latent_std`` from latents ``[B, 128, T']`` (e.g. a corpus, batch by batch)."""
        count = 0
        total = torch.zeros(self.latent_dim, dtype=torch.float64)
        squares = torch.zeros(self.latent_dim, dtype=torch.float64)
        for z in latents:
            z = self.check_latents(z).double().cpu().transpose(0, 1).reshape(self.latent_dim, -1)
            count += z.shape[1]
            total += z.sum(1)
            squares += z.pow(2).sum(1)
        if count < 2:
            raise ConfigError("fit_latent_stats: need at least 2 latent frames")
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp(min=0).sqrt().clamp(min=1e-5)
        self.latent_mean.copy_(mean.to(self.latent_mean))
        self.latent_std.copy_(std.to(self.latent_std))

    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → zero-mean unit-variance per dimension (what a downstream AR+DiT model consumes)."""
        return (latents - self.latent_mean[:, None]) / self.latent_std[:, None]

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latent_std[:, None] + self.latent_mean[:, None]


# --------------------------------------------------------------------------------------- streaming
class _Stream:
    """Shared life cycle of a stream: feed chunks, flush once; one :class:`StreamState` per stream."""

    def __init__(self, model: HoliTok) -> None:
        self.model = model
        self.state = StreamState()
        self.batch: int | None = None
        self.flushed = False

    def __enter__(self) -> "_Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _check_open(self, batch: int) -> None:
        if self.flushed:
            raise ConfigError("stream already flushed; start a new one")
        if self.batch is not None and batch != self.batch:
            raise AudioError(f"stream: batch size changed from {self.batch} to {batch}")
        self.batch = batch

    def _close(self) -> None:
        if self.flushed:
            raise ConfigError("stream already flushed; start a new one")
        if self.batch is None:
            raise AudioError("stream: nothing was fed before flush")
        self.flushed = True
        self.state.final = True


class HoliTokStreamingEncoder(_Stream):
    """48 kHz audio chunk by chunk → latents, each emitted once its 2-frame look-ahead has arrived.

    Latent ``t`` needs audio up to sample ``(t + lookahead)·hop``; :meth:`flush` emits the last
    ``lookahead`` frames (zero look-ahead at the end, as offline). Concatenated outputs equal
    :meth:`HoliTok.encode` on the whole 48 kHz signal. Resample the input before streaming it.
    """

    def __init__(self, model: HoliTok, *, sample: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__(model)
        self.sample, self.generator = sample, generator

    @torch.inference_mode()
    def feed(self, chunk: torch.Tensor) -> torch.Tensor:
        """A chunk ``[B, 1, n]`` (or ``[n]``) of 48 kHz audio → the latents ``[B, 128, k]`` now complete."""
        chunk = check_waveform(chunk, self.model.sample_rate, name="chunk")
        self._check_open(chunk.shape[0])
        return self._run(chunk.to(self.model.device))

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of audio: the remaining latents."""
        self._close()
        return self._run(torch.zeros(self.batch, 1, 0, device=self.model.device))

    def _run(self, wav: torch.Tensor) -> torch.Tensor:
        posterior = self.model.analyze(wav, self.state)
        if self.sample:
            return self.model.sample_posterior(posterior, generator=self.generator)
        return posterior[:, : self.model.latent_dim]


class HoliTokStreamingDecoder(_Stream):
    """Latents chunk by chunk → 48 kHz audio, ``hop`` samples per latent once its look-ahead has arrived.

    Concatenated outputs (feeds then :meth:`flush`) equal :meth:`HoliTok.decode` on all latents.
    """

    @torch.inference_mode()
    def feed(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, 128, k]`` → the audio ``[B, 1, m·hop]`` now complete."""
        latents = self.model.check_latents(latents)
        self._check_open(latents.shape[0])
        return self.model.render(latents, self.state)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of latents: the remaining audio."""
        self._close()
        empty = torch.zeros(self.batch, self.model.latent_dim, 0, device=self.model.device)
        return self.model.render(empty, self.state)
