"""Training data: manifest rows → cached log-mel + CTC labels, grouped by a duration-based batcher.

Reproducibility is built in so that ``--resume`` continues exactly: every random choice (batch
order, crop offsets) is a pure function of ``(seed, epoch, position)``, so the data stream after a
restart is the one the uninterrupted run would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_audio
from ..errors import DataError
from ..mel import MelSpectrogram
from ..text import Vocabulary
from .engine_config import source_of
from .manifest import Utterance
from .teacher import Teacher, teacher_frames
from .threads import read_ahead


def preload(load: Callable[[int], Any], count: int, workers: int, progress: bool) -> None:
    """Call ``load`` on every index with ``workers`` threads, filling a lazy dataset's cache up front.

    Decoding and resampling run in C libraries that release the GIL, so threads scale: a lent GPU's
    cores load a pack together instead of one file at a time during the first epoch."""
    for _ in tqdm(read_ahead(load, range(count), workers), total=count, desc="preload", unit="utt",
                  disable=not progress, dynamic_ncols=True):
        pass


@dataclass
class Example:
    mel: torch.Tensor  # [n_mels, F]
    labels: list[int]  # empty when there is no usable transcript
    teacher: torch.Tensor | None = None  # [F, D]: a teacher's features resampled to the mel frames


@dataclass
class Batch:
    mel: torch.Tensor  # [B, n_mels, F] padded with silence
    frame_lengths: torch.Tensor  # [B]
    labels: torch.Tensor  # [B, L] padded with 0 (blank)
    label_lengths: torch.Tensor  # [B]; 0 = no CTC target
    teacher: torch.Tensor | None = None  # [B, F, D] padded with 0, when the dataset has a teacher

    @property
    def seconds(self) -> float:
        return float(self.frame_lengths.sum()) / 50.0


class MelDataset:
    """Loads each utterance once, keeps its mel in memory and crops long ones per epoch.

    A cropped utterance loses its transcript (the crop no longer matches the text), so it trains
    the reconstruction objective only. With a ``teacher`` each utterance's frame features are
    computed once on the whole utterance, resampled to the mel frames and kept (fp16) beside the mel,
    so a crop keeps a dense target even without its transcript.
    """

    def __init__(self, utterances: list[Utterance], mel: MelSpectrogram, vocabulary: Vocabulary,
                 max_seconds: float, seed: int = 0, teacher: Teacher | None = None) -> None:
        if not utterances:
            raise DataError("no utterances to train on")
        self.utterances = utterances
        self.mel = mel
        self.vocabulary = vocabulary
        self.max_frames = int(max_seconds * mel.cfg.frame_rate)
        self.seed = seed
        self.teacher = teacher
        self._cache: dict[int, tuple[torch.Tensor, list[int], torch.Tensor | None]] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        cap = self.max_frames / self.mel.cfg.frame_rate
        return [min(u.seconds, cap) for u in self.utterances]

    def sources(self) -> list[str]:
        return [source_of(u.path) for u in self.utterances]

    def preload(self, workers: int, progress: bool = False) -> None:
        preload(self._load, len(self), workers, progress)

    def _load(self, index: int) -> tuple[torch.Tensor, list[int], torch.Tensor | None]:
        if index not in self._cache:
            utt = self.utterances[index]
            wav, rate = load_audio(utt.path, self.mel.cfg.sample_rate)
            with torch.no_grad():  # on the front-end's device (the training GPU), kept on the CPU
                mel = self.mel(torch.from_numpy(wav)[None, None].to(self.mel.device))[0].cpu()
            labels = self.vocabulary.encode(utt.transcript) if utt.transcript else []
            features = None if self.teacher is None else teacher_frames(self.teacher, wav, rate, mel.shape[-1])
            self._cache[index] = (mel, labels, features)
        return self._cache[index]

    def get(self, index: int, epoch: int) -> Example:
        mel, labels, features = self._load(index)
        frames = mel.shape[-1]
        if frames <= self.max_frames:
            return Example(mel, labels, features)
        rng = np.random.default_rng([self.seed, epoch, index])
        start = int(rng.integers(0, frames - self.max_frames + 1))
        crop = slice(start, start + self.max_frames)
        return Example(mel[:, crop], [], None if features is None else features[crop])


@dataclass
class Segment:
    wav: torch.Tensor  # [1, frames · hop]
    mel: torch.Tensor | None  # [n_mels, frames] when the dataset has a mel front-end
    labels: list[int]  # CTC labels; empty when cropped or untranscribed
    speaker: int  # index into SegmentDataset.speakers


class SegmentDataset:
    """Random frame-aligned waveform crops of ``segment_seconds`` for waveform generators.

    Each utterance is loaded once at ``sample_rate``. With a mel front-end the mel is computed on
    the whole utterance (so the causal front-end sees real left context) and frame ``i`` pairs with
    samples ``[i · hop, (i + 1) · hop)``. Shorter utterances are padded with silence and keep their
    transcript; cropped ones lose it. Speakers are numbered in sorted order of their labels.
    """

    def __init__(self, utterances: list[Utterance], sample_rate: int, hop: int, segment_seconds: float,
                 seed: int = 0, *, mel: MelSpectrogram | None = None, vocabulary: Vocabulary | None = None) -> None:
        if not utterances:
            raise DataError("no utterances to train on")
        self.utterances = utterances
        self.sample_rate, self.hop = sample_rate, hop
        self.mel = mel
        self.vocabulary = vocabulary
        self.frames = max(1, round(segment_seconds * sample_rate / hop))
        self.seed = seed
        self.speakers = sorted({u.speaker for u in utterances})
        self._speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def durations(self) -> list[float]:
        return [self.frames * self.hop / self.sample_rate] * len(self.utterances)

    def sources(self) -> list[str]:
        return [source_of(u.path) for u in self.utterances]

    def preload(self, workers: int, progress: bool = False) -> None:
        preload(self.load, len(self), workers, progress)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole utterance: waveform ``[1, T]`` and its mel (or None)."""
        if index not in self._cache:
            wav, _ = load_audio(self.utterances[index].path, self.sample_rate)
            wav = torch.from_numpy(wav)[None]
            mel = None
            if self.mel is not None:
                with torch.no_grad():
                    mel = self.mel(wav[None].to(self.mel.device))[0].cpu()
            self._cache[index] = (wav, mel)
        return self._cache[index]

    def get(self, index: int, epoch: int) -> Segment:
        wav, mel = self.load(index)
        hop, n = self.hop, self.frames
        total = -(-wav.shape[-1] // hop)
        start = 0
        if total > n:
            start = int(np.random.default_rng([self.seed, epoch, index]).integers(0, total - n + 1))
        crop = wav[:, start * hop:(start + n) * hop]
        crop = torch.nn.functional.pad(crop, (0, n * hop - crop.shape[-1]))
        if mel is not None:
            mel = mel[:, start:start + n]
            mel = torch.nn.functional.pad(mel, (0, n - mel.shape[-1]), value=self.mel.silence_value)
        utt = self.utterances[index]
        labels = self.vocabulary.encode(utt.transcript) if self.vocabulary and utt.transcript and total <= n else []
        return Segment(crop, mel, labels, self._speaker_index[utt.speaker])


class DurationBatcher:
    """Groups utterances of similar length into batches of at most ``batch_seconds`` padded audio.

    Under data parallelism every rank gets the same number of batches (the surplus is dropped),
    batch ``k`` of rank ``r`` being global batch ``k * world + r``. ``repeats`` (the data mix) lists
    utterance ``i`` that many times per epoch (0: never): the ``k``-th copies of the utterances repeated
    more than ``k`` times are batched in a pass of their own, so two copies never share a batch.
    """

    def __init__(self, durations: list[float], batch_seconds: float, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, repeats: list[int] | None = None) -> None:
        self.durations = np.asarray(durations, dtype=float)
        self.repeats = np.ones(len(durations), dtype=int) if repeats is None else np.asarray(repeats, dtype=int)
        if self.repeats.shape != self.durations.shape or (self.repeats < 0).any():
            raise DataError(f"repeats must be {len(durations)} counts of at least 0, one per utterance")
        if not self.repeats.any():
            raise DataError("no utterance to batch (an empty data set, or a data mix of zeros)")
        longest = self.durations[self.repeats > 0].max()
        if batch_seconds < longest:
            raise DataError(f"batch_seconds {batch_seconds} is shorter than the longest (cropped) utterance {longest:.1f} s")
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def epoch(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for copy in range(int(self.repeats.max())):  # one pass for the first copies, one for the second, ...
            batches += self._batch(np.flatnonzero(self.repeats > copy), rng)
        batches = [batches[i] for i in rng.permutation(len(batches))]
        usable = len(batches) // self.world_size * self.world_size
        if usable == 0:
            raise DataError(f"too little data for {self.world_size} processes: {len(batches)} batch(es) per epoch")
        return batches[self.rank:usable:self.world_size]

    def _batch(self, indices: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        """Utterances of similar length together, within ``batch_seconds`` of padded audio."""
        durations = self.durations[indices]
        jitter = rng.uniform(0.0, 0.5, size=len(indices))  # varies batch composition per epoch
        batches, current, longest = [], [], 0.0
        for position in np.argsort(durations + jitter, kind="stable"):
            duration = float(durations[position])
            if current and max(longest, duration) * (len(current) + 1) > self.batch_seconds:
                batches.append(current)
                current, longest = [], 0.0
            current.append(int(indices[position]))
            longest = max(longest, duration)
        if current:
            batches.append(current)
        return batches


def collate(examples: list[Example], silence: float) -> Batch:
    frames = torch.tensor([e.mel.shape[-1] for e in examples])
    mel = torch.full((len(examples), examples[0].mel.shape[0], int(frames.max())), silence)
    for i, e in enumerate(examples):
        mel[i, :, : e.mel.shape[-1]] = e.mel
    label_lengths = torch.tensor([len(e.labels) for e in examples])
    labels = torch.zeros(len(examples), max(1, int(label_lengths.max())), dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
    teacher = None
    if examples[0].teacher is not None:
        teacher = torch.zeros(len(examples), int(frames.max()), examples[0].teacher.shape[-1])
        for i, e in enumerate(examples):
            teacher[i, : e.teacher.shape[0]] = e.teacher.float()
    return Batch(mel, frames, labels, label_lengths, teacher)


__all__ = ["Batch", "DurationBatcher", "Example", "MelDataset", "Segment", "SegmentDataset", "collate"]
