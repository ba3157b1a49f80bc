"""Train the offline proxy base: a small open_clip image tower that mimics "a foundation model".

No pretrained CLIP image weights exist on these machines. To measure the method on real data, we need a base
pretrained on *other* data whose image embeddings live in CLIP's text space, the way CLIP's do. This script
trains the image tower of ``lightlabel-proxy-rn`` (open_clip ModifiedResNet, layers 1-1-1-1, width 16, attention
pool, embed dim 512, 64 px; config in ``lightlabel/model_configs``) on tiny-imagenet-150 (202 ImageNet classes,
none of them an Imagenette class) with cross-entropy over ``50 x cosine`` to the *real* CLIP ViT-B/32 text
embeddings of those classes. It then reports zero-shot top-1 on Imagenette val (10 unseen classes; chance 10 %)
with the text head taken from the same real embeddings.

    python benchmarks/proxy_base.py --epochs 10

Writes ``lightlabel/assets/proxy-base.safetensors`` (fp16, loadable with
``open_clip.create_model("lightlabel-proxy-rn", pretrained=path)``) and its section of docs/results.md.
Resumable: the state after each epoch is cached in ``benchmarks/.cache/proxy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from _common import CACHE, dataset, write_section
from torchvision.transforms import v2

from lightlabel.core.proxy import PROXY_BASE as NAME
from lightlabel.core.proxy import PROXY_CHECKPOINT as ASSET
from lightlabel.core.proxy import imagenet_text_embeddings
from lightlabel.utils.files import atomic_path, atomic_write_bytes
from lightlabel.utils.progress import progress_bar

SCALE = 50.0
log = logging.getLogger("proxy_base")


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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.time()

    train = dataset("tiny-imagenet", "train", progress=not args.quiet)
    val = dataset("imagenette", "val", size=64, progress=not args.quiet)
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
    state_path = CACHE / "proxy" / f"state-e{args.epochs}-s{args.seed}.pt"
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
    rows = "\n".join(
        f"| {h['epoch']} | {h.get('loss', float('nan')):.3f} | {h.get('train_top1', float('nan')):.3f} | "
        f"{h['zero_shot_top1']:.3f} |" for h in history)
    n_visual = sum(p.numel() for p in visual.parameters())
    write_section("proxy-base", f"""
## Proxy base model (offline stand-in for CLIP)

`lightlabel-proxy-rn` is an open_clip ModifiedResNet (layers 1-1-1-1, width 16, attention pool, embed dim 512,
64 px, {n_visual:,} image-tower parameters). It was trained on tiny-imagenet-150 ({len(train):,} images,
{len(train.classes)} ImageNet classes) to match the **real** CLIP ViT-B/32 text embeddings of those classes,
with cross-entropy over {SCALE:g} x cosine, AdamW {args.lr:g} with a one-cycle schedule, batch {args.batch_size},
and {args.epochs} epochs. It is a **proxy**: a small, faithful copy of "a foundation model used on a label
space it never saw", not CLIP.

Zero-shot top-1 on Imagenette val ({len(val):,} images, 10 classes it never saw, chance 10 %), with the
head built from the real CLIP text embeddings:

| epoch | train loss | train top-1 (202 classes) | zero-shot Imagenette val top-1 |
|---|---|---|---|
{rows}

Reloaded from `lightlabel/assets/proxy-base.safetensors` (fp16, {ASSET.stat().st_size:,} bytes) through
`open_clip.create_model("{NAME}", pretrained=path)`: zero-shot top-1 **{zs_reloaded:.3f}**. Wall time
{wall / 60:.1f} min.
""")
    log.info("saved %s (%d bytes); reloaded zero-shot top-1 %.3f", ASSET, ASSET.stat().st_size, zs_reloaded)


if __name__ == "__main__":
    main()
