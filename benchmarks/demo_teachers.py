"""The demo's weak teachers: epochs 1-3 of a CIFAR ResNet-20 trajectory, shipped in the package (fp16).

    python benchmarks/demo_teachers.py

Trains (or reuses from the fingerprinted cache) the same 4-epoch trajectory that the HeLlO table's CIFAR-10 adapter
is fitted to (``benchmarks/helio_table.py``: SGD 0.1, batch 128, the library's CIFAR augmentation, ImageNet input
statistics at 32 px), then writes its epoch-1..3 checkpoints with fp16 weights to
``lightlabel/assets/demo-teachers/`` and prints their test top-1 for ``lightlabel/assets/README.md``. Weak teachers
are early checkpoints of one real training run, as in HeLlO (Sec. 3.3); ``lightlabel demo`` never trains them.
"""

from __future__ import annotations

import argparse
import hashlib
import logging

import torch
from _common import ROOT
from helio_table import Run

import lightlabel as ll
from lightlabel.models import save_teacher
from lightlabel.recipes.loop import evaluate

OUT = ROOT / "lightlabel" / "assets" / "demo-teachers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    run = Run("cifar10", args)
    OUT.mkdir(parents=True, exist_ok=True)
    for path in run.checkpoints():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        teacher = ll.load_teacher(path)
        top1 = evaluate(teacher, run.val_f, input_spec=teacher.input_spec)
        out = OUT / f"cifar10-resnet20-epoch{blob['epoch']:03d}.pt"
        save_teacher(teacher.half(), out, arch=blob["arch"], classes=blob["classes"], low_res=blob["low_res"],
                     input_spec=teacher.input_spec, epoch=blob["epoch"], test_top1=round(top1, 4),
                     made_by="python benchmarks/demo_teachers.py")
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        print(f"| `demo-teachers/{out.name}` | {out.stat().st_size:,} | `{digest}` | epoch {blob['epoch']}: "
              f"{100 * top1:.1f} % top-1 on the 10,000 CIFAR-10 test images |")


if __name__ == "__main__":
    main()
