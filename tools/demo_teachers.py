"""The demo's weak teachers: epochs 1-3 of a CIFAR ResNet-20 trajectory, shipped in the package (fp16).

    python tools/demo_teachers.py                          # about 15 min on 2 CPU cores
    python tools/demo_teachers.py --cache benchmarks/.cache  # reuse the benchmarks' CIFAR-10 trajectory

Trains (or reuses from the fingerprinted cache) a 4-epoch CIFAR ResNet-20 trajectory on the 50,000 CIFAR-10 training
images (SGD lr 0.1, batch 128, the library's CIFAR augmentation, ImageNet input statistics at 32 px), then writes
its epoch-1..3 checkpoints with fp16 weights to ``lightlabel/assets/demo-teachers/`` and prints their test top-1 for
``lightlabel/assets/README.md``. Weak teachers are early checkpoints of one real training run, as in HeLlO
(Sec. 3.3); ``lightlabel demo`` never trains them.

The settings below are the CIFAR-10 trajectory of the benchmarks' HeLlO grid, and the cache folder is named the
same way, so ``--cache benchmarks/.cache`` reuses the grid's trajectory; a benchmarks test checks the two agree.
"""

from __future__ import annotations

import argparse
import hashlib

import torch
from _tools import ROOT, cifar10, digest, parse_args

import lightlabel as ll
from lightlabel.models import save_teacher
from lightlabel.recipes.loop import evaluate

OUT = ROOT / "lightlabel" / "assets" / "demo-teachers"
#: the trajectory: 4 epochs of a CIFAR ResNet-20, every checkpoint kept; epochs 1-3 are shipped
CONFIG = ll.TeacherConfig(arch="cifar_resnet20", epochs=4, save_epochs=(1, 2, 3, 4), batch_size=128, lr=0.1,
                          image_size=32)
SHIPPED_EPOCHS = (1, 2, 3)


def trajectory(cache, progress: bool) -> tuple[list, object]:
    """The trajectory's checkpoint paths (trained once, cached by the fingerprint of its settings and data) and the
    test split."""
    train, test, data_key = cifar10(progress)
    out = cache / "helio" / "cifar10" / f"teachers-{digest(CONFIG.__dict__, data_key)}"
    return ll.train_teachers(train, CONFIG, out_dir=out, input_spec=ll.InputSpec.imagenet(32),
                             val_set=test.with_transform(lambda x: x.float() / 255), progress=progress), test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_args(parser)
    paths, test = trajectory(args.cache, progress=not args.quiet)
    test_f = test.with_transform(lambda x: x.float() / 255)
    OUT.mkdir(parents=True, exist_ok=True)
    for path in paths:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob["epoch"] not in SHIPPED_EPOCHS:
            continue
        teacher = ll.load_teacher(path)
        top1 = evaluate(teacher, test_f, input_spec=teacher.input_spec)
        out = OUT / f"cifar10-resnet20-epoch{blob['epoch']:03d}.pt"
        save_teacher(teacher.half(), out, arch=blob["arch"], classes=blob["classes"], low_res=blob["low_res"],
                     input_spec=teacher.input_spec, epoch=blob["epoch"], test_top1=round(top1, 4),
                     made_by="python tools/demo_teachers.py")
        sha = hashlib.sha256(out.read_bytes()).hexdigest()
        print(f"| `demo-teachers/{out.name}` | {out.stat().st_size:,} | `{sha}` | epoch {blob['epoch']}: "
              f"{100 * top1:.1f} % top-1 on the 10,000 CIFAR-10 test images |")


if __name__ == "__main__":
    main()
