"""Streaming SiTok encoding: waveform chunks in, code chunks out, as offline ``encode`` would give.

Everything before the quantiser is causal. The mel front-end pads ``n_fft - hop`` zeros on the left
only, so frame ``i`` ends at sample ``(i + 1) · hop``. The encoder is a causal transformer. A token is
therefore final as soon as the last sample of its four frames has arrived. The stream carries four
things between chunks: the samples not yet framed (with the ``n_fft - hop`` samples of overlap
before them), the mel frames of the unfinished token, the encoder's KV cache (which also holds the
rotary position offset) and, for other input rates, soxr's resampler state. ``flush`` ends the clip
as ``encode`` does. It zero-pads the last partial frame. A last token with fewer than four frames
gets the normalised silence value in the missing frames. The stream then yields
``ceil(seconds × 12.5)`` tokens in all.

Equality with ``encode`` is exact for the mel frame *count*, the token count and the resampled
samples (soxr's stream equals its one-shot call sample for sample). The floats of the mel and the
encoder are not bit-identical. The kernels reduce in an order that depends on the tensor shapes,
and a KV-cache step has other shapes than the one-pass encoder. The difference is about 1e-6, and
it flips a code only when two codebook entries are that close to equidistant. docs/sitok.md gives
the measured margins.

Algorithmic latency at the model rate: one token, 1,920 samples = 80 ms. The window has no
lookahead, so nothing is added to that. A token's first sample waits 80 ms, its last 0 ms. Input at
another rate adds soxr's filter delay (also in docs/sitok.md).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..audio import resample_stream
from ..errors import AudioError, ConfigError
from ..modules.transformer import KVCache

if TYPE_CHECKING:
    from .sitok import SiTok


class SiTokEncoderStream:
    """``push(chunk) -> codes [1, K, n]`` as tokens complete; ``flush() -> codes`` ends the clip.

    The model is only read, so several streams may share it (each holds its own state).
    """

    def __init__(self, model: SiTok, sample_rate: int) -> None:
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise AudioError(f"audio stream: sample_rate must be a positive integer, got {sample_rate!r}")
        if model.quantizer.training:
            raise ConfigError("audio stream: the model is in training mode, in which its quantiser updates the"
                              " codebook; call model.eval() first")
        self.model = model
        self.sample_rate = sample_rate
        cfg = model.config.mel
        self._resampler = resample_stream(sample_rate, model.sample_rate) if sample_rate != model.sample_rate else None
        # The causal left padding of the first window, then every sample not yet past a whole window.
        self._samples = torch.zeros(cfg.n_fft - cfg.hop_length, device=model.device)
        self._frames = torch.zeros(1, cfg.n_mels, 0, device=model.device)  # frames of the unfinished token
        self._cache = KVCache()
        self._received = 0  # samples at the model rate
        self._closed = False
        with torch.inference_mode():  # codes [1, K, 0]: K from the quantiser's layout of one token
            z = torch.zeros(1, 1, model.vq_in.out_features, device=model.device)
            self._empty = model.codes_from_indices(model.quantizer(z, _all_valid(z)).indices)[..., :0]

    # ------------------------------------------------------------------------------------ public
    @torch.inference_mode()
    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Add a chunk (``[T]``, ``[1, T]`` or ``[1, 1, T]``, any length, even 0); return the codes of
        the tokens it completes (possibly none: ``[1, K, 0]``)."""
        self._check_open()
        wav = self._check_chunk(chunk)
        if self._resampler is not None:
            wav = torch.from_numpy(self._resampler.resample_chunk(wav.numpy(), last=False))
        self._append(wav)
        return self._encode(self._take_frames())

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of input: the codes of the remaining tokens, the last one padded as ``encode`` pads it.
        The stream is closed afterwards."""
        self._check_open()
        if self._resampler is not None:
            self._append(torch.from_numpy(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)))
        self._closed = True
        if self._received == 0:
            raise AudioError("audio stream: no samples before flush (empty audio)")
        hop = self.model.config.mel.hop_length
        self._samples = torch.nn.functional.pad(self._samples, (0, -(self._received % -hop)))  # the last partial frame
        frames = torch.cat([self._take_frames(), self._frames], dim=-1)
        self._frames = self._frames[..., :0]
        return self._encode(frames)

    @property
    def latency_samples(self) -> int:
        """Samples at the model rate that a token's first sample waits for its code (one token)."""
        return self.model.samples_per_token

    # ---------------------------------------------------------------------------------- internals
    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("audio stream: already flushed; start a new stream for the next clip")

    def _check_chunk(self, chunk: torch.Tensor) -> torch.Tensor:
        if not isinstance(chunk, torch.Tensor):
            raise AudioError(f"audio stream: expected a torch.Tensor chunk, got {type(chunk).__name__}")
        if chunk.dim() not in (1, 2, 3) or any(size != 1 for size in chunk.shape[:-1]):
            raise AudioError(f"audio stream: expected a mono chunk [T], [1, T] or [1, 1, T], got {list(chunk.shape)}")
        wav = chunk.reshape(-1).detach().float().cpu().contiguous()  # soxr reads the raw buffer
        if not torch.isfinite(wav).all():
            raise AudioError("audio stream: chunk contains NaN or Inf samples")
        return wav

    def _append(self, wav: torch.Tensor) -> None:
        self._received += wav.numel()
        self._samples = torch.cat([self._samples, wav.to(self._samples.device)])

    def _take_frames(self) -> torch.Tensor:
        """Frame every whole window in the buffer; return the frames of the tokens this completes."""
        cfg, stack = self.model.config.mel, self.model.config.stack
        ready = (self._samples.numel() - cfg.n_fft) // cfg.hop_length + 1
        if ready > 0:
            used = (ready - 1) * cfg.hop_length + cfg.n_fft
            frames = self.model.mel.windows(self._samples[None, :used])
            self._frames = torch.cat([self._frames, frames], dim=-1)
            self._samples = self._samples[ready * cfg.hop_length:]
        whole = self._frames.shape[-1] // stack * stack
        done, self._frames = self._frames[..., :whole], self._frames[..., whole:]
        return done

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[1, n_mels, F]`` → codes ``[1, K, ceil(F / 4)]``; a last partial token is padded
        with silence frames by :meth:`SiTok.stack`, as in ``encode``."""
        if frames.shape[-1] == 0:
            return self._empty
        m = self.model
        stacked, _, _ = m.stack(frames, torch.tensor([frames.shape[-1]], device=frames.device))
        h = m.encoder(m.encoder_in(stacked), cache=self._cache)
        return m.codes_from_indices(m.quantizer(m.vq_in(h), _all_valid(stacked)).indices)


def _all_valid(stacked: torch.Tensor) -> torch.Tensor:
    return torch.ones(stacked.shape[:2], dtype=torch.bool, device=stacked.device)
