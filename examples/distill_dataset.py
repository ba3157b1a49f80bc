"""Distil a dataset: RDED patch selection with a real teacher as observer, saved as an ImageFolder of PNGs.

    python examples/distill_dataset.py --out distilled-cifar10/ [--ipc 10] [--candidates 300]

Uses CIFAR-10 and the real ResNet-56 from the shared data (1 patch per image at 32 px, as RDED does below 64 px).
Pass ``--adapter`` to refine the images on a projector's image tower (HeLlO Eq. 7).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightlabel as ll
from lightlabel.data import default_data_root, extract_image_folder, load_image_folder


def main(argv: list[str] | None = None) -> ll.DistilledSet:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("distilled-cifar10"))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--refine-steps", type=int, default=300)
    args = parser.parse_args(argv)
    data = default_data_root()
    with tempfile.TemporaryDirectory(prefix="lightlabel-distill-") as tmp:  # removed on return
        work = Path(tmp)
        train = load_image_folder(extract_image_folder(data / "cifar10" / "train.tar.gz", work / "train", split="train",
                                                       per_class=args.candidates), progress=False)
        observer = ll.load_teacher(data.parent / "models" / "cifar10-resnet56-4bfd9763.th",
                                   input_spec=ll.InputSpec.imagenet(32))  # a plain state dict: say what it expects
        projector = ll.Projector.from_pretrained(args.adapter) if args.adapter else None
        distilled = ll.distill_images(train, observer, ipc=args.ipc, patches_per_image=1,
                                      candidates_per_class=args.candidates, projector=projector,
                                      refine_steps=args.refine_steps, progress=False)
        distilled.save(args.out)
        report = ll.storage_report(num_classes=10, ipc=args.ipc, epochs=300)
        print(f"{len(distilled)} images -> {args.out} ({distilled.storage_nbytes:,} bytes of PNG); stored fp16 soft labels "
              f"for 300 epochs would add {report.soft_label_bytes:,} bytes")
        return distilled


if __name__ == "__main__":
    main()
