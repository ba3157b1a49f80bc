"""Quickstart: build a projector on a small open_clip model and relabel a real batch of CIFAR-10 images.

    python examples/quickstart.py [--data PATH_TO_shared/data] [--out DIR]

No pretrained CLIP weights can be downloaded offline, so this builds a tiny open_clip ModifiedResNet with
random weights, saves it, and loads it back through the real ``open_clip.create_model(name, pretrained=path)``
path. The labels are therefore not meaningful; the pipeline is the real one. With network access, replace the
base by ``base="RN50-quickgelu", pretrained="openai"``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

import lightlabel as ll
from lightlabel.data import default_data_root, extract_image_folder
from lightlabel.testing import save_tiny_base

IMAGENET = ll.InputSpec.imagenet()  # the student's (and this loader's) input normalisation


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="the shared/data folder (default: found automatically)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the adapter (default: a temp folder)")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    data = args.data or default_data_root()
    if data is None:
        parser.error("could not find shared/data; pass --data")
    out = args.out or Path(tempfile.mkdtemp(prefix="lightlabel-quickstart-"))

    # 1. a real batch of CIFAR-10 training images (ImageFolder of JPEGs), normalised as a student would see it
    folder = extract_image_folder(data / "cifar10" / "train.tar.gz", out / "cifar10-train", split="train", per_class=10)
    dataset = ImageFolder(str(folder), transform=v2.Compose([
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET.mean, IMAGENET.std)]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    images, targets = next(iter(loader))

    # 2. a projector: frozen open_clip image tower + LoRA (every conv) + text-initialised low-rank head
    base, checkpoint = save_tiny_base(out / "base", "lightlabel-tiny-rn")
    t0 = time.perf_counter()
    projector = ll.Projector(base=base, pretrained=str(checkpoint), class_names=dataset.classes,
                             config=ll.AdapterConfig(image_rank=8, head_rank=8))
    build_s = time.perf_counter() - t0

    # 3. relabel the batch online: CutMix on the batch, then labels for the mixed images
    relabeler = ll.OnlineRelabeler(projector, input_spec=IMAGENET, mix="cutmix", alpha=1.0, seed=0)
    t0 = time.perf_counter()
    mixed, soft_logits, mixed_targets = relabeler(images, targets)
    label_s = time.perf_counter() - t0
    path = projector.save_pretrained(out / "adapter")

    print(f"base: {base} (random weights, offline stand-in for RN50/openai), built in {build_s:.2f} s")
    print(f"batch: {tuple(mixed.shape)} real CIFAR-10 images after CutMix")
    print(f"soft_logits: {tuple(soft_logits.shape)} {soft_logits.dtype}, labelled in {label_s * 1000:.1f} ms")
    print(f"mixed_targets rows sum to 1: {bool(torch.allclose(mixed_targets.sum(1), torch.ones(len(mixed))))}")
    print(f"adapter: {projector.num_adapter_parameters():,} parameters, {projector.adapter_nbytes:,} bytes -> {path}")
    print(projector.storage_report(ipc=10, epochs=300))
    return {"soft_logits": soft_logits, "adapter": path}


if __name__ == "__main__":
    main()
