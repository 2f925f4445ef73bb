"""The C heap of a process that trains: keep freed memory instead of returning it to the OS.

A stack of models allocates the same few multi-megabyte tensors every step (a layer's
``(K, B, out)`` output, each ``(K, out, in)`` gradient). glibc's ``malloc`` serves blocks that
large with ``mmap`` and gives them back with ``munmap`` when torch frees them, so every step
pays a page fault per 4 KiB page of each one when it is touched again (measured: about 900
faults and a quarter of a 21-member stack's step on the default study's MLP). Serving them
from the heap and keeping the freed top of the heap (``M_MMAP_THRESHOLD``,
``M_TRIM_THRESHOLD``) makes the next step reuse the same pages: no fault, the memory a step
needs stays resident — what CUDA's caching allocator does for GPU memory. Lone models' small
tensors are unaffected (glibc already keeps them).

Only ``reglab run`` and its workers call :func:`retain_freed_memory` (processes the lab owns):
a library call must not change the allocator of a user's process.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["retain_freed_memory"]

# mallopt(3) parameters (glibc's <malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to glibc's largest allowed threshold (32 MiB on 64-bit) come from the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory kept at the top of the heap before any is returned to the OS.
TRIM_THRESHOLD = 512 * 1024 * 1024


def retain_freed_memory() -> bool:
    """Tune glibc's ``malloc`` as the module docstring says; True when it was tuned, False
    where there is no glibc (macOS, Windows, musl): nothing changes there."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols, libc's among them (no ldconfig lookup, as find_library
        # would run); musl's mallopt exists and refuses every value: False below.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt in this C library
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 for a value it refuses.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
