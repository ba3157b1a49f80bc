"""Train the offline proxy base: a small open_clip image tower that mimics "a foundation model".

No pretrained CLIP image weights exist on these machines. To measure the method on real data, we need a base
pretrained on *other* data whose image embeddings live in CLIP's text space, the way CLIP's do. This script
trains the image tower of ``lightlabel-proxy-rn`` (open_clip ModifiedResNet, layers 1-1-1-1, width 16, attention
pool, embed dim 512, 64 px; config in ``lightlabel/model_configs``) on tiny-imagenet-150 (202 ImageNet classes,
none of them an Imagenette class) with cross-entropy over ``50 x cosine`` to the *real* CLIP ViT-B/32 text
embeddings of those classes. It then reports zero-shot top-1 on Imagenette val (10 unseen classes; chance 10 %)
with the text head taken from the same real embeddings.

    python tools/proxy_base.py --epochs 10      # about 45 min on 2 CPU cores

Writes ``lightlabel/assets/proxy-base.safetensors`` (fp16, loadable with
``open_clip.create_model("lightlabel-proxy-rn", pretrained=path)``; its settings and zero-shot top-1 are in the
file's metadata) and ``tools/results/proxy-base.json`` (per-epoch history, the reloaded file's zero-shot top-1,
bytes, wall time, this command). The data are the shared archives (``$LIGHTLABEL_DATA`` or ``shared/data``).
Resumable: the state after each epoch is cached in ``<cache>/proxy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from _tools import ROOT, digest, parse_args
from torchvision.transforms import v2

from lightlabel.core.proxy import PROXY_BASE as NAME
from lightlabel.core.proxy import PROXY_CHECKPOINT as ASSET
from lightlabel.core.proxy import imagenet_text_embeddings
from lightlabel.data import default_data_root, extract_image_folder, load_image_folder
from lightlabel.utils.files import atomic_path, atomic_write_bytes, atomic_write_text
from lightlabel.utils.progress import progress_bar

SCALE = 50.0
log = logging.getLogger("proxy_base")


def shared_dataset(archive: str, split: str, cache: Path, size: int | None = None, progress: bool = True):
    """A shared ImageFolder archive (``tiny-imagenet-150.tar.gz``, ``imagenette-128.tar.gz``) as an in-memory dataset,
    decoded once into ``cache`` under a name that carries the archive's size and path."""
    root = default_data_root()
    if root is None or not (root / archive).is_file():
        sys.exit(f"{archive} not found: set LIGHTLABEL_DATA to a folder that holds it")
    path = root / archive
    tag = f"{path.stem}-{split}-{size or 'orig'}-{digest(str(path), path.stat().st_size)}"
    folder = extract_image_folder(path, cache / "data" / f"{path.stem}-{split}", split=split)
    return load_image_folder(folder, size=size, cache=cache / "data" / f"{tag}.pt", progress=progress)


@torch.no_grad()
def zero_shot_top1(visual: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, text: torch.Tensor,
                   normalize: v2.Normalize, batch: int = 256) -> float:
    visual.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = normalize(images[i:i + batch].float() / 255)
        pred = (F.normalize(visual(x), dim=-1) @ text.t()).argmax(1)
        correct += int((pred == labels[i:i + batch]).sum())
    return correct / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args(parser)
    started = time.time()

    train = shared_dataset("tiny-imagenet-150.tar.gz", "train", args.cache, progress=not args.quiet)
    val = shared_dataset("imagenette-128.tar.gz", "val", args.cache, size=64, progress=not args.quiet)
    train_text = imagenet_text_embeddings(train.classes)
    val_text = imagenet_text_embeddings(val.classes)
    normalize = v2.Normalize(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    augment = v2.Compose([v2.RandomResizedCrop(64, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                          v2.ToDtype(torch.float32, scale=True), normalize])

    torch.manual_seed(args.seed)
    model = open_clip.create_model(NAME)
    visual = model.visual
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    opt = torch.optim.AdamW(visual.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.15)
    state_path = args.cache / "proxy" / f"state-e{args.epochs}-s{args.seed}.pt"
    history, start_epoch = [], 0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        visual.load_state_dict(state["visual"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        history, start_epoch = state["history"], state["epoch"]
        log.info("resumed after epoch %d", start_epoch)
    zs0 = zero_shot_top1(visual, val.images, val.labels, val_text, normalize) if start_epoch == 0 else None
    if zs0 is not None:
        log.info("zero-shot top-1 on Imagenette val at initialisation: %.3f", zs0)
        history.append({"epoch": 0, "zero_shot_top1": zs0})

    for epoch in range(start_epoch, args.epochs):
        visual.train()
        t0 = time.time()
        perm = torch.randperm(len(train))
        total, correct, seen = 0.0, 0, 0
        bar = progress_bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", disable=args.quiet)
        for step in bar:
            idx = perm[step * args.batch_size:(step + 1) * args.batch_size]
            x = torch.stack([augment(train.images[i]) for i in idx.tolist()])
            y = train.labels[idx]
            logits = SCALE * F.normalize(visual(x), dim=-1) @ train_text.t()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.3f}", acc=f"{correct / seen:.3f}")
        zs = zero_shot_top1(visual, val.images, val.labels, val_text, normalize)
        history.append({"epoch": epoch + 1, "loss": total / seen, "train_top1": correct / seen,
                        "zero_shot_top1": zs, "seconds": time.time() - t0})
        log.info("epoch %d: loss %.3f train top-1 %.3f zero-shot Imagenette top-1 %.3f (%.0f s)", epoch + 1,
                 total / seen, correct / seen, zs, time.time() - t0)
        with atomic_path(state_path) as tmp:
            torch.save({"visual": visual.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "rng": torch.get_rng_state(), "history": history, "epoch": epoch + 1}, tmp)

    with torch.no_grad():
        model.logit_scale.fill_(math.log(SCALE))
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    info = {"model": NAME, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "zero_shot_imagenette_val_top1": history[-1]["zero_shot_top1"], "train_classes": len(train.classes),
            "train_images": len(train)}
    atomic_write_bytes(ASSET, safetensors.torch.save(state, metadata={k: json.dumps(v) for k, v in info.items()}))
    wall = time.time() - started

    # check that the saved file loads through the normal open_clip path and gives the same zero-shot accuracy
    reloaded = open_clip.create_model(NAME, pretrained=str(ASSET))
    zs_reloaded = zero_shot_top1(reloaded.visual, val.images, val.labels, val_text, normalize)
    n_visual = sum(p.numel() for p in visual.parameters())
    report = {"model": NAME, "image_tower_parameters": n_visual, "train_images": len(train),
              "train_classes": len(train.classes), "val_images": len(val), "scale": SCALE, "lr": args.lr,
              "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed, "history": history,
              "reloaded_zero_shot_top1": zs_reloaded, "bytes": ASSET.stat().st_size, "wall_seconds": round(wall, 1),
              "command": "python " + " ".join(["tools/proxy_base.py"] + sys.argv[1:])}
    (ROOT / "tools" / "results").mkdir(exist_ok=True)
    atomic_write_text(ROOT / "tools" / "results" / "proxy-base.json", json.dumps(report, indent=1) + "\n")
    log.info("saved %s (%d bytes); reloaded zero-shot top-1 %.3f", ASSET, ASSET.stat().st_size, zs_reloaded)


if __name__ == "__main__":
    main()
