"""The CIFAR-10 adapter shipped in the package (registry name ``lightlabel/cifar10-proxy-rn``), made and measured.

    python tools/packaged_adapter.py                          # fit, measure, write lightlabel/assets/adapters/
                                                              # (about 1 h on 2 CPU cores)
    python tools/packaged_adapter.py --cache benchmarks/.cache  # reuse the benchmarks' distilled set

- Base: the packaged proxy base (``ll.Projector.packaged``), LoRA r8 on every conv, head r16 (``renorm``).
- Teachers: the three weak teachers shipped in the package (``lightlabel:cifar10-resnet20-epoch1..3``, epochs 1-3 of one
  real CIFAR-10 ResNet-20 trajectory), their mean logits the target (HeLlO Eq. 5).
- Fit: the ``projector_fit10`` setting of the benchmarks' HeLlO table (10 epochs on the first 1,000 training images of
  each class, AdamW 2e-3, batch 128, at 32 px).
- Measured: held-out label fidelity (from the fit), and the student top-1 it gives under HeLlO's protocol
  (``EvalProtocol.helio``, ResNet-18, 300 steps, RDED's views, seed 0) on an RDED CIFAR-10 IPC-10 set scored by the
  converged ResNet-56 (``--observer``; the benchmarks' HeLlO-table set), scored on the 10,000 test images.

Writes ``adapter.safetensors``, ``text_embeddings.safetensors`` and a model card into
``lightlabel/assets/adapters/cifar10-proxy-rn/``, and the entry (fidelity, student, bytes, sha256, this command) into
``lightlabel/assets/adapters/registry.json``. The fit, the distilled set and the student state are cached under
``--cache`` by a fingerprint of their inputs, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from pathlib import Path

from _tools import cifar10, digest, parse_args

import lightlabel as ll
from lightlabel.data import default_data_root
from lightlabel.io.registry import ADAPTERS
from lightlabel.utils.files import atomic_write_text

NAME = "lightlabel/cifar10-proxy-rn"
FOLDER = ADAPTERS / "cifar10-proxy-rn"
TEACHERS = [f"lightlabel:cifar10-resnet20-epoch{e}" for e in (1, 2, 3)]
COMMAND = "python tools/packaged_adapter.py"
#: the student's evaluations: every 50 epochs, so at epochs 250 and 300 of 300 (the benchmarks' HeLlO table)
EVAL_EVERY = 50
#: the RDED set: IPC 10, whole 32 px images, 300 candidates per class, 5 crops each (the benchmarks' HeLlO table)
DISTILL = ll.DistillConfig(ipc=10, patches_per_image=1, candidates_per_class=300, crops_per_image=5, image_size=32)


def fit(train: ll.data.TensorImageDataset, cache: Path, quiet: bool) -> ll.Projector:
    keep = [i for c in range(10) for i in [j for j, t in enumerate(train.targets) if t == c][:1000]]
    subset = train.subset(keep)
    config = ll.AdapterConfig(head_rank=16)
    fit_cfg = ll.FitConfig(epochs=10, lr=2e-3, batch_size=128, image_size=32)
    teachers = [ll.load_teacher(t) for t in TEACHERS]
    key = digest(config.to_dict(), fit_cfg.to_dict(), [ll.core.fingerprint(t) for t in teachers], len(subset),
                 ll.labeling.stored.images_digest(subset.images))
    projector = ll.Projector.packaged(train.classes, config=config)
    return ll.fit_adapter(subset, projector=projector, teachers=teachers, fit=fit_cfg,
                          out_dir=cache / "packaged-adapter" / f"fit-{key}", progress=not quiet)


def distilled(train: ll.data.TensorImageDataset, data_key: str, observer: Path, cache: Path,
              quiet: bool) -> ll.DistilledSet:
    """RDED's CIFAR-10 IPC-10 images scored by the converged ResNet-56 (cached by the fingerprint of its inputs)."""
    teacher = ll.load_teacher(observer, input_spec=ll.InputSpec.imagenet(32))
    path = cache / "helio" / "cifar10" / f"distilled-{digest(DISTILL.__dict__, ll.core.fingerprint(teacher), data_key)}"
    if (path / "manifest.json").is_file():
        return ll.DistilledSet.load(path)
    out = ll.distill_images(train, teacher, DISTILL, out_dir=path.with_suffix(".work"), progress=not quiet)
    out.save(path)
    return out


def student(projector: ll.Projector, images: ll.DistilledSet, test: ll.data.TensorImageDataset, cache: Path,
            quiet: bool) -> dict:
    protocol = ll.EvalProtocol.helio(patches_per_side=1, eval_every=EVAL_EVERY)
    result = ll.train_student(images, projector, protocol, val_set=test.with_transform(lambda x: x.float() / 255),
                              seed=0, out_dir=cache / "packaged-adapter" /
                              f"student-{digest(protocol.to_dict(), images.fingerprint, ll.core.fingerprint(projector))}",
                              progress=not quiet)
    return {"top1": round(result.top1, 4), "best_top1": round(result.best_top1, 4), "protocol": "helio",
            "student": protocol.student, "steps": result.iterations, "images": "RDED CIFAR-10 IPC 10 (ResNet-56 observer)",
            "images_sha256": images.fingerprint[:16], "seed": 0, "val_images": len(test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = default_data_root()
    parser.add_argument("--observer", type=Path,
                        default=shared.parent / "models" / "cifar10-resnet56-4bfd9763.th" if shared else None,
                        help="the converged CIFAR-10 ResNet-56 that scores RDED's crops (akamaster's checkpoint; "
                             "default: the shared models folder)")
    args = parse_args(parser)
    if args.observer is None or not args.observer.is_file():
        parser.error(f"--observer: the CIFAR-10 ResNet-56 checkpoint is needed, got {args.observer}")
    train, test, data_key = cifar10(progress=not args.quiet)
    projector = fit(train, args.cache, args.quiet).eval()
    images = distilled(train, data_key, args.observer, args.cache, args.quiet)
    measured = student(projector, images, test, args.cache, args.quiet)
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
