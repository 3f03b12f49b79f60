"""Training data: manifest rows → cached log-mel + CTC labels, grouped by a duration-based batcher.

Reproducibility is built in so that ``--resume`` continues exactly: every random choice (batch
order, crop offsets) is a pure function of ``(seed, epoch, position)``, so the data stream after a
restart is the one the uninterrupted run would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio import load_audio
from ..errors import DataError
from ..mel import MelSpectrogram
from ..text import Vocabulary
from .manifest import Utterance


@dataclass
class Example:
    mel: torch.Tensor  # [n_mels, F]
    labels: list[int]  # empty when there is no usable transcript


@dataclass
class Batch:
    mel: torch.Tensor  # [B, n_mels, F] padded with silence
    frame_lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [B, L] padded with 0 (blank)
    label_lengths: torch.Tensor  # [B]; 0 = no CTC target

    @property
    def seconds(self) -> float:
        return float(self.frame_lengths.sum()) / 50.0


class MelDataset:
    """Loads each utterance once, keeps its mel in memory and crops long ones per epoch.

    A cropped utterance loses its transcript (the crop no longer matches the text), so it trains
    the reconstruction objective only.
    """

    def __init__(self, utterances: list[Utterance], mel: MelSpectrogram, vocabulary: Vocabulary,
                 max_seconds: float, seed: int = 0) -> None:
        if not utterances:
            raise DataError("no utterances to train on")
        self.utterances = utterances
        self.mel = mel
        self.vocabulary = vocabulary
        self.max_frames = int(max_seconds * mel.cfg.frame_rate)
        self.seed = seed
        self._cache: dict[int, tuple[torch.Tensor, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        cap = self.max_frames / self.mel.cfg.frame_rate
        return [min(u.seconds, cap) for u in self.utterances]

    def _load(self, index: int) -> tuple[torch.Tensor, list[int]]:
        if index not in self._cache:
            utt = self.utterances[index]
            wav, _ = load_audio(utt.path, self.mel.cfg.sample_rate)
            with torch.no_grad():
                mel = self.mel(torch.from_numpy(wav)[None, None])[0]
            labels = self.vocabulary.encode(utt.transcript) if utt.transcript else []
            self._cache[index] = (mel, labels)
        return self._cache[index]

    def get(self, index: int, epoch: int) -> Example:
        mel, labels = self._load(index)
        frames = mel.shape[-1]
        if frames <= self.max_frames:
            return Example(mel, labels)
        rng = np.random.default_rng([self.seed, epoch, index])
        start = int(rng.integers(0, frames - self.max_frames + 1))
        return Example(mel[:, start:start + self.max_frames], [])


@dataclass
class Segment:
    mel: torch.Tensor  # [n_mels, F]
    wav: torch.Tensor  # [1, F · hop], the samples that frames F were computed from


class SegmentDataset:
    """Random aligned (mel, waveform) crops of ``segment_seconds`` for waveform generators.

    Each utterance is loaded once; its mel is computed on the whole utterance (so the causal
    front-end sees real left context) and crops are taken on frame boundaries, frame ``i`` pairing
    with samples ``[i · hop, (i + 1) · hop)``. Shorter utterances are padded with silence.
    """

    def __init__(self, utterances: list[Utterance], mel: MelSpectrogram, segment_seconds: float, seed: int = 0) -> None:
        if not utterances:
            raise DataError("no utterances to train on")
        self.utterances = utterances
        self.mel = mel
        self.frames = max(1, int(segment_seconds * mel.cfg.frame_rate))
        self.seed = seed
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        return [self.frames / self.mel.cfg.frame_rate] * len(self.utterances)

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self._cache:
            wav, _ = load_audio(self.utterances[index].path, self.mel.cfg.sample_rate)
            wav = torch.from_numpy(wav)[None]
            with torch.no_grad():
                mel = self.mel(wav[None])[0]
            self._cache[index] = (mel, wav)
        return self._cache[index]

    def get(self, index: int, epoch: int) -> Segment:
        mel, wav = self._load(index)
        hop, n = self.mel.cfg.hop_length, self.frames
        start = 0
        if mel.shape[-1] > n:
            start = int(np.random.default_rng([self.seed, epoch, index]).integers(0, mel.shape[-1] - n + 1))
        mel = mel[:, start:start + n]
        wav = wav[:, start * hop:(start + n) * hop]
        if mel.shape[-1] < n:
            mel = torch.nn.functional.pad(mel, (0, n - mel.shape[-1]), value=self.mel.silence_value)
        return Segment(mel, torch.nn.functional.pad(wav, (0, n * hop - wav.shape[-1])))


class DurationBatcher:
    """Groups utterances of similar length into batches of at most ``batch_seconds`` padded audio.

    Under data parallelism every rank gets the same number of batches (the surplus is dropped),
    batch ``k`` of rank ``r`` being global batch ``k * world + r``.
    """

    def __init__(self, durations: list[float], batch_seconds: float, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_seconds < max(durations):
            raise DataError(f"batch_seconds {batch_seconds} is shorter than the longest (cropped) utterance {max(durations):.1f} s")
        self.durations = np.asarray(durations)
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        jitter = rng.uniform(0.0, 0.5, size=len(self.durations))  # varies batch composition per epoch
        order = np.argsort(self.durations + jitter, kind="stable")
        batches, current, longest = [], [], 0.0
        for index in order:
            duration = float(self.durations[index])
            if current and max(longest, duration) * (len(current) + 1) > self.batch_seconds:
                batches.append(current)
                current, longest = [], 0.0
            current.append(int(index))
            longest = max(longest, duration)
        if current:
            batches.append(current)
        batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) // self.world_size * self.world_size
        if usable == 0:
            raise DataError(f"too little data for {self.world_size} processes: {len(batches)} batch(es) per epoch")
        return batches[self.rank:usable:self.world_size]


def collate(examples: list[Example], silence: float) -> Batch:
    frames = torch.tensor([e.mel.shape[-1] for e in examples])
    mel = torch.full((len(examples), examples[0].mel.shape[0], int(frames.max())), silence)
    for i, e in enumerate(examples):
        mel[i, :, : e.mel.shape[-1]] = e.mel
    label_lengths = torch.tensor([len(e.labels) for e in examples])
    labels = torch.zeros(len(examples), max(1, int(label_lengths.max())), dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
    return Batch(mel, frames, labels, label_lengths)


__all__ = ["Batch", "DurationBatcher", "Example", "MelDataset", "Segment", "SegmentDataset", "collate"]
