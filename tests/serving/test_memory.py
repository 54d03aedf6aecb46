"""serving/memory.py: with freed memory kept, repeated large allocations stop faulting in new pages."""

from __future__ import annotations

import subprocess
import sys

from serving.memory import keep_freed_memory

# A fresh process per setting (the setting is process-wide): 50 rounds of allocating and writing eight 1 MB
# blocks, then freeing them all, as a model call does with its activations, counting the minor page faults.
# With the defaults glibc's trim threshold (twice the largest block it has seen freed) returns the freed heap
# top to the system after every round, and the next round faults all of it in again.
PROBE = """
import resource, sys
import numpy as np
from serving.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
np.ones(1 << 17)  # warm numpy up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    blocks = [np.ones(1 << 17) for _ in range(8)]  # 8 x 1 MB of float64, written
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout.strip())


def test_kept_memory_is_reused_instead_of_faulted_in() -> None:
    default, kept = _faults("default"), _faults("keep")
    # 50 rounds x 8 blocks x 256 pages = 102,400 pages written; kept: only the first round's faults
    assert kept < 5_000, kept
    assert default > 20 * kept, (kept, default)


def test_is_a_no_op_when_repeated() -> None:
    assert keep_freed_memory()
    assert keep_freed_memory()
