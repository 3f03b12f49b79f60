"""Label vocabularies: characters or espeak-ng IPA phonemes (:mod:`speechtok.espeak`).

Both inventories are fixed lists, so a checkpoint's output layer is defined by the vocabulary's
name alone. Index 0 is the CTC blank. Symbols outside the inventory are dropped.
"""
from __future__ import annotations

import re
from typing import Literal

from .errors import ConfigError

VocabularyName = Literal["char", "phoneme"]
BLANK = "<blank>"
_DIGITS = "zero one two three four five six seven eight nine".split()
_CHARS = list(" abcdefghijklmnopqrstuvwxyz'")
# espeak-ng's English IPA output (en-us) plus common symbols of its other English voices.
_PHONES = list(" abdefhijklmnoprstuvwxzæçðøŋœɐɑɒɔəɘɚɛɜɝɡɣɪɫɬɯɹɾʃʊʌʎʒʔʲθχᵻː")


class Vocabulary:
    """Maps transcripts to label ids (blank = 0) and back."""

    def __init__(self, name: VocabularyName, symbols: list[str]) -> None:
        self.name = name
        self.symbols = [BLANK] + symbols
        self._index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def units(self, text: str) -> list[str]:
        normalized = _normalize_text(text)
        if self.name == "phoneme":
            from .espeak import ipa  # the phoneme extra, loaded only when used
            return list(ipa(normalized))
        return list(normalized)

    def encode(self, text: str) -> list[int]:
        ids = [self._index[u] for u in self.units(text) if u in self._index]
        return _strip_spaces(ids, self._index[" "])

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i != 0)


def get_vocabulary(name: str) -> Vocabulary:
    if name == "char":
        return Vocabulary("char", _CHARS)
    if name == "phoneme":
        return Vocabulary("phoneme", _PHONES)
    raise ConfigError(f"unknown text vocabulary {name!r} (use 'char' or 'phoneme')")


def _normalize_text(text: str) -> str:
    text = text.lower()
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def _strip_spaces(ids: list[int], space: int) -> list[int]:
    while ids and ids[0] == space:
        ids.pop(0)
    while ids and ids[-1] == space:
        ids.pop()
    return ids
