"""Small helpers used by every layer: atomic file writes, seeds, progress bars, peak-memory measurement and
model placement.

Documented and importable (``lightlabel.utils.files.atomic_write_text``), so examples and benchmarks need no
private imports. Nothing here imports another part of lightlabel.
"""

from .files import atomic_path, atomic_write_bytes, atomic_write_text, cache_root
from .hashing import json_digest, safetensors_header, tensor_digest
from .memory import peak_memory_bytes, reset_peak_memory
from .placement import module_device, on_device
from .progress import progress_bar
from .seeding import derive_seed, generator

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_root",
    "derive_seed",
    "generator",
    "json_digest",
    "module_device",
    "on_device",
    "peak_memory_bytes",
    "progress_bar",
    "reset_peak_memory",
    "safetensors_header",
    "tensor_digest",
]
