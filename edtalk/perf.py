"""CPU performance settings, applied explicitly by commands that render (never at import).

On Linux/glibc, PyTorch's CPU tensors of a 256^2 generator are large enough that glibc serves each one
with a fresh mmap and returns it on free, so every forward pays page faults for all its activations
(SPEC section 9: ~40 % of the original demos' CPU time). Raising the mmap threshold and disabling
trimming keeps freed blocks in the heap for reuse, which is what a caching allocator does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_cpu_allocator(mmap_threshold: int = 1 << 30, top_pad: int = 1 << 28) -> bool:
    """Make glibc keep freed large blocks for reuse; returns False where not applicable (non-glibc)."""
    if platform.system() != "Linux":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    # mallopt caps M_MMAP_THRESHOLD at 32 MiB on 64-bit (HEAP_MAX/2); larger values are rejected.
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, 32 * 1024 * 1024)))
    ok &= bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    ok &= bool(libc.mallopt(_M_TOP_PAD, top_pad))
    return ok
