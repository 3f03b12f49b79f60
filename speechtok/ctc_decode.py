"""Reading text from CTC log-probabilities: greedy, or prefix beam search with a text prior.

Greedy takes each frame's best class and collapses repeats; beam search keeps the ``width`` most
likely prefixes, summing over the alignments of each (blank- and letter-ended paths apart, as in
Hannun et al. 2014), and adds ``lm_weight`` · log P_LM of every letter plus ``unit_bonus`` per letter
(a prior alone prefers short outputs). Class ids are vocabulary ids, so a
:class:`~speechtok.text_lm.CharNgramLM` scores them directly.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from .text_lm import CharNgramLM


def ctc_greedy(log_probs: torch.Tensor, blank: int, units: Sequence[int]) -> list[int]:
    """Best class of every frame of ``log_probs`` ``[T, C]`` among ``units`` and ``blank``, repeats
    collapsed, blanks dropped."""
    allowed = torch.tensor(sorted({*units, blank}), device=log_probs.device)
    best = allowed[log_probs[:, allowed].argmax(-1)]
    return [u for u in torch.unique_consecutive(best).tolist() if u != blank]


def _add(a: float, b: float) -> float:
    """log(e^a + e^b) for Python floats (the beam's bookkeeping is scalar)."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log1p(math.exp(-abs(a - b)))


def ctc_beam_search(log_probs: torch.Tensor, blank: int, units: Sequence[int], *, width: int = 16,
                    lm: CharNgramLM | None = None, lm_weight: float = 0.0, unit_bonus: float = 0.0,
                    min_log_prob: float = -8.0) -> list[int]:
    """The best unit sequence of ``log_probs`` ``[T, C]`` by prefix beam search (module docstring).

    A frame extends prefixes only with units whose log-probability there is at least ``min_log_prob``
    (the rest cannot win, and skipping them keeps the search linear in the frames)."""
    if width < 1:
        raise ValueError(f"beam width must be ≥ 1, got {width}")
    rows = log_probs.detach().float().cpu().numpy()
    units = np.array(sorted(set(units) - {blank}), dtype=np.int64)
    prior: dict[tuple[int, ...], np.ndarray] = {}  # prefix → weighted LM log-probabilities of what follows
    flat = np.zeros(int(units.max()) + 1 if len(units) else 1)  # no LM: every letter (and the end) scores 0

    def letter_scores(prefix: tuple[int, ...]) -> np.ndarray:
        if lm is None or not lm_weight:
            return flat
        if prefix not in prior:
            prior[prefix] = lm_weight * lm.next_log_probs(prefix)
        return prior[prefix]

    # prefix → [log P(ends in blank), log P(ends in a unit), prior score of the prefix]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, -math.inf, 0.0]}
    for row in rows:
        candidates = units[row[units] >= min_log_prob]
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_unit, score) in beams.items():
            total = _add(p_blank, p_unit)
            entry = grown.setdefault(prefix, [-math.inf, -math.inf, score])
            entry[0] = _add(entry[0], total + row[blank])
            if prefix:
                entry[1] = _add(entry[1], p_unit + row[prefix[-1]])  # the same unit, still sounding
            if not len(candidates):
                continue
            scores = letter_scores(prefix)
            for unit in candidates.tolist():
                longer = prefix + (unit,)
                entry = grown.setdefault(longer, [-math.inf, -math.inf, score + scores[unit] + unit_bonus])
                # a repeated unit needs a blank between its two occurrences
                entry[1] = _add(entry[1], (p_blank if prefix and unit == prefix[-1] else total) + row[unit])
        beams = dict(sorted(grown.items(), key=lambda kv: -(_add(kv[1][0], kv[1][1]) + kv[1][2]))[:width])

    def final(item: tuple[tuple[int, ...], list[float]]) -> float:
        prefix, (p_blank, p_unit, score) = item
        return _add(p_blank, p_unit) + score + letter_scores(prefix)[0]  # id 0: the sentence ends

    return list(max(beams.items(), key=final)[0])
