"""``read_ahead``: results in order, never more than a few items ahead of the consumer."""
from __future__ import annotations

import threading
import time

from speechtok.data.threads import AHEAD_PER_WORKER, read_ahead


def test_read_ahead_keeps_order_and_bounds_what_is_in_flight() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def load(item: int) -> int:
        with lock:
            started.append(item)
        time.sleep(0.001 * (item % 3))  # finish out of order
        return item * item

    consumed = []
    for result in read_ahead(load, range(40), workers=3):
        consumed.append(result)
        with lock:
            assert len(started) <= len(consumed) + AHEAD_PER_WORKER * 3  # bounded look-ahead
    assert consumed == [i * i for i in range(40)]


def test_one_worker_is_plain_and_lazy() -> None:
    seen: list[int] = []
    results = read_ahead(lambda item: seen.append(item) or item, range(5), workers=1)
    assert seen == [] and next(results) == 0 and seen == [0]
