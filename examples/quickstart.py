"""Quickstart: label a real batch of CIFAR-10 images online with a projector.

    python examples/quickstart.py [--data DIR] [--base RN50-quickgelu --pretrained openai] [--out DIR]

Data (the output says which was used): ``--data`` (an ImageFolder, or a folder holding ``train/``), else the CIFAR-10
archives of a ``shared/data`` folder beside a checkout (or ``$LIGHTLABEL_DATA``), else a CIFAR-10 download where there
is a network. Base: the offline proxy base shipped inside the package (``ll.Projector.packaged``; a small stand-in for
CLIP, no download), or any open_clip model with ``--base``/``--pretrained`` (``RN50-quickgelu``/``openai`` downloads
CLIP's weights). The projector is unfitted here, so its labels are the base's zero-shot labels (HeLlO Prop. 1); see
``build_and_publish.py`` to fit one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import lightlabel as ll
from lightlabel.data import load_cifar10

IMAGENET = ll.InputSpec.imagenet(32)  # the student's (and this loader's) input normalisation


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="an ImageFolder of CIFAR-10 classes (default: see above)")
    parser.add_argument("--base", default=None, help="open_clip model name (default: the packaged proxy base)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint for --base")
    parser.add_argument("--out", type=Path, default=None, help="where to write the adapter (default: a temp folder)")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="lightlabel-quickstart-"))

    # 1. a real batch of CIFAR-10 training images, normalised as a student would see them
    train = load_cifar10("train", data=args.data, per_class=10, progress=False)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.batch_size]
    images, targets = IMAGENET.normalize(train.images[idx].float() / 255), train.labels[idx]

    # 2. a projector: frozen image tower + LoRA (every conv) + text-initialised low-rank head
    t0 = time.perf_counter()
    config = ll.AdapterConfig(image_rank=8, head_rank=8)
    if args.base is None:
        projector = ll.Projector.packaged(train.classes, config=config)
    else:
        projector = ll.Projector(base=args.base, pretrained=args.pretrained, class_names=train.classes, config=config)
    build_s = time.perf_counter() - t0

    # 3. relabel the batch online: CutMix on the batch, then labels for the mixed images
    relabeler = ll.OnlineRelabeler(projector.merge(), input_spec=IMAGENET, mix="cutmix", alpha=1.0, seed=0)
    t0 = time.perf_counter()
    mixed, soft_logits, mixed_targets = relabeler(images, targets)
    label_s = time.perf_counter() - t0
    path = projector.save_pretrained(out / "adapter")

    top1 = (soft_logits.argmax(1) == mixed_targets.argmax(1)).float().mean().item()
    print(f"data: {train.origin} ({len(train)} images, {len(train.classes)} classes)")
    print(f"base: {projector.base_model} / {projector.base_pretrained}, built in {build_s:.2f} s")
    print(f"batch: {tuple(mixed.shape)} real CIFAR-10 images after CutMix")
    print(f"soft_logits: {tuple(soft_logits.shape)} {soft_logits.dtype}, labelled in {label_s * 1000:.1f} ms; "
          f"argmax = dominant CutMix class on {top1:.0%} (zero-shot, unfitted)")
    print(f"mixed_targets rows sum to 1: {bool(torch.allclose(mixed_targets.sum(1), torch.ones(len(mixed))))}")
    print(f"adapter: {projector.num_adapter_parameters():,} parameters, {projector.adapter_nbytes:,} bytes -> {path}")
    print(ll.storage_report(num_classes=projector.num_classes, ipc=10, epochs=300,
                            adapter_nbytes=projector.adapter_nbytes, adapter_note="this adapter, fp32"))
    return {"soft_logits": soft_logits, "adapter": path}


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:  # no data here: the message says where to put it or how to fetch it
        raise SystemExit(f"error: {e}") from None
