"""Peak memory of one measured stretch of work: CUDA allocator peak on a GPU, resident set (RSS) peak on CPU.

On CPU the process's high-water mark is reset at the start (Linux ``/proc/self/clear_refs``, value 5), so the figure
belongs to the measured work and not to whatever the process did earlier. Where that is unavailable (not Linux, or
not permitted) the figure is the process's lifetime peak and ``kind`` says so.
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> str:
    """Start a measurement; returns its kind: "cuda allocated", "RSS" or "process lifetime RSS"."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda allocated"
    try:
        _CLEAR_REFS.write_text("5")
        return "RSS"
    except OSError:
        return "process lifetime RSS"


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory in bytes since :func:`reset_peak_memory` on ``device``."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
