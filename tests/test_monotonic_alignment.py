"""Monotonic alignment search: the path is the best one (checked against enumerating every path),
respects each row's lengths in a padded batch, and finds a planted alignment; the text aligner
built on it."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from speechtok.modules.monotonic_alignment import durations, monotonic_alignment
from speechtok.modules.text_aligner import TextAligner


def _best_by_enumeration(ll: torch.Tensor) -> float:
    """Every split of M frames into N non-empty consecutive runs, in order."""
    units, frames = ll.shape
    best = float("-inf")
    for cuts in itertools.combinations(range(1, frames), units - 1):
        bounds = (0, *cuts, frames)
        best = max(best, sum(float(ll[i, bounds[i]:bounds[i + 1]].sum()) for i in range(units)))
    return best


def _assert_monotonic(path: torch.Tensor, units: int, frames: int) -> None:
    assert torch.equal(path[:, :frames].sum(0), torch.ones(frames))  # each frame to one unit
    assert bool((path[:units, :frames].sum(1) >= 1).all())  # each unit at least one frame
    owner = path[:, :frames].argmax(0)
    assert owner[0] == 0 and owner[-1] == units - 1
    assert bool(((owner[1:] - owner[:-1]) >= 0).all()) and bool(((owner[1:] - owner[:-1]) <= 1).all())


@pytest.mark.parametrize("seed", range(6))
def test_the_path_is_the_best_monotonic_path(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    units, frames = 3 + seed % 3, 8
    ll = torch.randn(1, units, frames, generator=generator)
    path = monotonic_alignment(ll, torch.tensor([units]), torch.tensor([frames]))[0]
    _assert_monotonic(path, units, frames)
    assert float((path * ll[0]).sum()) == pytest.approx(_best_by_enumeration(ll[0]), abs=1e-5)


def test_a_padded_batch_equals_each_row_alone() -> None:
    generator = torch.Generator().manual_seed(0)
    ll = torch.randn(3, 6, 20, generator=generator)
    text_lengths, frame_lengths = torch.tensor([6, 2, 4]), torch.tensor([20, 9, 4])
    batched = monotonic_alignment(ll, text_lengths, frame_lengths)
    for b in range(3):
        n, m = int(text_lengths[b]), int(frame_lengths[b])
        alone = monotonic_alignment(ll[b:b + 1, :n, :m], text_lengths[b:b + 1], frame_lengths[b:b + 1])[0]
        assert torch.equal(batched[b, :n, :m], alone)
        assert float(batched[b].sum()) == m  # nothing outside the row's lengths
        _assert_monotonic(batched[b], n, m)


def test_a_planted_alignment_is_found_under_noise() -> None:
    generator = torch.Generator().manual_seed(1)
    true_durations = torch.tensor([3, 1, 5, 2, 4])
    owner = torch.repeat_interleave(torch.arange(5), true_durations)
    means = torch.randn(5, 16, generator=generator) * 2
    frames = means[owner] + 0.5 * torch.randn(len(owner), 16, generator=generator)
    ll = -0.5 * torch.cdist(means, frames) ** 2
    path = monotonic_alignment(ll[None], torch.tensor([5]), torch.tensor([len(owner)]))
    assert torch.equal(durations(path)[0], true_durations.float())


def test_impossible_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="text length"):
        monotonic_alignment(torch.zeros(1, 5, 4), torch.tensor([5]), torch.tensor([4]))


def test_the_aligner_spreads_a_row_too_short_for_its_text_and_rounds_durations() -> None:
    torch.manual_seed(0)
    aligner = TextAligner(16, 1, 2, 32, 8)
    states, frames = torch.randn(2, 6, 16), torch.randn(2, 10, 8)
    path, loss = aligner.align(states, frames, torch.tensor([6, 6]), torch.tensor([10, 4]))
    _assert_monotonic(path[0], 6, 10)
    assert torch.equal(path[1, :, :4].argmax(0), torch.tensor([0, 1, 3, 4])) and float(path[1, :, 4:].sum()) == 0
    loss.backward()
    assert bool(torch.isfinite(loss)) and aligner.mean.weight.grad is not None
    assert TextAligner.frames_per_unit(torch.tensor([-5.0, 0.0, math.log(4.0)])).tolist() == [1, 1, 3]


def test_predicted_durations_add_up_to_the_true_length() -> None:
    """One shared prediction for units lasting 1, 2 and 6 frames: the log-domain loss per unit alone
    would settle on their geometric mean (7.4 frames in all instead of 9); the total's term brings
    the sum back."""
    owner = torch.repeat_interleave(torch.arange(3), torch.tensor([1, 2, 6]))
    path = torch.zeros(1, 3, 9)
    path[0, owner, torch.arange(9)] = 1.0
    shared = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([shared], lr=0.05)
    for _ in range(400):
        loss = TextAligner.duration_loss(shared.expand(1, 3), path, torch.ones(1, 3))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    total = float(torch.expm1(shared.detach()) * 3)
    assert abs(total / 9 - 1) < 0.1 and total > 1.1 * 3 * (math.exp(math.log(42) / 3) - 1)
