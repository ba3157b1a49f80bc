"""Build an adapter with fit_adapter and publish it on the Hugging Face Hub.

    python examples/build_and_publish.py --out my-adapter/ [--data DIR] [--push org/lightlabel-cifar10-r8]

Fits HeLlO's way (Eq. 5): the projector imitates the mean logits of weak teachers, early checkpoints of one
training run. By default those are the three real CIFAR-10 ResNet-20 checkpoints (epochs 1-3) shipped in the
package, and the base is the proxy base shipped with it, so this runs offline; ``--teachers`` takes others
(checkpoint files, ``torchvision:<name>``, ``timm:<name>``), and ``--base``/``--pretrained`` an open_clip model
(``RN50-quickgelu``/``openai`` downloads CLIP). Data: ``--data`` (an ImageFolder, or a folder holding ``train/``), else
CIFAR-10 from a ``shared/data`` folder beside a checkout (or ``$LIGHTLABEL_DATA``), else a download; the output says
which. The folder gets ``adapter.safetensors`` and a model card; ``--push`` uploads both (network and a token).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightlabel as ll
from lightlabel.data import load_cifar10
from lightlabel.io.hub import repo_name

WEAK = [f"lightlabel:cifar10-resnet20-epoch{e}" for e in (1, 2, 3)]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("my-adapter"))
    parser.add_argument("--data", type=Path, default=None, help="an ImageFolder of CIFAR-10 classes (default: see above)")
    parser.add_argument("--teachers", nargs="+", default=WEAK, help="weak teachers (default: the packaged ones)")
    parser.add_argument("--base", default=None, help="open_clip model name (default: the packaged proxy base)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint for --base")
    parser.add_argument("--push", default=None, help="Hub repo id to upload to")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args(argv)
    train = load_cifar10("train", data=args.data, per_class=args.per_class, progress=False)
    print(f"data: {train.origin} ({len(train)} images)")
    config = ll.AdapterConfig(head_rank=8)
    if args.base is None:  # the packaged base: CIFAR-10 or ImageNet class names (its head comes with it)
        projector = ll.Projector.packaged(train.classes, config=config)
    else:
        projector = ll.Projector(base=args.base, pretrained=args.pretrained, class_names=train.classes, config=config)
    with tempfile.TemporaryDirectory(prefix="lightlabel-build-") as work:  # the fit's resumable state
        projector = ll.fit_adapter(train, projector=projector, teachers=args.teachers,
                                   fit=ll.FitConfig(epochs=args.epochs, batch_size=50, lr=2e-3),
                                   out_dir=Path(work) / "fit", progress=False)
    path = projector.save_pretrained(args.out, ipc=10, epochs=300, license="mit", dataset="cifar10")
    info = projector.fit_info
    print(f"adapter: {path} ({projector.adapter_nbytes:,} bytes), held-out agreement with the teachers "
          f"{info['final_agreement']:.3f}; suggested repo name: {repo_name(projector.info(), 'cifar10', org='<org>')}")
    if args.push:
        print(projector.push_to_hub(args.push, dataset="cifar10", license="mit"))
    return path


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:  # no data here: the message says where to put it or how to fetch it
        raise SystemExit(f"error: {e}") from None
