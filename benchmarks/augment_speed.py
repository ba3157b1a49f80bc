"""CPU time of RDED's student views, per image (lightlabel up to 29f9899) against batched (:class:`Augmenter`).

RDED's views at ``f = 2`` (2 x 2 mosaics): ShufflePatches(2), RandomResizedCrop(scale=(1/2, 1)) back to the image
size, horizontal flip, CutMix. The old path drew two ``torch.randperm`` and one torchvision
``RandomResizedCrop.make_params`` per image and called ``v2.functional.resized_crop`` once per image; it is kept
below as the baseline: ``sample`` copied as a function of the augmenter from ``lightlabel/labeling/augment.py`` at
commit 29f9899, and ``apply`` as the library's with the per-image crop put back. The new path is
the library's :class:`~lightlabel.labeling.augment.Augmenter`: one set of tensor ops per batch.

For a batch of 100 images at 64 px and at 224 px, this times ``sample`` (parameters), ``apply`` (views) and both,
the median of ``--reps`` repetitions (after 3 warm-up calls), on ``--threads`` CPU threads (images on ``--device``;
on CUDA each timing ends with a synchronisation), prints the ratio old / new and writes the table to
docs/results.md (section ``augment-speed-<device>``). The two paths draw different random streams, so their views
differ; both are RDED's distribution.

    python benchmarks/augment_speed.py [--reps 30] [--threads 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import torch
from _common import write_section
from torchvision.transforms import v2

import lightlabel as ll
from lightlabel.labeling import augment
from lightlabel.labeling.augment import Augmenter


# ------------------------------------------------------------------ the per-image baseline (commit 29f9899)
@contextlib.contextmanager
def _global_rng_from(gen: torch.Generator) -> Iterator[None]:
    saved = torch.random.get_rng_state()
    torch.random.set_rng_state(gen.get_state())
    try:
        yield
    finally:
        gen.set_state(torch.random.get_rng_state())
        torch.random.set_rng_state(saved)


def old_sample(aug: Augmenter, batch_size: int, height: int, width: int, gen: torch.Generator
               ) -> dict[str, torch.Tensor]:
    c, f = aug.config, aug.config.patches_per_side
    params: dict[str, torch.Tensor] = {}
    if aug.shuffles:
        params["rows"] = torch.stack([torch.randperm(f, generator=gen) for _ in range(batch_size)])
        params["cols"] = torch.stack([torch.randperm(f, generator=gen) for _ in range(batch_size)])
    probe = torch.empty(3, height, width, device="meta")
    with _global_rng_from(gen):
        if c.crop_scale is not None:
            crop = v2.RandomResizedCrop((height, width), scale=c.crop_scale, antialias=True)
            boxes = [crop.make_params([probe]) for _ in range(batch_size)]
            params["crop"] = torch.tensor([[b["top"], b["left"], b["height"], b["width"]] for b in boxes])
        if c.flip:
            params["flip"] = torch.rand(batch_size) < 0.5
        if aug._mixer is not None:
            mix = aug._mixer.make_params([probe.expand(batch_size, -1, -1, -1)])
            if "box" in mix:
                params["box"] = torch.tensor(mix["box"])
            params["lam"] = torch.tensor(float(mix.get("lam_adjusted", mix.get("lam", 1.0))), dtype=torch.float64)
    return params


def _per_image_crops(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The crop as it was: one ``v2.functional.resized_crop`` per image, back to the batch's size."""
    size = list(images.shape[-2:])
    return torch.stack([v2.functional.resized_crop(img, *map(int, box), size=size, antialias=True)
                        for img, box in zip(images, boxes.tolist())])


def old_apply(aug: Augmenter, images: torch.Tensor, targets: torch.Tensor, params: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`Augmenter.apply` with its batched crop swapped for the per-image loop: the rest of ``apply`` (patch
    shuffle, flip, CutMix) was already one op per batch at 29f9899."""
    with mock.patch.object(augment, "resized_crops", _per_image_crops):
        return aug.apply(images, targets, params)


# ------------------------------------------------------------------ timing
def median_ms(fn: Callable[[], Any], reps: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def time_size(aug: Augmenter, size: int, batch: int, reps: int,
              device: torch.device | None = None) -> list[tuple[str, float, float]]:
    """``(part, per-image ms, batched ms)`` for ``sample``, ``apply`` and both, on ``batch`` noise images."""
    device = device or torch.device("cpu")
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.arange(batch, device=device) % aug.num_classes
    gen = torch.Generator().manual_seed(0)
    old_p, new_p = old_sample(aug, batch, size, size, gen), aug.sample(batch, size, size, gen)
    cases = {
        "sample": (lambda: old_sample(aug, batch, size, size, gen), lambda: aug.sample(batch, size, size, gen)),
        "apply": (lambda: old_apply(aug, x, y, old_p), lambda: aug.apply(x, y, new_p)),
        "both": (lambda: old_apply(aug, x, y, old_sample(aug, batch, size, size, gen)),
                 lambda: aug.apply(x, y, aug.sample(batch, size, size, gen))),
    }
    return [(part, median_ms(old, reps, device), median_ms(new, reps, device)) for part, (old, new) in cases.items()]


def section(rows: list[tuple[int, str, float, float]], args: argparse.Namespace, device: torch.device,
            load: tuple[float, float]) -> str:
    """The docs/results.md table: per-image (the baseline, timed in the same run) against batched."""
    lines = [f"### RDED's student views: per image against batched ({device.type})", "",
             f"CPU time of RDED's 2 x 2 views (ShufflePatches + RandomResizedCrop(1/2, 1) + flip + CutMix) for a batch of "
             f"{args.batch} images, per image as lightlabel did up to 29f9899 against one batched `Augmenter` call; median "
             f"of {args.reps} timings in ms, torch {torch.__version__}, {args.threads} CPU thread(s), images on "
             f"{device.type}; {os.cpu_count()}-core machine, 1-minute load average {load[0]:.2f} before and {load[1]:.2f} "
             f"after (above {args.threads} means other jobs shared the cores: the ratio, both paths timed in the same "
             f"run, is the figure).", "",
             "| size | part | per image (ms) | batched (ms) | per image / batched |", "|---|---|---|---|---|"]
    lines += [f"| {size} px | {part} | {old:.2f} | {new:.2f} | **{old / new:.1f} x** |" for size, part, old, new in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30, help="repetitions per timing (median; at least 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="where the images are (cpu or cuda)")
    args = parser.parse_args()
    if args.reps < 30:
        parser.error("--reps must be at least 30")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    torch.set_num_threads(args.threads)
    aug = Augmenter(ll.AugmentConfig.rded(2), num_classes=10)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {args.batch}, f = 2 (RDED's 2x2 views), "
          f"median of {args.reps} in ms, images on {device.type}")
    print(f"{'size':>5} {'part':>7} {'per-image':>10} {'batched':>9} {'ratio':>6}")
    rows, load_before = [], os.getloadavg()[0]
    for size in (64, 224):
        for part, t_old, t_new in time_size(aug, size, args.batch, args.reps, device):
            print(f"{size:>5} {part:>7} {t_old:>10.2f} {t_new:>9.2f} {t_old / t_new:>5.1f}x")
            rows.append((size, part, t_old, t_new))
    write_section(f"augment-speed-{device.type}", section(rows, args, device, (load_before, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
