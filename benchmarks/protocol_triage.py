"""Protocol triage (issue 19): why did online ResNet-56 labels lose to hard labels on CIFAR-10 IPC 10?

    python benchmarks/protocol_triage.py --out benchmarks/results/triage

The 2x2 of {views: RandomResizedCrop(0.08, 1) + flip + CutMix (lightlabel 0.1), RDED's views for f = 1 (no crop:
flip + CutMix)} x {50, 300 student steps}, for online-teacher (the real ResNet-56) and hard labels, 3 seeds, on one
RDED IPC-10 set (300 candidates per class, 5 crops each, ResNet-56 observer, no refinement), scored on the whole
CIFAR-10 test set (10,000 images). ResNet-18 student (low-res stem), AdamW 1e-3 cosine, batch 100 (so steps =
epochs), MSE + 0.025 CE for soft labels, CE on the CutMix targets for hard labels.

Every finished cell is one small JSON file in ``--out`` (config, seed, top-1, bytes, times, commit); a re-run skips the
cells that exist. The distilled set is cached under a fingerprint of its inputs and settings. The diagnostic (label-view
agreement of the teacher on 1,000 views of each kind) goes to ``--out/agreement-<views>.json``.

The committed cells in ``benchmarks/results/triage`` were made by this script's first version against commit a3c0006
(main before the protocol fix, the same settings through 0.1's ``train_student(crop_scale=...)``), run from a
separate worktree; each cell records its commit. This version runs the same triage on the new API.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch
from _common import CACHE, commit, data_root, dataset, device_name, parse_run_args

import lightlabel as ll
from lightlabel.labeling.stored import images_digest
from lightlabel.utils.files import atomic_write_text

log = logging.getLogger("protocol_triage")

VIEWS = {"rrc008": ll.AugmentConfig.imagenet_crop(), "rded_f1": ll.AugmentConfig.rded(1)}


def distilled_set(train, teacher: torch.nn.Module, candidates: int) -> ll.DistilledSet:
    config = ll.DistillConfig(ipc=10, patches_per_image=1, candidates_per_class=candidates, crops_per_image=5,
                              image_size=32, refine_steps=0)
    key = hashlib.sha256(json.dumps([config.__dict__, ll.core.fingerprint(teacher), images_digest(train.images)],
                                    default=str).encode()).hexdigest()[:12]
    path = CACHE / "triage" / f"distilled-{key}"
    if (path / "manifest.json").is_file():
        return ll.DistilledSet.load(path)
    out = ll.distill_images(train, teacher, config, out_dir=path.with_suffix(".work"), progress=False)
    out.save(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 300])
    parser.add_argument("--views", nargs="+", default=list(VIEWS), choices=list(VIEWS),
                        help="only these view kinds (two processes can split the cells between them)")
    parser.add_argument("--labels", nargs="+", default=["teacher", "hard"], choices=["teacher", "hard"])
    parser.add_argument("--candidates", type=int, default=300)
    args = parse_run_args(parser, quiet=False)
    args.out.mkdir(parents=True, exist_ok=True)
    train = dataset("cifar10", "train", progress=False)
    test = dataset("cifar10", "test", progress=False).with_transform(lambda x: x.float() / 255)
    teacher = ll.load_teacher(data_root().parent / "models" / "cifar10-resnet56-4bfd9763.th",
                              input_spec=ll.InputSpec.imagenet(32))
    distilled = distilled_set(train, teacher, args.candidates)
    for views, augment in VIEWS.items():
        path = args.out / f"agreement-{views}.json"
        if not path.is_file():
            protocol = ll.EvalProtocol.helio(augment=augment)
            a = ll.label_view_agreement(teacher, distilled, protocol, views=1000, seed=0)
            rec = {"views_kind": views, "augment": augment.to_dict(), "labeller": "resnet56", "views": a["views"],
                   "dominant_class": a["dominant_class"], "either_source_class": a["source_class"],
                   "mean_p_max": a["mean_p_max"], "commit": commit()}
            atomic_write_text(path, json.dumps(rec, indent=1))
    for seed in args.seeds:
        for steps in args.steps:
            for views in args.views:
                augment = VIEWS[views]
                for labels in args.labels:
                    path = args.out / f"cifar10-ipc10-{views}-{steps}steps-{labels}-seed{seed}.json"
                    if path.is_file():
                        continue
                    t0 = time.time()
                    protocol = ll.EvalProtocol.helio(epochs=steps, batch_size=100, augment=augment, eval_every=steps)
                    r = ll.train_student(distilled, teacher if labels == "teacher" else "hard", protocol, val_set=test,
                                         seed=seed, progress=False)
                    rec = {"dataset": "cifar10", "ipc": 10, "views": views, "augment": augment.to_dict(),
                           "steps": r.iterations, "batch_size": 100, "labels": labels, "seed": seed, "top1": r.top1,
                           "test_images": len(test), "extra_storage_bytes": r.extra_storage_bytes,
                           "seconds_per_iter": r.seconds_per_iter, "wall_seconds": time.time() - t0,
                           "peak_memory_bytes": r.peak_memory_bytes, "threads": args.threads,
                           "distilled_images_sha256": images_digest(distilled.images), "commit": commit(),
                           "machine": f"{os.cpu_count()} CPU cores", "device": device_name()}
                    atomic_write_text(path, json.dumps(rec, indent=1))
                    log.info("cell %s: top-1 %.4f (%.0f s)", path.name, r.top1, time.time() - t0)


if __name__ == "__main__":
    main()
