"""Peak-memory measurement used by train_student and distill_images (lightlabel._memory)."""

import mmap
import sys

import pytest
import torch

from lightlabel.utils.memory import peak_memory_bytes, reset_peak_memory

CPU = torch.device("cpu")


def _touch(nbytes: int) -> mmap.mmap:
    """Fresh anonymous pages, made resident (a malloc'd buffer could reuse pages that are already resident)."""
    m = mmap.mmap(-1, nbytes)
    m.write(b"\x01" * nbytes)
    return m


def test_peak_counts_an_allocation_made_after_the_reset():
    reset_peak_memory(CPU)
    before = peak_memory_bytes(CPU)
    big = _touch(64 * 2**20)
    assert peak_memory_bytes(CPU) >= before + 48 * 2**20
    big.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU high-water mark reset is Linux-only")
def test_reset_forgets_an_earlier_peak():
    big = _touch(128 * 2**20)
    with_big = peak_memory_bytes(CPU)
    big.close()
    assert reset_peak_memory(CPU) == "RSS"
    assert peak_memory_bytes(CPU) < with_big - 64 * 2**20
