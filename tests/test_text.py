from __future__ import annotations

import sys

import pytest

from speechtok import espeak
from speechtok.errors import ConfigError, DataError
from speechtok.text import get_vocabulary


def test_char_vocabulary_normalises_and_round_trips():
    vocab = get_vocabulary("char")
    assert len(vocab) == 29 and vocab.symbols[0] == "<blank>"
    ids = vocab.encode("Press 1, then #!  O'Brien")
    assert 0 not in ids
    assert vocab.decode(ids) == "press one then o'brien"


def test_phoneme_vocabulary_uses_espeak_ipa():
    vocab = get_vocabulary("phoneme")
    ids = vocab.encode("Please enter your agent number")
    assert vocab.decode(ids) == "pliːz ɛntɚ jʊɹ eɪdʒənt nʌmbɚ"
    assert len(ids) < len("Please enter your agent number")  # phonemes are denser than letters


def test_unknown_vocabulary():
    with pytest.raises(ConfigError, match="unknown text vocabulary"):
        get_vocabulary("bpe")


def test_phonemes_without_espeakng_loader_say_what_to_install(monkeypatch):
    monkeypatch.setattr(espeak, "_loaded", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # as if not installed
    assert not espeak.available()
    with pytest.raises(DataError, match="pip install espeakng-loader"):
        get_vocabulary("phoneme").encode("a new sentence")
