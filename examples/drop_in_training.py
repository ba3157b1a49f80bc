"""Drop-in: a plain PyTorch training loop where stored soft labels are replaced by the relabeler.

    python examples/drop_in_training.py [--data DIR] [--adapter adapter.safetensors] [--epochs 2]

The two changed lines are marked ``# lightlabel``: where a stored-label loop reads ``soft = labels[epoch][idx]``
(and replays recorded CutMix boxes), this loop asks the relabeler for labels of the batch it just augmented.

Data: ``--data`` (an ImageFolder, or a folder holding ``train/``), else CIFAR-10 from a ``shared/data`` folder
beside a checkout (or ``$LIGHTLABEL_DATA``), else a CIFAR-10 download where there is a network; the output says
which. Labeller: ``--adapter`` (file, folder or Hub id), else an unfitted projector on the proxy base shipped in the
package (zero-shot labels, offline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torchvision
from torchvision.transforms import v2

import lightlabel as ll
from lightlabel.data import load_cifar10

IMAGENET = ll.InputSpec.imagenet(32)  # the loader's normalisation


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="an ImageFolder of CIFAR-10 classes (default: see above)")
    parser.add_argument("--adapter", default=None, help="adapter file, folder or Hub id (default: an unfitted one)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=10, help="CIFAR-10 images per class to train on")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_set = load_cifar10("train", data=args.data, per_class=args.per_class, progress=False)
    print(f"data: {train_set.origin} ({len(train_set)} images)")
    train_set = train_set.with_transform(v2.Compose([
        v2.RandomResizedCrop(32, scale=(0.5, 1.0)), v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET.mean, IMAGENET.std)]))
    loader = torch.utils.data.DataLoader(train_set, batch_size=50, shuffle=True)

    if args.adapter is not None:
        projector = ll.Projector.from_pretrained(args.adapter, class_names=train_set.classes)
    else:
        projector = ll.Projector.packaged(train_set.classes, config=ll.AdapterConfig(head_rank=8))
    relabeler = ll.OnlineRelabeler(projector.to(device).merge(), input_spec=IMAGENET, mix="cutmix", seed=0)  # lightlabel
    criterion = ll.SoftLabelLoss(ce_weight=0.025)  # MSE on logits + 0.025 CE (HeLlO supp. Table 3)

    student = torchvision.models.resnet18(num_classes=len(train_set.classes)).to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        for images, targets in loader:
            images, soft_logits, mixed_targets = relabeler(images.to(device), targets.to(device))  # lightlabel
            loss = criterion(student(images), soft_logits, mixed_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}")
    return float(loss.item())


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:  # no data here: the message says where to put it or how to fetch it
        raise SystemExit(f"error: {e}") from None
