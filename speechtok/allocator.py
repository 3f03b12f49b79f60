"""Keep freed memory in the process, so that large decodes stop paying the kernel for fresh pages.

glibc hands every allocation above its mmap threshold (at most 32 MiB) back to the kernel when it is
freed, and the next one arrives as untouched pages, each faulted in and zeroed on first write. A
waveform decoder allocates and frees hundreds of such activations per call: decoding 10 s with
holitok-base took 1.4 M page faults, and system time was 30–40 % of the total. Serving large blocks
from the heap and keeping freed memory there removes that (measured in docs/performance.md). The
price is that the process keeps its peak memory until it exits, which suits a command-line run.

The ``speechtok`` command applies this at start; a program embedding the library may call
:func:`retain_freed_memory` itself, or set glibc's ``MALLOC_MMAP_MAX_=0`` and
``MALLOC_TRIM_THRESHOLD_`` before starting Python (then this does nothing).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_KEEP = 2**31 - 1  # mallopt takes a C int: keep up to 2 GiB of freed memory at the heap's top


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to serve large blocks from the heap and keep what is freed; True if applied.

    Does nothing (False) off Linux/glibc, or when the user has set glibc's malloc variables already.
    """
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
