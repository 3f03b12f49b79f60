"""Ordered read-ahead with threads: decoding, resampling and encoding audio run in C libraries that
release the GIL, so a few threads keep one consumer fed (a pack's cap check, a dataset's cache, a
tokenizer encoding on the GPU) without holding more than a few items in memory."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: items in flight per worker: enough to keep every thread busy, few enough to bound memory
AHEAD_PER_WORKER = 4


def read_ahead(load: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``load(item)`` for every item, in order, computed by ``workers`` threads at most
    ``AHEAD_PER_WORKER × workers`` items ahead of the consumer; plain calls for one worker. Closing the
    iterator early waits for the items in flight (their side effects, e.g. files written, are done)."""
    if workers <= 1:
        yield from map(load, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(load, item))
            if len(pending) >= AHEAD_PER_WORKER * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
