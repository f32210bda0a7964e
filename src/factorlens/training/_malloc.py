"""glibc allocator tuning for the training loop.

By default glibc serves allocations above a (dynamic, at most 32 MiB) threshold with fresh ``mmap``s and
returns them with ``munmap``; the heap top is also trimmed back to the OS as soon as 128 KiB are free.
A conv VAE at batch 256 allocates and frees activation buffers of tens of MiB every step, so each step
maps fresh pages and pays a page fault per 4 KiB page on first touch. Raising both thresholds keeps those
buffers inside the heap and re-uses the already-faulted pages. See ``docs/training.md`` for the measured
effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGE_THRESHOLD_BYTES = 1 << 30


def tune_glibc_malloc(threshold_bytes: int = LARGE_THRESHOLD_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds; returns whether both settings were accepted.

    A no-op returning False on non-glibc platforms (macOS, Windows, musl).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_ok = mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, threshold_bytes) == 1
    return mmap_ok and trim_ok
