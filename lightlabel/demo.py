"""``lightlabel demo``: the whole pipeline on real images, offline, sized to finish in minutes on a CPU.

weak teachers (:func:`train_teachers`) -> adapter (:func:`fit_adapter`) -> distilled images at IPC 10
(:func:`distill_images`, refined on the projector) -> ResNet-18 students trained with projector labels and with
hard labels (:func:`train_student`) -> a table of top-1, extra storage and time.

Base model: ``RN50-quickgelu``/``openai`` when its weights are in the local cache (or ``--base``), else the
committed offline proxy base (:mod:`lightlabel.proxy`), which the output says. Every stage writes its state into
the work folder, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .configs import AdapterConfig, FitConfig
from .core.proxy import (
    PROXY_BASE,
    PROXY_CHECKPOINT,
    imagenet_class_names,
    imagenet_text_embeddings,
    proxy_available,
)
from .data import default_data_root, extract_image_folder, load_image_folder
from .models import load_teacher
from .recipes.distill import distill_images
from .recipes.fit import fit_adapter
from .recipes.student import train_student
from .recipes.teachers import train_teachers
from .storage import soft_label_nbytes
from .utils.files import atomic_write_text

__all__ = ["DemoSettings", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo's stages; ``cpu()`` finishes in under 15 minutes on 2 CPU cores, ``paper()`` follows
    HeLlO (41-epoch teacher trajectory, 20 fitting epochs, 300 student epochs)."""

    image_size: int = 64
    train_per_class: int | None = 200
    val_per_class: int | None = 50
    teacher_epochs: int = 4
    teacher_save_epochs: tuple[int, ...] = (2, 3, 4)  # a from-scratch epoch 1 on 2,000 images has exploding logits
    teacher_batch_size: int = 64
    teacher_lr: float = 0.05
    fit_epochs: int = 2
    fit_lr: float = 2e-3
    fit_batch_size: int = 64
    head_rank: int = 16
    ipc: int = 10
    candidates_per_class: int = 60
    refine_steps: int = 10
    student_epochs: int = 40
    student_batch_size: int = 50

    @classmethod
    def cpu(cls) -> DemoSettings:
        return cls()

    @classmethod
    def paper(cls) -> DemoSettings:
        return cls(train_per_class=None, val_per_class=None, teacher_epochs=41,
                   teacher_save_epochs=tuple(range(1, 42, 5)), teacher_batch_size=256, teacher_lr=0.1, fit_epochs=20,
                   fit_lr=5e-4, fit_batch_size=256, head_rank=64, candidates_per_class=300, refine_steps=300,
                   student_epochs=300, student_batch_size=100)


def _cached_rn50() -> bool:
    """Whether RN50-quickgelu/openai weights are in the local Hub cache (never touches the network)."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg("RN50-quickgelu", "openai") or {}
    repo = cfg.get("hf_hub", "").strip("/")
    if not repo:
        return False
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str):
            return True
    return False


def run_demo(*, data: str | None = None, data_root: str | None = None, work_dir: str | None = None,
             base: str | None = None, pretrained: str | None = None, full: bool = False, seed: int = 0,
             device: str | None = None, progress: bool = True, settings: DemoSettings | None = None,
             echo=print) -> dict[str, Any]:
    """Run the demo and print its table; returns the results (also written to ``<work_dir>/results.json``).

    Args:
        data: an ImageFolder root with ``train/`` and ``val/`` (default: Imagenette from the shared data).
        data_root: the shared data folder (default: :func:`lightlabel.data.default_data_root`).
        work_dir: folder for data, teachers, adapter, distilled set and results (default ``./lightlabel-demo``).
        base, pretrained: open_clip base (default: RN50-quickgelu/openai if cached, else the proxy base).
        full: paper-size stages (:meth:`DemoSettings.paper`) instead of the CPU-sized ones.
        settings: explicit stage sizes (overrides ``full``).

    Raises:
        FileNotFoundError: no data. ValueError: class folders that are not ImageNet WordNet ids with the proxy.
    """
    started = time.time()
    cfg = settings or (DemoSettings.paper() if full else DemoSettings.cpu())
    work = Path(work_dir or "lightlabel-demo")
    root = Path(data_root) if data_root else default_data_root()
    if data is None:
        if root is None:
            raise FileNotFoundError("no data: pass --data (an ImageFolder root with train/ and val/) or --data-root")
        archive = root / "imagenette-128.tar.gz"
        train_dir = extract_image_folder(archive, work / "data" / "train", split="train", per_class=cfg.train_per_class)
        val_dir = extract_image_folder(archive, work / "data" / "val", split="val", per_class=cfg.val_per_class)
        dataset_name = "Imagenette"
    else:
        train_dir, val_dir, dataset_name = Path(data) / "train", Path(data) / "val", Path(data).name
    size = cfg.image_size
    train = load_image_folder(train_dir, size=size, cache=work / f"train-{size}.pt", progress=progress)
    val = load_image_folder(val_dir, size=size, cache=work / f"val-{size}.pt", progress=progress)
    if train.classes != val.classes:
        raise ValueError(f"train and val class folders differ: {train.classes[:5]} vs {val.classes[:5]}")

    text_embeddings, names = None, list(train.classes)
    if base is None and _cached_rn50():
        base, pretrained, base_note = "RN50-quickgelu", "openai", "RN50-quickgelu / openai (OpenAI CLIP)"
    elif base is None:
        if not proxy_available():
            raise FileNotFoundError(f"RN50/openai is not cached and the proxy base {PROXY_CHECKPOINT} is missing")
        base, pretrained = PROXY_BASE, str(PROXY_CHECKPOINT)
        base_note = (f"{PROXY_BASE} (OFFLINE PROXY: RN50/openai weights are not available here; a small image tower "
                     "trained on tiny-imagenet-150 to match real CLIP text embeddings, see docs/results.md)")
    else:
        base_note = f"{base} / {pretrained}"
    if base == PROXY_BASE:
        text_embeddings = imagenet_text_embeddings(train.classes)
        names = imagenet_class_names(train.classes)
    elif all(c.startswith("n") and c[1:].isdigit() for c in train.classes):
        names = imagenet_class_names(train.classes)

    echo(f"lightlabel demo on {dataset_name}: {len(train):,} train / {len(val):,} val images, {len(names)} classes, "
         f"{size} px")
    echo(f"base model: {base_note}")
    if not full and settings is None:
        echo(f"CPU-sized run (reduced): teachers {cfg.teacher_epochs} epochs on {cfg.train_per_class} images/class, "
             f"fit {cfg.fit_epochs} epochs, refinement {cfg.refine_steps} steps, students {cfg.student_epochs} "
             f"epochs (paper: 41 / 20 / 300 / 300); `lightlabel demo --full` runs the paper's sizes")
    timings: dict[str, float] = {}

    t0 = time.time()
    teacher_paths = train_teachers(train, out_dir=work / "teachers", arch="resnet18", epochs=cfg.teacher_epochs,
                                   save_epochs=list(cfg.teacher_save_epochs), batch_size=cfg.teacher_batch_size,
                                   lr=cfg.teacher_lr, image_size=size, seed=seed, device=device, progress=progress)
    timings["teachers"] = time.time() - t0

    t0 = time.time()
    projector = fit_adapter(train, names, teachers=teacher_paths, base=base, pretrained=pretrained,
                            text_embeddings=text_embeddings, config=AdapterConfig(head_rank=cfg.head_rank),
                            fit=FitConfig(epochs=cfg.fit_epochs, lr=cfg.fit_lr, batch_size=cfg.fit_batch_size,
                                          image_size=size, seed=seed),
                            out_dir=work / "fit", device=device, progress=progress)
    projector.save_pretrained(work / "adapter", dataset=dataset_name)
    timings["fit"] = time.time() - t0

    t0 = time.time()
    observer = load_teacher(teacher_paths[-1])
    distilled = distill_images(train, observer, ipc=cfg.ipc, patches_per_image=4,
                               candidates_per_class=min(cfg.candidates_per_class, min(train.labels.bincount()).item()),
                               crops_per_image=5, projector=projector, refine_steps=cfg.refine_steps, image_size=size,
                               seed=seed, device=device, out_dir=work / "distill", progress=progress)
    timings["distill"] = time.time() - t0

    rows = []
    for labels in (projector, "hard"):
        t0 = time.time()
        result = train_student(distilled, labels, epochs=cfg.student_epochs, batch_size=cfg.student_batch_size,
                               val_set=val, seed=seed, device=device, progress=progress)
        timings[f"student_{result.labels}"] = time.time() - t0
        rows.append(result)

    fit = projector.fit_info
    stored = soft_label_nbytes(num_classes=len(names), ipc=cfg.ipc, epochs=cfg.student_epochs)
    teacher_bytes = 4 * sum(p.numel() for p in observer.parameters())
    echo("")
    echo(f"adapter: {projector.num_adapter_parameters():,} parameters, {projector.adapter_nbytes:,} bytes; held-out "
         f"top-1 agreement with the weak teachers {fit.get('final_agreement', float('nan')):.3f} "
         f"(before fitting {fit['history'][0].get('agreement', float('nan')):.3f}); held-out top-1: teachers "
         f"{fit.get('final_teacher_top1', float('nan')):.3f}, projector {fit.get('final_top1', float('nan')):.3f}")
    echo(f"distilled set: {len(distilled)} images ({cfg.ipc} per class), {distilled.storage_nbytes:,} bytes as PNG")
    echo("")
    echo(f"{'student (ResNet-18) labels':<30} {'top-1':>7} {'extra storage (bytes)':>22} {'s / iteration':>14}")
    for r in rows:
        name = "projector (online)" if r.labels == "projector" else "hard labels only"
        echo(f"{name:<30} {100 * r.top1:>6.1f}% {r.extra_storage_bytes:>22,} {r.seconds_per_iter:>14.3f}")
    echo(f"{'(stored fp16 soft labels)':<30} {'':>7} {stored:>22,}")
    echo(f"{'(online teacher, ResNet-18)':<30} {'':>7} {teacher_bytes:>22,}")
    zero_shot = fit["history"][0].get("top1", float("nan")) if fit.get("history") else float("nan")
    teachers_top1 = fit.get("final_teacher_top1", float("nan"))
    echo(f"\nHeld-out top-1 of the labellers: weak teachers {teachers_top1:.3f}, the base zero-shot {zero_shot:.3f}, "
         f"the fitted projector {fit.get('final_top1', float('nan')):.3f}.")
    if teachers_top1 < zero_shot:
        echo("The weak teachers trained here for minutes are less accurate than the base's zero-shot labels, so "
             "fitting the adapter to them\ncannot make better labels than they are; with teachers trained longer "
             "(`--full`, or your own via `lightlabel fit --teachers`)\nthe projector inherits their knowledge. See "
             "docs/results.md (benchmarks/helio_table.py) for the longer comparison.")
    total = time.time() - started
    echo(f"\nwall time {total / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); "
         f"results in {work / 'results.json'}")
    results = {"dataset": dataset_name, "base": base, "pretrained": pretrained, "settings": asdict(cfg), "seed": seed,
               "adapter_bytes": projector.adapter_nbytes, "adapter_parameters": projector.num_adapter_parameters(),
               "fit": {k: v for k, v in fit.items() if k != "history"}, "fit_history": fit.get("history"),
               "students": [r.__dict__ for r in rows], "stored_soft_label_bytes": stored,
               "teacher_bytes": teacher_bytes, "distilled_bytes": distilled.storage_nbytes, "timings": timings,
               "wall_seconds": total, "device": str(torch.device(device)) if device else "auto"}
    atomic_write_text(work / "results.json", json.dumps(results, indent=1, default=str))
    return results
