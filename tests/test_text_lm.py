"""The character n-gram text LM and CTC decoding with it (speechtok.text_lm, speechtok.ctc_decode)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechtok.cli import main as cli_main
from speechtok.ctc_decode import ctc_beam_search, ctc_greedy
from speechtok.data.texts import Sentence, read_texts
from speechtok.errors import CheckpointError, ConfigError, DataError
from speechtok.text import get_vocabulary
from speechtok.text_lm import CharNgramConfig, CharNgramLM

SENTENCES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the cat saw the dog"]
CHARS = get_vocabulary("char")
BLANK = len(CHARS)  # as in the AR+DiT model: the extra class after the vocabulary
UNITS = range(1, BLANK)


def _frames(text: str, *, blank_frames: int = 1, confidence: float = 0.9) -> torch.Tensor:
    """CTC log-probabilities ``[T, units + 1]`` that spell ``text``, a blank after each letter."""
    rows = []
    for unit in CHARS.encode(text):
        for target in [unit] + [BLANK] * blank_frames:
            row = torch.full((BLANK + 1,), (1 - confidence) / BLANK)
            row[target] = confidence
            rows.append(row)
    return torch.stack(rows).log()


@pytest.mark.parametrize("min_count", [1, 2])
def test_next_letter_distributions_sum_to_one_and_prefer_what_was_seen(min_count):
    lm = CharNgramLM.fit(SENTENCES, CharNgramConfig(order=5, min_count=min_count))
    for context in [(), tuple(CHARS.encode("the c")), tuple(CHARS.encode("zzz q")), tuple(CHARS.encode(SENTENCES[0]))]:
        assert math.isclose(float(np.exp(lm.next_log_probs(context)).sum()), 1.0, rel_tol=1e-9)
    after = lm.next_log_probs(tuple(CHARS.encode("the c")))
    assert CHARS.symbols[int(after.argmax())] == "a"
    if min_count == 1:  # a sentence seen once ends where it ended (pruning forgets such single n-grams)
        end = lm.next_log_probs(tuple(CHARS.encode(SENTENCES[0])))
        assert end[0] == end.max()
    assert lm.sentence_log_prob("the cat sat on the log") > lm.sentence_log_prob("eht tac tas no eht gol")
    assert lm.sentence_log_prob("the cat") > lm.sentence_log_prob("the cas")


def test_pruning_drops_rare_long_ngrams_only():
    full = CharNgramLM.fit(SENTENCES, CharNgramConfig(order=6, min_count=1))
    pruned = CharNgramLM.fit(SENTENCES, CharNgramConfig(order=6, min_count=2))
    assert len(pruned) < len(full)
    base = len(CHARS) + 1
    short = full.keys[full.keys < base ** 2]  # unigrams and bigrams: every one kept
    assert np.isin(short, pruned.keys).all()
    assert pruned.config.sentences == full.config.sentences == len(SENTENCES)


def test_saved_lm_loads_to_the_same_probabilities_and_refuses_other_kinds(tmp_path, tiny_model):
    lm = CharNgramLM.fit(SENTENCES, CharNgramConfig(order=4))
    lm.save(tmp_path / "lm")
    back = CharNgramLM.from_pretrained(tmp_path / "lm")
    context = tuple(CHARS.encode("the d"))
    assert np.array_equal(back.next_log_probs(context), lm.next_log_probs(context))
    assert back.config == lm.config
    tiny_model.save_pretrained(tmp_path / "model")
    with pytest.raises(CheckpointError, match="expected 'char-ngram'"):
        CharNgramLM.from_pretrained(tmp_path / "model")


def test_bad_configs_and_empty_text_are_refused():
    with pytest.raises(ConfigError, match="order"):
        CharNgramConfig(order=13)
    with pytest.raises(ConfigError, match="min_count"):
        CharNgramConfig(min_count=0)
    with pytest.raises(ConfigError, match="order must be 1..12 for the 'char'"):
        CharNgramConfig(order=13)
    with pytest.raises(ConfigError, match="order must be 1..10 for the 'phoneme'"):  # 60 ** 11 > 2 ** 63
        CharNgramConfig(vocabulary="phoneme", order=11)
    with pytest.raises(DataError, match="no text"):
        CharNgramLM.fit(["", "123 !!"[4:]])


def test_beam_search_sums_alignments_where_greedy_takes_the_best_path():
    """Two frames, blank 0.6 and 'a' 0.4 in each: the best path is blank-blank (0.36), but 'a' has
    three paths (a-, -a, aa: 0.64), which prefix beam search adds up."""
    a = CHARS.encode("a")[0]
    row = torch.full((BLANK + 1,), 1e-9)
    row[BLANK], row[a] = 0.6, 0.4
    log_probs = torch.stack([row, row]).log()
    assert ctc_greedy(log_probs, BLANK, UNITS) == []
    assert ctc_beam_search(log_probs, BLANK, UNITS, width=4) == [a]


def test_beam_search_without_prior_reads_clear_speech_as_greedy_does():
    log_probs = _frames("the cat sat")
    ids = CHARS.encode("the cat sat")
    assert ctc_greedy(log_probs, BLANK, UNITS) == ids == ctc_beam_search(log_probs, BLANK, UNITS, width=8)
    doubled = _frames("too", blank_frames=1)  # a repeated letter survives only through its blank
    assert CHARS.decode(ctc_beam_search(doubled, BLANK, UNITS, width=8)) == "too" == CHARS.decode(ctc_greedy(doubled, BLANK, UNITS))
    held = torch.cat([_frames("o", blank_frames=0)] * 2)  # one letter over two frames, no blank: one letter
    assert CHARS.decode(ctc_beam_search(held, BLANK, UNITS, width=8)) == "o" == CHARS.decode(ctc_greedy(held, BLANK, UNITS))
    with pytest.raises(ValueError, match="width"):
        ctc_beam_search(log_probs, BLANK, UNITS, width=0)


def test_the_text_prior_corrects_a_letter_the_audio_left_unsure():
    """'the cat' whose 'c' sounds a little more like 'k': greedy spells 'the kat', the prior fixes it."""
    log_probs = _frames("the cat")
    c, k = CHARS.encode("c")[0], CHARS.encode("k")[0]
    where = 2 * len("the ")  # the frame of 'c' (each letter is followed by one blank frame)
    log_probs[where] = torch.full((BLANK + 1,), 0.02 / BLANK).log()
    log_probs[where, k], log_probs[where, c] = math.log(0.5), math.log(0.48)
    assert CHARS.decode(ctc_greedy(log_probs, BLANK, UNITS)) == "the kat"
    assert CHARS.decode(ctc_beam_search(log_probs, BLANK, UNITS, width=8)) == "the kat"
    lm = CharNgramLM.fit(SENTENCES, CharNgramConfig(order=4))
    assert CHARS.decode(ctc_beam_search(log_probs, BLANK, UNITS, width=8, lm=lm, lm_weight=1.0)) == "the cat"


def test_text_lm_command_excludes_evaluation_sentences_and_refuses_bad_input(tmp_path, capsys):
    texts = tmp_path / "texts.tsv"
    texts.write_text("id\ttext\nA1\tthe cat sat on the mat\nA2\tthe dog sat on the log\nA3\tHeld out, the owl.\n")
    plain = tmp_path / "more.txt"
    plain.write_text("a cat and a dog\n\nthe cat saw the dog\n")
    held = tmp_path / "held.tsv"  # one row names a clip by id only, one by its text only
    held.write_text("path\tseconds\tspeaker\ttranscript\nA2.flac\t1.0\ts\t\nx.flac\t1.0\ts\tHeld out: the OWL\n")
    out = tmp_path / "lm"
    assert cli_main(["text-lm", str(texts), str(plain), "-o", str(out), "--order", "4", "--exclude", str(held)]) == 0
    assert "from 3 sentences (2 excluded)" in capsys.readouterr().out
    lm = CharNgramLM.from_pretrained(out)
    assert lm.config.order == 4 and lm.config.sentences == 3
    assert read_texts(held)[0] == Sentence("A2", "") and read_texts(plain)[1] == Sentence("", "the cat saw the dog")
    assert cli_main(["info", str(out)]) == 0
    assert "character 4-gram text LM" in capsys.readouterr().out
    for args, message in ((["-o", str(out)], "already exists"),
                          (["-o", str(tmp_path / "b"), "--order", "0"], "order"),
                          (["-o", str(tmp_path / "c"), "--exclude", str(texts)], "no sentences left")):
        assert cli_main(["text-lm", str(texts), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    assert cli_main(["text-lm", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "d")]) == 2
    assert "text file not found" in capsys.readouterr().err
    odd = tmp_path / "odd.tsv"
    odd.write_text("path\ttext\na.flac\thello\n")  # a TSV of another form is refused, not read as sentences
    assert cli_main(["text-lm", str(odd), "-o", str(tmp_path / "e")]) == 2
    assert "needs an 'id<TAB>text' header" in capsys.readouterr().err
    assert not any(p.name.startswith(".lm") for p in tmp_path.iterdir())  # no staging folder left behind
