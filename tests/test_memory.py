"""Peak-memory measurement used by train_student and distill_images (lightlabel._memory)."""

import sys

import pytest
import torch

from lightlabel._memory import peak_memory_bytes, reset_peak_memory

CPU = torch.device("cpu")


def test_peak_counts_an_allocation_made_after_the_reset():
    reset_peak_memory(CPU)
    before = peak_memory_bytes(CPU)
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so the pages are resident
    big.add_(1)
    assert peak_memory_bytes(CPU) >= before + 48 * 2**20
    del big


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU high-water mark reset is Linux-only")
def test_reset_forgets_an_earlier_peak():
    big = torch.ones(128 * 2**20 // 4)
    big.add_(1)
    with_big = peak_memory_bytes(CPU)
    del big
    assert reset_peak_memory(CPU) == "RSS"
    assert peak_memory_bytes(CPU) < with_big - 64 * 2**20
