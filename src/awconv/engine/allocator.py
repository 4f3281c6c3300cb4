"""Process-wide CPU allocator settings for long jobs: keep freed memory instead of unmapping it.

glibc serves allocations above 32 MiB with ``mmap`` and unmaps them when freed, so a tensor of that
size allocated again on every step page-faults its memory in anew each time. AW-convolution
allocates attention-sized tensors (75 MiB for a 512-channel layer at batch 8) in every forward and
backward; on a CPU those page faults cost about as much as the arithmetic (measured in
``docs/method.md``, "CPU memory"). ``keep_freed_memory`` raises glibc's mmap and trim thresholds so freed
blocks are reused instead. The ``awconv`` command line calls it at start-up; library users can call it
themselves, or set ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` in the environment.
The cost: the process keeps up to ``threshold`` bytes of freed memory instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["DISABLE_VARIABLE", "keep_freed_memory"]

# Setting this environment variable to 0 turns keep_freed_memory into a no-op.
DISABLE_VARIABLE = "AWCONV_KEEP_FREED_MEMORY"

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Makes glibc keep freed blocks up to ``threshold`` bytes for reuse.

    Args:
        threshold: the mmap and trim thresholds in bytes (at most 2**31 - 1).

    Returns:
        True when the setting took effect; False off Linux, without glibc, or when disabled by
        ``AWCONV_KEEP_FREED_MEMORY=0``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 < threshold < 2**31:
        raise ValueError(f"threshold must be a positive int below 2**31, got {threshold!r}")
    if os.environ.get(DISABLE_VARIABLE) == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):  # musl and other C libraries
        return False
    value = ctypes.c_int(threshold)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, value)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, value))
