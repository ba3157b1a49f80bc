"""A timm student trained on distilled images with online projector labels.

    python examples/timm_student.py [--student resnet10t] [--adapter adapter/] [--epochs 5]

Any ``nn.Module`` works as the student; here one from timm. Without ``--adapter`` an untrained projector on a tiny
offline base is used (labels not meaningful, the pipeline is the real one).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import timm

import lightlabel as ll
from lightlabel.data import default_data_root, extract_image_folder, load_image_folder
from lightlabel.testing import save_tiny_base


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="resnet10t", help="any timm model name")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ipc", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightlabel-timm-") as tmp:  # removed on return
        work = Path(tmp)
        data = default_data_root()
        train = load_image_folder(extract_image_folder(data / "cifar10" / "train.tar.gz", work / "train", split="train",
                                                       per_class=30), progress=False)
        val = load_image_folder(extract_image_folder(data / "cifar10" / "test.tar.gz", work / "test", split="test",
                                                     per_class=20), progress=False)
        observer = ll.load_teacher(data.parent / "models" / "cifar10-resnet56-4bfd9763.th",
                                   input_spec=ll.InputSpec.imagenet(32))  # a plain state dict: say what it expects
        distilled = ll.distill_images(train, observer, ipc=args.ipc, patches_per_image=1, candidates_per_class=30,
                                      progress=False)
        if args.adapter:
            projector = ll.Projector.from_pretrained(args.adapter, class_names=train.classes)
        else:
            base, ckpt = save_tiny_base(work / "base")
            projector = ll.Projector(base=base, pretrained=str(ckpt), class_names=train.classes,
                                     config=ll.AdapterConfig(head_rank=4))
        student = timm.create_model(args.student, pretrained=False, num_classes=len(train.classes))
        protocol = ll.EvalProtocol.helio(epochs=args.epochs, batch_size=10)  # HeLlO's protocol, shortened
        result = ll.train_student(distilled, projector.merge(), protocol, student_model=student, val_set=val,
                                  progress=False)
        print(f"timm {args.student}: top-1 {result.top1:.4f} after {result.epochs} epochs "
              f"({result.seconds_per_iter:.3f} s / iteration)")
        return result.top1


if __name__ == "__main__":
    main()
