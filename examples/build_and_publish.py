"""Build an adapter with fit_adapter and publish it on the Hugging Face Hub.

    python examples/build_and_publish.py --out my-adapter/ [--push org/lightlabel-tiny-cifar10-r8] [--epochs 2]

Fits on real CIFAR-10 images with the real CIFAR-10 ResNet-56 from the shared models as the teacher. Offline, the
base is a tiny open_clip model (replace it by base="RN50-quickgelu", pretrained="openai" with network access).
The folder gets ``adapter.safetensors`` and a model card; ``--push`` uploads both (needs network and a token).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightlabel as ll
from lightlabel.data import default_data_root, extract_image_folder, load_image_folder
from lightlabel.io.hub import repo_name
from lightlabel.testing import save_tiny_base


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("my-adapter"))
    parser.add_argument("--push", default=None, help="Hub repo id to upload to")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lightlabel-build-") as tmp:
        return _build(args, Path(tmp))


def _build(args: argparse.Namespace, work: Path) -> Path:
    """Fit in the scratch folder ``work`` (removed by the caller) and save the adapter to ``args.out``."""
    data = default_data_root()
    train = load_image_folder(extract_image_folder(data / "cifar10" / "train.tar.gz", work / "train", split="train",
                                                   per_class=args.per_class), progress=False)
    base, ckpt = save_tiny_base(work / "base")
    projector = ll.fit_adapter(train, teachers=[data.parent / "models" / "cifar10-resnet56-4bfd9763.th"],
                               teacher_input=ll.InputSpec.imagenet(32), base=base, pretrained=str(ckpt),
                               config=ll.AdapterConfig(head_rank=8),
                               fit=ll.FitConfig(epochs=args.epochs, batch_size=50, lr=2e-3),
                               out_dir=work / "fit", progress=False)
    path = projector.save_pretrained(args.out, ipc=10, epochs=300, license="mit", dataset="cifar10")
    info = projector.fit_info
    print(f"adapter: {path} ({projector.adapter_nbytes:,} bytes), held-out agreement with the teacher "
          f"{info['final_agreement']:.3f}; suggested repo name: {repo_name(projector.info(), 'cifar10', org='<org>')}")
    if args.push:
        print(projector.push_to_hub(args.push, dataset="cifar10", license="mit"))
    return path


if __name__ == "__main__":
    main()
