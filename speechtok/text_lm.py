"""A character n-gram language model: the text prior of CTC beam search (:mod:`speechtok.ctc_decode`).

An acoustic model trained on a few hours spells by ear ("go derer"); a prior over letters fitted on
plain sentences corrects spellings and word boundaries without touching the acoustic weights, as
KenLM does for wav2letter/wav2vec 2.0. Witten-Bell interpolation needs only counts, so the model is
stored as two integer tensors (every kept n-gram's key and count) in a hash-checked checkpoint of
kind ``char-ngram``: no pickle, and a lookup is a binary search rather than a dictionary built at load.

Outcomes are the vocabulary's ids, with id 0 (the CTC blank, never a unit) standing for the
sentence boundary: a context before the first letter is made of boundaries, and predicting 0 ends
the sentence.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .errors import ConfigError, DataError
from .text import Vocabulary, VocabularyName, get_vocabulary

if TYPE_CHECKING:
    import torch

KIND = "char-ngram"


@dataclass
class CharNgramConfig:
    name: str = "char-ngram"
    vocabulary: VocabularyName = "char"
    order: int = 8  # letters of context + 1
    # n-grams of three or more symbols seen fewer times are left out: they are most of the entries
    # and carry little (measured in docs/ardit.md, "Decoding with a text LM").
    min_count: int = 2
    sentences: int = 0  # how many sentences the counts came from (provenance, set by fit)

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ConfigError(f"{self.name}: min_count must be ≥ 1, got {self.min_count}")
        base = len(get_vocabulary(self.vocabulary)) + 1
        if self.order < 1 or base ** self.order >= 2 ** 63:  # keys are int64
            longest = max(n for n in range(1, 64) if base ** n < 2 ** 63)
            raise ConfigError(f"{self.name}: order must be 1..{longest} for the {self.vocabulary!r} vocabulary,"
                              f" got {self.order}")


class CharNgramLM:
    """Interpolated Witten-Bell n-gram over a vocabulary's units (see the module docstring)."""

    def __init__(self, config: CharNgramConfig, keys: np.ndarray, counts: np.ndarray) -> None:
        if keys.shape != counts.shape or keys.ndim != 1:
            raise DataError(f"{config.name}: keys and counts must be 1-D of one length")
        self.config = config
        self.vocabulary: Vocabulary = get_vocabulary(config.vocabulary)
        self._base = len(self.vocabulary) + 1  # digit 0 never occurs, so keys of different lengths differ
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order].astype(np.int64)
        self.counts = counts[order].astype(np.int64)
        self._outcomes = np.arange(len(self.vocabulary), dtype=np.int64) + 1

    @classmethod
    def fit(cls, texts: Iterable[str], config: CharNgramConfig | None = None) -> "CharNgramLM":
        """Count every n-gram of ``texts`` (normalised as the vocabulary does) up to ``config.order``."""
        config = config or CharNgramConfig()
        vocabulary = get_vocabulary(config.vocabulary)
        base, pad = len(vocabulary) + 1, config.order - 1
        sentences = [vocabulary.encode(t) for t in texts]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise DataError("no text to fit a language model on (every sentence was empty after normalising)")
        # One long sequence, each sentence behind ``pad`` boundaries and followed by one; windows
        # that reach back past a sentence's own padding only see boundaries, as at the start.
        seq = np.concatenate([np.array([0] * pad + s + [0], dtype=np.int64) for s in sentences]) + 1
        starts = np.concatenate([[0], np.cumsum([len(s) + pad + 1 for s in sentences])[:-1]])
        valid = np.ones(len(seq), dtype=bool)
        for offset in range(pad):
            valid[starts + offset] = False  # padding positions are contexts, not outcomes
        keys, counts = [], []
        key = np.zeros(len(seq), dtype=np.int64)
        for n in range(1, config.order + 1):
            key = key + np.roll(seq, n - 1) * base ** (n - 1)  # one symbol further back: the most significant digit
            grams, tally = np.unique(key[valid], return_counts=True)
            if n >= 3 and config.min_count > 1:
                grams, tally = grams[tally >= config.min_count], tally[tally >= config.min_count]
            keys.append(grams)
            counts.append(tally)
        config = CharNgramConfig(config.name, config.vocabulary, config.order, config.min_count, len(sentences))
        return cls(config, np.concatenate(keys), np.concatenate(counts))

    def __len__(self) -> int:
        return len(self.keys)

    def next_log_probs(self, context: tuple[int, ...]) -> np.ndarray:
        """log P(next | ``context``) for every vocabulary id (0: the sentence ends); ``context``: the
        ids written so far (the sentence's start is implied)."""
        base, width = self._base, self.config.order - 1
        history = ((0,) * width + tuple(context))[len(context):] if width else ()
        prob = np.full(len(self.vocabulary), 1.0 / len(self.vocabulary))
        prefix = 0
        for n in range(self.config.order):
            if n:
                prefix = prefix + (history[width - n] + 1) * base ** (n - 1)
            wanted = prefix * base + self._outcomes
            where = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
            seen = np.where(self.keys[where] == wanted, self.counts[where], 0)
            total = seen.sum()
            if not total:
                break  # a longer context ending in an unseen one is unseen too
            types = np.count_nonzero(seen)
            prob = (seen + types * prob) / (total + types)
        return np.log(prob)

    def sentence_log_prob(self, text: str) -> float:
        """log P of a whole sentence (its end included): for tests and for comparing models."""
        ids = self.vocabulary.encode(text)
        return float(sum(self.next_log_probs(tuple(ids[:i]))[u] for i, u in enumerate(ids + [0])))

    def state_dict(self) -> dict[str, torch.Tensor]:
        import torch

        if self.counts.max(initial=0) >= 2 ** 31:
            raise DataError(f"{self.config.name}: counts above 2^31 do not fit the checkpoint's int32")
        return {"keys": torch.from_numpy(self.keys), "counts": torch.from_numpy(self.counts.astype(np.int32))}

    def save(self, directory: str | os.PathLike[str]) -> Path:
        import torch

        from .checkpoint import save_checkpoint

        return save_checkpoint(directory, KIND, self.config, self.state_dict(), dtype=torch.int64,  # no float tensors
                               info={"entries": len(self), "sentences": self.config.sentences})

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike[str]) -> "CharNgramLM":
        from .checkpoint import load_checkpoint
        from .config import from_dict

        loaded = load_checkpoint(name_or_dir, expected_kind=KIND)
        config = from_dict(CharNgramConfig, loaded.config, f"{loaded.directory}/config.json")
        return cls(config, loaded.state["keys"].numpy(), loaded.state["counts"].numpy())
