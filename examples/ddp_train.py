"""Multi-GPU (or multi-process CPU) student training with online labels under torchrun.

    torchrun --nproc_per_node 4 examples/ddp_train.py --distilled distilled/ --adapter adapter/ --val val/
    torchrun --nproc_per_node 2 examples/ddp_train.py --demo        # CPU, gloo, a tiny real-data run

Every rank builds the same projector (``from_pretrained``; the relabeler checks on its first call that the
weights agree on all ranks), labels its own share of each global batch online, and trains the student with DDP.
The projector is never wrapped in DDP: it has no gradients. ``lightlabel.train_student`` does all of this when it
finds a process group; this example spells the loop out for your own code.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import lightlabel as ll
from lightlabel.data import load_cifar10
from lightlabel.models import build_model


def setup() -> tuple[int, int, torch.device]:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def demo_inputs(data: str | None) -> tuple[ll.DistilledSet, ll.Projector, object]:
    """A small real-data setting: 20 CIFAR-10 images per class (``data``, the shared data or a download), distilled
    with the real ResNet-20 checkpoint shipped in the package, an unfitted projector on the packaged base, and
    20 test images per class to score the student on."""
    train = load_cifar10("train", data=data, per_class=20, progress=False)
    observer = ll.load_teacher("lightlabel:cifar10-resnet20-epoch3")
    distilled = ll.distill_images(train, observer, ipc=4, patches_per_image=1,
                                  candidates_per_class=min(20, len(train) // len(train.classes)), progress=False)
    torch.manual_seed(0)  # the same adapter initialisation on every rank
    projector = ll.Projector.packaged(train.classes, config=ll.AdapterConfig(head_rank=4))
    val = load_cifar10("test", data=data, per_class=20, progress=False)  # held-out images, never the training ones
    return distilled, projector, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distilled", help="a distilled set folder")
    parser.add_argument("--adapter", help="adapter file, folder or Hub id")
    parser.add_argument("--val", help="validation ImageFolder")
    parser.add_argument("--demo", action="store_true", help="a tiny CIFAR-10 run (data: --data, shared data or a "
                                                            "download), offline with the packaged observer and base")
    parser.add_argument("--data", default=None, help="for --demo: an ImageFolder of CIFAR-10 classes")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=100, help="global batch")
    args = parser.parse_args()
    if "RANK" not in os.environ:
        raise SystemExit("error: run this under torchrun, e.g. `torchrun --nproc_per_node 2 examples/ddp_train.py "
                         "--demo`")
    rank, world, device = setup()
    if args.demo:
        distilled, projector, val = demo_inputs(args.data)
        args.epochs = min(args.epochs, 3)
        args.batch_size = 20
    else:
        distilled = ll.DistilledSet.load(args.distilled)
        projector = ll.Projector.from_pretrained(args.adapter, class_names=distilled.classes)
        val = args.val
    size = distilled.images.shape[-1]
    student_input = ll.InputSpec.imagenet()
    relabeler = ll.OnlineRelabeler(projector.to(device).merge(), input_spec=student_input,  # a stream per rank
                                   augment=ll.AugmentConfig.rded(1), seed=0)
    criterion = ll.SoftLabelLoss(ce_weight=0.025)
    torch.manual_seed(0)
    student = build_model("resnet18", len(distilled.classes), low_res=size <= 64, image_size=size).to(device)
    student = DistributedDataParallel(student, device_ids=[device] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    local = args.batch_size // world
    for epoch in range(args.epochs):
        order = torch.randperm(len(distilled), generator=torch.Generator().manual_seed(epoch))  # same on all ranks
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size][rank::world][:local]
            images = student_input.normalize(distilled.images[idx].to(device).float() / 255)
            images, soft_logits, targets = relabeler(images, distilled.labels[idx].to(device))  # each rank labels its own
            loss = criterion(student(images), soft_logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if rank == 0:
            print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}")
    if rank == 0 and val is not None:
        from lightlabel.data import TransformedDataset, as_dataset, eval_transform
        from lightlabel.recipes.loop import evaluate

        data = TransformedDataset(as_dataset(val), eval_transform(size))
        print(f"top-1 {evaluate(student.module, data, input_spec=student_input):.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except FileNotFoundError as e:  # no data here: the message says where to put it or how to fetch it
        raise SystemExit(f"error: {e}") from None
