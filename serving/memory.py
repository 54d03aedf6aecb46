"""Keep freed memory in the process: the model's activations stop costing page faults on every call.

glibc serves allocations above its mmap threshold (128 KB at start, raised as blocks are freed, never
above 32 MB) with fresh mmap pages and gives the heap's free top back to the kernel beyond its trim
threshold. A model call at 1,000 candidates allocates a few dozen tensors of 0.1-1 MB and frees them; with
the defaults many come back as new pages each call, and the first touch of every page faults. Raising
both thresholds keeps those pages in the heap: the default MMoE's forward pass at 1,000 x 64 went from
1.98 to 1.15 ms at p50 on 1 thread (`python benchmarks/memory.py`, 2026-12-04, 2 cores; figures in
benchmarks/RESULTS.md). The cost is that up to `trim_threshold` bytes of freed memory stay with the
process instead of going back to the system.

`ecorank serve` calls `keep_freed_memory()` at start (every worker process does), and so does the serving
benchmark's in-process side, so in-process and served figures compare like with like. It is a process-wide
setting, so nothing calls it on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameter numbers, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 64 << 20  # allocations below this come from the heap (reused), not from fresh mmap pages
TRIM_THRESHOLD = 128 << 20  # free memory at the heap's top kept before any is returned to the system


def keep_freed_memory(*, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no glibc (nothing done)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    libc = ctypes.CDLL(path)
    # mallopt returns 1 on success, 0 on a rejected value
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                        trim_threshold))
