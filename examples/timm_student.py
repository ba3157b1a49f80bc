"""A timm student trained on distilled images with online projector labels.

    python examples/timm_student.py [--data DIR] [--student resnet10t] [--adapter adapter/] [--epochs 5]

Any ``nn.Module`` works as the student; here one from timm. Data: ``--data`` (a folder holding ``train/`` and
``test/`` or ``val/`` ImageFolders of CIFAR-10 classes), else CIFAR-10 from a ``shared/data`` folder beside a checkout
(or ``$LIGHTLABEL_DATA``), else a CIFAR-10 download where there is a network; the output says which. The distilled
images are selected by ``--observer`` (default: a real CIFAR-10 ResNet-20 checkpoint shipped in the package, also
``torchvision:<name>``, ``timm:<name>`` or a file). Labeller: ``--adapter``, else an unfitted projector on the
packaged proxy base (zero-shot labels, offline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import timm

import lightlabel as ll
from lightlabel.data import load_cifar10


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a folder with train/ and test/ ImageFolders")
    parser.add_argument("--student", default="resnet10t", help="any timm model name")
    parser.add_argument("--observer", default="lightlabel:cifar10-resnet20-epoch3", help="teacher that picks the images")
    parser.add_argument("--adapter", default=None, help="adapter file, folder or Hub id")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ipc", type=int, default=5)
    args = parser.parse_args(argv)
    train = load_cifar10("train", data=args.data, per_class=30, progress=False)
    val = load_cifar10("test", data=args.data, per_class=20, progress=False)
    print(f"data: {train.origin} / {val.origin}")
    observer = ll.load_teacher(args.observer)
    distilled = ll.distill_images(train, observer, ipc=args.ipc, patches_per_image=1,
                                  candidates_per_class=min(30, len(train) // len(train.classes)), progress=False)
    if args.adapter:
        projector = ll.Projector.from_pretrained(args.adapter, class_names=train.classes)
    else:
        projector = ll.Projector.packaged(train.classes, config=ll.AdapterConfig(head_rank=4))
    student = timm.create_model(args.student, pretrained=False, num_classes=len(train.classes))
    protocol = ll.EvalProtocol.helio(epochs=args.epochs, batch_size=10)  # HeLlO's protocol, shortened
    result = ll.train_student(distilled, projector.merge(), protocol, student_model=student,
                              val_set=val, progress=False)
    print(f"timm {args.student}: top-1 {result.top1:.4f} on {len(val)} test images after {result.epochs} epochs "
          f"({result.seconds_per_iter:.3f} s / iteration)")
    return result.top1


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:  # no data here: the message says where to put it or how to fetch it
        raise SystemExit(f"error: {e}") from None
