"""The CIFAR-10 adapter shipped in the package (registry name ``lightlabel/cifar10-proxy-rn``), made and measured.

    python benchmarks/packaged_adapter.py            # fit, measure, write lightlabel/assets/adapters/ (about 1 h on 2 CPU cores)

- Base: the packaged proxy base (``ll.Projector.packaged``), LoRA r8 on every conv, head r16 (``renorm``).
- Teachers: the three weak teachers shipped in the package (``lightlabel:cifar10-resnet20-epoch1..3``, epochs 1-3 of one
  real CIFAR-10 ResNet-20 trajectory), their mean logits the target (HeLlO Eq. 5).
- Fit: the ``projector_fit10`` setting of the HeLlO table (10 epochs on the first 1,000 training images of each class,
  AdamW 2e-3, batch 128, at 32 px).
- Measured: held-out label fidelity (from the fit), and the student top-1 it gives under HeLlO's protocol
  (``EvalProtocol.helio``, ResNet-18, 300 steps, RDED's views, seed 0) on the RDED CIFAR-10 IPC-10 set of the HeLlO table
  (ResNet-56 observer), scored on the 10,000 test images.

Writes ``adapter.safetensors``, ``text_embeddings.safetensors`` and a model card into
``lightlabel/assets/adapters/cifar10-proxy-rn/``, and the entry (fidelity, student, bytes, sha256, this command) into
``lightlabel/assets/adapters/registry.json``. The fit and the student state are cached under ``benchmarks/.cache`` by a
fingerprint of their inputs, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil

from _common import CACHE, dataset, digest, parse_run_args
from helio_grid import EVAL_EVERY
from helio_table import Run

import lightlabel as ll
from lightlabel.io.registry import ADAPTERS
from lightlabel.utils.files import atomic_write_text

NAME = "lightlabel/cifar10-proxy-rn"
FOLDER = ADAPTERS / "cifar10-proxy-rn"
TEACHERS = [f"lightlabel:cifar10-resnet20-epoch{e}" for e in (1, 2, 3)]
COMMAND = "python benchmarks/packaged_adapter.py"


def fit(train: ll.data.TensorImageDataset, quiet: bool) -> ll.Projector:
    keep = [i for c in range(10) for i in [j for j, t in enumerate(train.targets) if t == c][:1000]]
    subset = train.subset(keep)
    config = ll.AdapterConfig(head_rank=16)
    fit_cfg = ll.FitConfig(epochs=10, lr=2e-3, batch_size=128, image_size=32)
    teachers = [ll.load_teacher(t) for t in TEACHERS]
    key = digest(config.to_dict(), fit_cfg.to_dict(), [ll.core.fingerprint(t) for t in teachers], len(subset),
                 ll.labeling.stored.images_digest(subset.images))
    projector = ll.Projector.packaged(train.classes, config=config)
    return ll.fit_adapter(subset, projector=projector, teachers=teachers, fit=fit_cfg,
                          out_dir=CACHE / "packaged-adapter" / f"fit-{key}", progress=not quiet)


def student(projector: ll.Projector, quiet: bool) -> dict:
    args = argparse.Namespace(quiet=quiet)
    run = Run("cifar10", args)
    distilled = run.distilled(10)
    protocol = ll.EvalProtocol.helio(patches_per_side=1, eval_every=EVAL_EVERY)
    result = ll.train_student(distilled, projector, protocol, val_set=run.val_f, seed=0,
                              out_dir=CACHE / "packaged-adapter" / f"student-{digest(protocol.to_dict(), distilled.fingerprint)}",
                              progress=not quiet)
    return {"top1": round(result.top1, 4), "best_top1": round(result.best_top1, 4), "protocol": "helio",
            "student": protocol.student, "steps": result.iterations, "images": "RDED CIFAR-10 IPC 10 (ResNet-56 observer)",
            "images_sha256": distilled.fingerprint[:16], "seed": 0, "val_images": len(run.val)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_run_args(parser)
    train = dataset("cifar10", "train", progress=not args.quiet)
    projector = fit(train, args.quiet).eval()
    measured = student(projector, args.quiet)
    if FOLDER.exists():
        shutil.rmtree(FOLDER)
    projector.fit_info["student_top1"] = measured["top1"]
    projector.save_pretrained(FOLDER, dataset="cifar10", license="mit", ipc=10, epochs=300)
    file = FOLDER / "adapter.safetensors"
    info = projector.fit_info
    entry = {"base": projector.base_model, "pretrained": projector.base_pretrained, "dataset": "CIFAR-10",
             "classes": list(projector.class_names),
             "teachers": "mean logits of epochs 1-3 of one real CIFAR-10 ResNet-20 trajectory (the packaged "
                         "lightlabel:cifar10-resnet20-epoch1..3)",
             "fidelity": {"agreement": round(info["final_agreement"], 4), "kl": round(info["final_kl"], 4),
                          "top1": round(info["final_top1"], 4), "teacher_top1": round(info["final_teacher_top1"], 4),
                          "fit_images": info["samples"], "held_out_fraction": info["val_fraction"]},
             "student": measured, "nbytes": file.stat().st_size,
             "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "command": COMMAND,
             "path": "cifar10-proxy-rn/adapter.safetensors", "repo_id": None}
    registry_file = ADAPTERS / "registry.json"
    registry = json.loads(registry_file.read_text()) if registry_file.is_file() else {}
    registry[NAME] = entry
    atomic_write_text(registry_file, json.dumps(registry, indent=1) + "\n")
    logging.info("%s: %s", NAME, json.dumps({k: entry[k] for k in ("fidelity", "student", "nbytes")}))


if __name__ == "__main__":
    main()
