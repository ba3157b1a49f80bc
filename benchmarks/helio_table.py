"""The HeLlO comparison on real data (issue 19): label sources x IPC, under the evaluation protocol.

    python benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds 0 1 2      # run (and resume) cells
    python benchmarks/helio_table.py --dataset imagenette --ipc 10 --rows projector teacher hard
    python benchmarks/helio_table.py --report                                      # docs/results.md from the cells

Every finished cell is one small JSON file under ``benchmarks/results/helio/<dataset>/ipc<N>/`` (config, seed, top-1,
bytes, times, commit), committed to the repository; the report and the plots are built from those files alone, and a
run on a new machine skips the cells that exist. Teachers, adapters, distilled sets, stored labels and decoded data
are cached under ``benchmarks/.cache/helio/`` (git-ignored), each in a folder named by a fingerprint of its inputs and
settings, so a cache is never reused for other data or settings; missing caches are rebuilt.

Setting (stated again in the report):
- Student: the HeLlO protocol (``EvalProtocol.helio``: ResNet-18 with the low-resolution stem, AdamW 1e-3 cosine, 300
  epochs at batch 100, MSE + 0.025 CE) on RDED's views for the set's patch grid (ShufflePatches + RandomResizedCrop
  (1/f, 1) + flip + CutMix 1.0). Scored on the whole real test / validation split. Reported: top-1 after the last
  epoch, and the best of the evaluations at epochs 250 and 300 (RDED evaluates every 10 epochs in the last 20 %; two
  evaluations keep the CPU cost down).
- CIFAR-10 at 32 px (train 50,000 / test 10,000): the full teacher and the distillation observer are the real
  ResNet-56 (93.6 % in its source's report; 83 % on this JPEG copy of the test set); the weak teachers are epochs 1-3 of a 4-epoch CIFAR ResNet-20 trajectory; the adapter
  (offline proxy base, LoRA r8 on every conv, head r16) is fitted on 1,000 images per class for 3 epochs (lr 2e-3).
  Distilled images: RDED with 1 patch per image, 300 candidates per class, 5 crops each.
- Imagenette at 64 px (train 9,469 / val 3,925): one ResNet-18 trajectory (low-res stem, SGD 0.05, batch 64,
  8 epochs) gives the weak teachers (epochs 2-4) and the observer / full teacher (epoch 8); the adapter is
  fitted on 400 images per class for 2 epochs (`projector_full`: 20 epochs on the whole train split). Distilled
  images: 2 x 2 patches per image.
- Base: the offline proxy base (lightlabel-proxy-rn), head from real CLIP ViT-B/32 text embeddings; CIFAR-10 classes
  use the mean embedding of related ImageNet classes (lightlabel.core.proxy.CIFAR10_AS_IMAGENET).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import CACHE, ROOT, commit, data_root, dataset, device_name, write_section
from _plot import _fmt, scatter_chart

import lightlabel as ll
from lightlabel.core.base import fingerprint
from lightlabel.core.proxy import (
    PROXY_BASE,
    PROXY_CHECKPOINT,
    imagenet_class_names,
    imagenet_text_embeddings,
    proxy_head,
)
from lightlabel.labeling.stored import images_digest
from lightlabel.utils.files import atomic_write_text

log = logging.getLogger("helio_table")

RESULTS = ROOT / "benchmarks" / "results" / "helio"
TRIAGE = ROOT / "benchmarks" / "results" / "triage"


ROWS = {
    "projector": "projector (HeLlO: proxy base + LoRA, the short fit to the weak teachers: 3 epochs on CIFAR-10, 2 on "
                 "Imagenette)",
    "teacher": "online full teacher (RDED)",
    "weak_teachers": "online weak-teacher ensemble (what the projector imitates)",
    "stored": "stored fp16 soft labels (SRe2L/FKD)",
    "stored_weak": "stored fp16 soft labels of the weak-teacher ensemble (the projector's labeller, stored)",
    "hard": "hard labels only",
    "clip": "base as-is: zero-shot head, no LoRA (HeLlO Table 5 'CLIP')",
    "no_text_init": "LoRA without text initialisation (HeLlO Table 3 ablation)",
    "projector_fit10": "projector fitted 10 epochs (HeLlO fits 20; the short fit is a CPU shortcut)",
    "projector_full": "projector fitted as HeLlO does: 20 epochs on the whole train split (a GPU row)",
    "projector_fit10_32px": "projector_fit10, fitted and labelling at 32 px instead of the base's 64 (label_size=32)",
    "late_teachers": "online ensemble of later checkpoints (epochs 2-4 on CIFAR-10, 6-8 on Imagenette: a stage check)",
    "projector_late": "projector fitted as projector_full is, to those later checkpoints (a GPU row)",
    "teacher_kl": "online full teacher, RDED's loss (KL, T = 20)",
    "teacher_div3": "online full teacher, logits / 3 (the projector's logit spread; a check of the labels' scale)",
    "stored_top3": "stored labels, top-3 logits fp16 (LPQLD-style)",
    "stored_top3_int8": "stored labels, top-3 logits int8 (LPQLD-style)",
    "stored_top1": "stored labels, top-1 logit fp16, the rest of the mass spread (RDED keep_top_k)",
    "first_checkpoint": "online: the trajectory's first checkpoint alone (CIFAR-10: epoch 1; a select_teachers candidate)",
    "final_checkpoint": "online: the trajectory's last checkpoint alone (CIFAR-10: epoch 4; a select_teachers candidate)",
    "random_projector": "random real images (IPC per class, drawn by the seed) + the best projector (CIFAR-10: the "
                        "10-epoch fit; Imagenette: the 20-epoch fit)",
    "random_teacher": "random real images + online full teacher",
    "random_hard": "random real images + hard labels",
}
#: random-subset rows (issue 30): the row whose labels they take, per dataset, on ll.random_subset images
RANDOM = {"random_projector": {"cifar10": "projector_fit10", "imagenette": "projector_full"},
          "random_teacher": {"cifar10": "teacher", "imagenette": "teacher"},
          "random_hard": {"cifar10": "hard", "imagenette": "hard"}}
#: stored-label rows: the online row whose labels they store, and the form (issue 18's compressed forms)
STORED = {"stored": ("teacher", ll.LabelCompression()), "stored_weak": ("weak_teachers", ll.LabelCompression()),
          "stored_top3": ("teacher", ll.LabelCompression(topk=3)),
          "stored_top3_int8": ("teacher", ll.LabelCompression(topk=3, values="int8")),
          "stored_top1": ("teacher", ll.LabelCompression(topk=1, fill="mass"))}
#: rows run at IPC 50 (1 seed), and the row that only runs on seed 0 (a loss check)
IPC50_ROWS = ("projector", "projector_fit10", "projector_full", "teacher", "hard", "weak_teachers", "late_teachers",
              "projector_late", *RANDOM)
#: rows run only on CIFAR-10 at IPC 10 (issue 18's compressed stored labels)
CIFAR10_IPC10_ROWS = ("stored_top3", "stored_top3_int8", "stored_top1", "stored_weak", "first_checkpoint",
                      "final_checkpoint", "projector_fit10_32px")
SEED0_ROWS = ("teacher_kl", "teacher_div3", "stored_weak")
#: rows labelled online by an ensemble of the trajectory's checkpoints: the SETUP stage each runs
ENSEMBLES = {"weak_teachers": "weak", "late_teachers": "late", "first_checkpoint": "first",
             "final_checkpoint": "final"}
#: rows labelled by a fitted adapter: the arguments of ``Run.fit`` that make each (unset: SETUP's settings)
FITTED = {"projector": {}, "no_text_init": dict(text_init=False), "projector_fit10": dict(epochs=10),
          "projector_full": dict(epochs=20, per_class=0), "projector_late": dict(epochs=20, per_class=0, stage="late"),
          "projector_fit10_32px": dict(epochs=10, label_size=32)}

SETUP = {
    "imagenette": dict(size=64, ppi=4, weak_arch="resnet18", weak_epochs=8, weak=(2, 3, 4), late=(6, 7, 8),
                       teacher_batch=64, teacher_lr=0.05, fit_epochs=2, fit_lr=2e-3, head_rank=16, fit_per_class=400),
    "cifar10": dict(size=32, ppi=1, weak_arch="cifar_resnet20", weak_epochs=4, weak=(1, 2, 3), late=(2, 3, 4),
                    first=(1,), final=(4,),
                    teacher_batch=128, teacher_lr=0.1, fit_epochs=3, fit_lr=2e-3, head_rank=16, fit_per_class=1000),
}
EVAL_EVERY = 50  # evaluations at epochs 250 and 300 (see the module docstring)


def digest(*parts) -> str:
    """A short fingerprint of JSON-able parts (settings, hashes of inputs)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Scale(torch.nn.Module):
    """Multiplies a labeller's logits by a constant."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class Run:
    """One dataset's stages, each cached in a folder named by the fingerprint of its inputs and settings."""

    def __init__(self, name: str, args) -> None:
        self.name, self.args = name, args
        self.cfg = SETUP[name]
        self.dir = CACHE / "helio" / name
        size = self.cfg["size"]
        if name == "imagenette":
            self.train = dataset("imagenette", "train", size=size)
            self.val = dataset("imagenette", "val", size=size)
            self.names = imagenet_class_names(self.train.classes)
            self.text = imagenet_text_embeddings(self.train.classes)
        else:
            self.train = dataset("cifar10", "train")
            self.val = dataset("cifar10", "test")
            self.names = list(self.train.classes)
            self.text = cifar_text_embeddings(self.names)
        self.val_f = self.val.with_transform(lambda x: x.float() / 255)
        self.data_key = digest(images_digest(self.train.images), self.train.classes)
        self.input = ll.InputSpec.imagenet(size)

    # ---------------------------------------------------------------- stages
    @functools.cached_property
    def trajectory(self) -> list[Path]:
        """The trajectory's checkpoints, trained (or found finished) once per run."""
        c = self.cfg
        config = ll.TeacherConfig(arch=c["weak_arch"], epochs=c["weak_epochs"],
                                  save_epochs=tuple(sorted(set(c["weak"]) | set(c["late"]) | {c["weak_epochs"]})),
                                  batch_size=c["teacher_batch"], lr=c["teacher_lr"], image_size=c["size"])
        out = self.dir / f"teachers-{digest(config.__dict__, self.data_key)}"
        return ll.train_teachers(self.train, config, out_dir=out, input_spec=self.input, val_set=self.val_f,
                                 progress=not self.args.quiet)

    def checkpoints(self, stage: str = "weak") -> list[Path]:
        """The checkpoints of SETUP's ``weak`` epochs (what the projector imitates) or ``late`` epochs."""
        paths = {int(p.stem[-3:]): p for p in self.trajectory}
        return [paths[e] for e in self.cfg[stage]]

    def full_teacher(self) -> torch.nn.Module:
        if self.name == "cifar10":
            return ll.load_teacher(data_root().parent / "models" / "cifar10-resnet56-4bfd9763.th", input_spec=self.input)
        return ll.load_teacher(self.trajectory[-1])

    def fit(self, text_init: bool = True, head_mode: str = "renorm", epochs: int | None = None,
            per_class: int | None = None, stage: str = "weak", label_size: int | None = None) -> ll.Projector:
        """The adapter fitted to the ``stage`` checkpoints; ``per_class`` images per class (None: SETUP's; 0: all)."""
        c = self.cfg
        text = self.text if text_init else F.normalize(
            torch.randn(self.text.shape, generator=torch.Generator().manual_seed(0)), dim=-1)
        train = self.train
        per_class = c["fit_per_class"] if per_class is None else per_class
        if per_class:
            keep = [i for cls in range(len(train.classes)) for i in
                    [j for j, t in enumerate(train.targets) if t == cls][:per_class]]
            train = train.subset(keep)
        config = ll.AdapterConfig(head_rank=c["head_rank"], head_mode=head_mode, label_size=label_size)
        fit = ll.FitConfig(epochs=epochs or c["fit_epochs"], lr=c["fit_lr"], batch_size=128, image_size=c["size"])
        teachers = self.checkpoints(stage)
        key = digest(config.to_dict(), fit.to_dict(), [hashlib.sha256(p.read_bytes()).hexdigest() for p in teachers],
                     hashlib.sha256(text.numpy().tobytes()).hexdigest(), self.data_key, len(train))
        return ll.fit_adapter(train, self.names, teachers=teachers, base=PROXY_BASE, pretrained=str(PROXY_CHECKPOINT),
                              text_embeddings=text, config=config, fit=fit, out_dir=self.dir / f"fit-{key}",
                              progress=not self.args.quiet)

    def clip_as_is(self) -> ll.Projector:
        torch.manual_seed(0)
        return ll.Projector(base=PROXY_BASE, pretrained=str(PROXY_CHECKPOINT), class_names=self.names,
                            text_embeddings=self.text, config=ll.AdapterConfig(head_rank=self.cfg["head_rank"]))

    def distilled(self, ipc: int) -> ll.DistilledSet:
        c = self.cfg
        config = ll.DistillConfig(ipc=ipc, patches_per_image=c["ppi"], candidates_per_class=300, crops_per_image=5,
                                  image_size=c["size"])
        observer = self.full_teacher()
        path = self.dir / f"distilled-{digest(config.__dict__, fingerprint(observer), self.data_key)}"
        if (path / "manifest.json").is_file():
            return ll.DistilledSet.load(path)
        out = ll.distill_images(self.train, observer, config, out_dir=path.with_suffix(".work"),
                                progress=not self.args.quiet)
        out.save(path)
        return out

    def random(self, ipc: int, seed: int) -> ll.DistilledSet:
        """The random-subset baseline of this seed: IPC whole real images per class (one picture per image)."""
        return ll.random_subset(self.train, ipc, seed=seed)

    def images(self, row: str, ipc: int, seed: int) -> ll.DistilledSet:
        """The images a row trains on: the random subset of its seed for the random rows, else the distilled set."""
        return self.random(ipc, seed) if row in RANDOM else self.distilled(ipc)

    def protocol(self, row: str) -> ll.EvalProtocol:
        side = 1 if row in RANDOM else int(self.cfg["ppi"] ** 0.5)  # whole images: no patch grid to shuffle or crop
        protocol = ll.EvalProtocol.helio(patches_per_side=side, eval_every=EVAL_EVERY)
        if row == "teacher_kl":
            protocol = protocol.replace(soft_loss="kl", temperature=20.0, ce_weight=0.0)
        return protocol

    def labels(self, row: str, ipc: int, seed: int, distilled: ll.DistilledSet):
        if row in RANDOM:
            return self.labels(RANDOM[row][self.name], ipc, seed, distilled)
        if row in FITTED:
            return self.fit(**FITTED[row])
        if row == "clip":
            return self.clip_as_is()
        if row in ("teacher", "teacher_kl"):
            return self.full_teacher()
        if row == "teacher_div3":  # same teacher, logits at the projector's spread (benchmarks/label_scale.py: 6.4 vs 2.1)
            teacher = self.full_teacher()
            return ll.with_input_spec(torch.nn.Sequential(teacher, Scale(1 / 3)), teacher.input_spec)
        if row in ENSEMBLES:
            return [ll.load_teacher(p) for p in self.checkpoints(ENSEMBLES[row])]
        if row == "hard":
            return "hard"
        protocol = self.protocol(row)
        source_row, compression = STORED[row]
        labeller = self.labels(source_row, ipc, seed, distilled)
        key = [fingerprint(t) for t in labeller] if isinstance(labeller, list) else fingerprint(labeller)
        path = self.dir / (f"stored-{digest(protocol.to_dict(), key, images_digest(distilled.images), seed)}"
                           + ("" if row == "stored" else f"-{digest(compression.to_dict())}"))
        if (path / "stored-labels.json").is_file():
            return ll.StoredSoftLabels(path)
        return ll.store_soft_labels(distilled.images, distilled.labels, labeller, path, augment=protocol.augment,
                                    epochs=protocol.epochs, batch_size=protocol.batch_size, seed=seed,
                                    compression=compression, progress=not self.args.quiet)

    # ---------------------------------------------------------------- cells
    def cell(self, row: str, ipc: int, seed: int) -> dict:
        path = cell_path(self.name, ipc, row, seed)
        if path.is_file():
            return json.loads(path.read_text())
        distilled = self.images(row, ipc, seed)
        labels = self.labels(row, ipc, seed, distilled)
        protocol = self.protocol(row)
        agreement = None
        if not isinstance(labels, str) and not row.startswith("stored"):
            agreement = ll.label_view_agreement(labels, distilled, protocol, views=1000, seed=0)
        images_sha = images_digest(distilled.images)
        # the state folder's name carries the settings, so a changed row (e.g. its compression) starts afresh
        state_key = digest(protocol.to_dict(), STORED[row][1].to_dict() if row in STORED else None, images_sha)
        t0 = time.time()
        r = ll.train_student(distilled, labels, protocol, val_set=self.val_f, seed=seed,
                             out_dir=CACHE / "helio" / "student-states" / f"{self.name}-ipc{ipc}-{row}-seed{seed}-{state_key}",
                             progress=not self.args.quiet)
        record = {"dataset": self.name, "ipc": ipc, "row": row, "seed": seed, "top1": r.top1, "best_top1": r.best_top1,
                  "images": "random" if row in RANDOM else "distilled",
                  "evaluated_epochs": [h["epoch"] for h in r.history if "top1" in h],
                  "val_images": len(self.val), "steps": r.iterations, "seconds_per_iter": r.seconds_per_iter,
                  "extra_storage_bytes": r.extra_storage_bytes, "peak_memory_bytes": r.peak_memory_bytes,
                  "peak_memory_kind": r.peak_memory_kind, "label_view_agreement": agreement,
                  "wall_seconds": time.time() - t0, "distilled_bytes": distilled.storage_nbytes,
                  "distilled_sha256": images_sha, "protocol": r.protocol,
                  "commit": commit(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
                  "torch_threads": torch.get_num_threads(), "device": device_name(),
                  "command": f"python benchmarks/helio_table.py --dataset {self.name} --ipc {ipc} --seeds {seed} --rows {row}"}
        if isinstance(labels, ll.Projector) and labels.fit_info:
            record["fit"] = {k: v for k, v in labels.fit_info.items() if k not in ("history", "config")}
            history = labels.fit_info["history"]  # epoch 0: before fitting
            record["fit"]["agreement_by_epoch"] = [h["agreement"] for h in history if "agreement" in h]
            record["fit"]["fit_seconds"] = round(sum(h.get("seconds", 0.0) for h in history), 1)
        atomic_write_text(path, json.dumps(record, indent=1))
        log.info("cell %s: top-1 %.4f (%.0f s)", path.relative_to(ROOT), r.top1, time.time() - t0)
        return record


def cell_path(dataset: str, ipc: int, row: str, seed: int) -> Path:
    """The committed JSON file of one cell."""
    return RESULTS / dataset / f"ipc{ipc}" / f"{row}-seed{seed}.json"


def cifar_text_embeddings(names: list[str]) -> torch.Tensor:
    """Mean real CLIP text embedding of related ImageNet classes per CIFAR-10 class (CIFAR10_AS_IMAGENET)."""
    return proxy_head(names)[1]


# -------------------------------------------------------------------------------------------------- report
def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)} seeds)"


def _devices_line(cells: list[dict]) -> str:
    """Where a table's cells ran, and why its s / iteration is no speed comparison between rows."""
    cpu = [c for c in cells if not _on_gpu(c)]
    gpus = sorted({c["device"].removeprefix("cuda: ") for c in cells if _on_gpu(c)})
    parts = []
    if cpu:
        threads = " or ".join(map(str, sorted({c["torch_threads"] for c in cpu})))
        parts.append(f"{len(cpu)} cells ran on the 2-core CPU with {threads} torch thread(s) while two or three jobs "
                     "shared the cores, a load that changed during the runs")
    if gpus:
        parts.append(f"{len(cells) - len(cpu)} cells ran on one {' or '.join(gpus)} (online labels under bf16 "
                     "autocast, the student in fp32), each alone on it")
    return ("; ".join(parts) + ". s / iteration here is not a speed comparison between rows; the speed of each "
            "label source is measured alone in 'Student iteration time by label source'.")


def _on_gpu(cell: dict) -> bool:
    return cell.get("device", "cpu").startswith("cuda")


def _by_device(cells: list[dict], key: str, unit: float, fmt: str) -> str:
    """Mean of ``key`` over a row's cells, one figure per device kind (CPU and GPU figures never averaged)."""
    out = []
    for name, group in (("CPU", [c for c in cells if not _on_gpu(c)]), ("GPU", [c for c in cells if _on_gpu(c)])):
        if group:
            out.append(fmt.format(statistics.mean(c[key] for c in group) / unit) + f" ({name})")
    return ", ".join(out)


def triage_section() -> str:
    cells = [json.loads(p.read_text()) for p in sorted(TRIAGE.glob("cifar10-*.json"))]
    if not cells:
        return ""
    groups: dict[tuple, list[float]] = {}
    for c in cells:
        groups.setdefault((c["steps"], c["labels"], c["views"]), []).append(100 * c["top1"])
    views = {"rded_f1": "RDED's views (f = 1: no crop)", "rrc008": "RRC(0.08, 1) views (lightlabel 0.1)"}
    lines = ["| steps | labels | " + " | ".join(views.values()) + " |", "|---|---|---|---|"]
    for steps in sorted({k[0] for k in groups}):
        for labels in ("teacher", "hard"):
            cols = [_mean_std(groups[(steps, labels, v)]) if (steps, labels, v) in groups else "not run yet"
                    for v in views]
            name = "online ResNet-56" if labels == "teacher" else "hard"
            lines.append(f"| {steps} | {name} | " + " | ".join(cols) + " |")
    agree = []
    for v, title in views.items():
        p = TRIAGE / f"agreement-{v}.json"
        if p.is_file():
            a = json.loads(p.read_text())
            agree.append(f"| {title} | {100 * a['dominant_class']:.0f} % | {100 * a['either_source_class']:.0f} % | "
                         f"{a['mean_p_max']:.2f} |")
    commits = sorted({c["commit"][:7] for c in cells})
    sets = sorted({c["distilled_images_sha256"][:12] for c in cells})
    threads = sorted({c.get("threads", 2) for c in cells})
    return ("### Protocol triage (CIFAR-10, IPC 10)\n\n"
            "Top-1 % on the 10,000 CIFAR-10 test images, mean ± std over seeds, of a ResNet-18 "
            "student trained on one RDED IPC-10 set (300 candidates per class, 5 crops, ResNet-56 observer) with "
            "online ResNet-56 labels (MSE + 0.025 CE) or hard labels (CE on the CutMix targets), AdamW 1e-3 cosine, "
            "batch 100, so steps = epochs. Views: flip + CutMix, with or without RandomResizedCrop(0.08, 1).\n\n"
            + "\n".join(lines) + "\n\nThe real ResNet-56 on 1,000 views of each kind (seed 0): how often its argmax "
            "is the dominant class of the CutMix view, or either of its two source classes, and its mean max "
            "probability.\n\n| views | dominant class | either source class | mean p_max |\n|---|---|---|---|\n"
            + "\n".join(agree) + f"\n\nCommand: `python benchmarks/protocol_triage.py --out benchmarks/results/triage` "
            f"(cells ran against commits {', '.join(commits)} from a separate worktree, with {' or '.join(map(str, threads))} "
            f"torch thread(s); " + (f"every cell trained on the distilled set whose images hash to {sets[0]} (sha256 "
            "prefix), so the cells compare labels and views on the same images" if len(sets) == 1 else
            f"the cells trained on distilled sets whose images hash to {', '.join(sets)} (sha256 prefixes)")
            + "; a cell records its commit).")


def _sets_line(cells: list[dict]) -> str:
    """Which distilled set(s) the cells trained on: rows only compare labels alike when they share the images.

    A set rebuilt from other caches (a teacher retrained on another machine, say) hashes differently; mixing such cells
    in one table is then said in bold, with the rows on each set. Random-subset rows draw their images per seed by
    design (``ll.random_subset``), so their hashes are listed apart and never count as a mix.
    """
    by_set: dict[str, list[str]] = {}
    drawn: dict[int, set[str]] = {}
    for c in cells:
        if c["row"] in RANDOM:
            drawn.setdefault(c["seed"], set()).add(c["distilled_sha256"][:12])
            continue
        by_set.setdefault(c["distilled_sha256"][:12], []).append(f"{c['row']} s{c['seed']}")
    random_note = ("" if not drawn else " The random-subset rows train on the real images each seed draws (the same "
                   "draw for every label source of a seed): "
                   + ", ".join(f"seed {s} " + (next(iter(shas)) if len(shas) == 1 else  # one seed, two draws: said plainly
                                              f"{' and '.join(sorted(shas))} (**{len(shas)} draws for one seed**)")
                               for s, shas in sorted(drawn.items())) + ".")
    if len(by_set) <= 1:
        return ("" if not by_set else f"Every distilled-image cell trained on the distilled set whose images hash to "
                f"{next(iter(by_set))} (sha256 prefix).") + random_note
    return (f"**These cells trained on {len(by_set)} different distilled sets** (rebuilt from other caches), so rows "
            "on different sets do not compare labels on the same images: "
            + "; ".join(f"{sha}: {', '.join(sorted(rows))}" for sha, rows in sorted(by_set.items())) + "."
            + random_note)


def _random_gain(ds: str, rows: dict[str, list[dict]]) -> str:
    """The distilled-over-random table: per label source, mean top-1 on the distilled set minus on random subsets.

    This is DD-Ranking's IOR term (Acc(synthetic, soft) - Acc(random, soft)), the plain difference of means over the
    seeds run; DD-Ranking's LRS also needs a student trained on the full real set (its HLR term), not run here.
    """
    out = []
    for random_row, by_dataset in RANDOM.items():
        source = by_dataset[ds]
        mine, theirs = rows.get(source) or [], rows.get(random_row) or []
        if not theirs:
            continue
        r = [100 * c["top1"] for c in theirs]
        if mine:
            d = [100 * c["top1"] for c in mine]
            gain = f"{statistics.mean(d) - statistics.mean(r):+.1f}"
            distilled = _mean_std(d)
        else:
            gain, distilled = "distilled row not run", "not run"
        out.append(f"| {source} | {distilled} | {_mean_std(r)} | {gain} |")
    if not out:
        return ""
    return ("Distilled over random, per label source: mean top-1 on the distilled set minus on random subsets (IPC "
            "real images per class, drawn by each seed; whole images, so their views have no patch grid), the same "
            "protocol and seeds. This is DD-Ranking's IOR term as a plain difference of means; its LRS would also need "
            "a student trained on the whole real set, which is not run here.\n\n"
            "| labels | distilled images | random images | gain (points) |\n|---|---|---|---|\n" + "\n".join(out) + "\n\n")


#: the online ensemble each fitted row imitates (its full-protocol cells explain the row's gap to the teacher)
IMITATES = {"projector": "weak_teachers", "projector_fit10": "weak_teachers", "projector_full": "weak_teachers",
            "projector_late": "late_teachers", "projector_fit10_32px": "weak_teachers"}


def _mean(cells: list[dict]) -> float | None:
    return statistics.mean(100 * c["top1"] for c in cells) if cells else None


def gap_table(cells: list[dict]) -> str:
    """Per (dataset, IPC): the online teacher, the best projector row, the gap, the ensemble it imitates, the random
    baselines, and the measured reason where the projector is not within 2 points of the teacher."""
    lines = ["| cell | online teacher | best projector (row) | gap | ensemble it imitates | random images: "
             "projector / teacher / hard | why |", "|---|---|---|---|---|---|---|"]
    for ds in ("cifar10", "imagenette"):
        for ipc in sorted({c["ipc"] for c in cells if c["dataset"] == ds}):
            mine = [c for c in cells if c["dataset"] == ds and c["ipc"] == ipc]
            by_row = {r: [c for c in mine if c["row"] == r] for r in ROWS}
            teacher = _mean(by_row["teacher"])
            fitted = {r: _mean(by_row[r]) for r in IMITATES if by_row[r]}
            if teacher is None or not fitted:
                continue
            best = max(fitted, key=fitted.get)
            proj, ens = fitted[best], _mean(by_row[IMITATES[best]])
            gap = proj - teacher
            if gap >= -2:
                why = "within 2 points" if gap < 2 else "the projector leads"
            elif ens is not None and ens < teacher - 2:
                why = (f"the checkpoints it imitates teach {ens:.1f} themselves: their stage, not the fit (a later "
                       "stage, chosen by select_teachers, is the remedy)")
            elif ens is not None:
                why = f"imitation: its ensemble teaches {ens:.1f}, the fit falls {ens - proj:.1f} short"
            else:
                why = "its ensemble's cell is not run yet"
            rnd = " / ".join(f"{_mean(by_row[r]):.1f}" if by_row[r] else "-" for r in RANDOM)
            seeds = len(by_row[best])
            lines.append(f"| {ds} IPC {ipc} | {teacher:.1f} | {proj:.1f} (`{best}`, {seeds} seed{'s' * (seeds > 1)}) | "
                         f"{gap:+.1f} | {'-' if ens is None else f'{ens:.1f}'} | {rnd} | {why} |")
    return ("### The projector against the online teacher, cell by cell\n\nMean top-1 % over the seeds run (the "
            "tables below give each row's seeds and spread). \"Why\" is read off the measured cells: the ensemble of "
            "checkpoints the projector imitates, run online under the same protocol, shows whether the gap is the "
            "checkpoints' stage or the fit.\n\n" + "\n".join(lines))


def report() -> None:
    cells = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*/ipc*/*.json"))]
    sections = [gap_table(cells)]
    triage = triage_section()
    if triage:
        sections.append(triage)
    for ds in ("cifar10", "imagenette"):
        mine = [c for c in cells if c["dataset"] == ds]
        if not mine:
            continue
        for ipc in sorted({c["ipc"] for c in mine}):
            rows = {r: [c for c in mine if c["ipc"] == ipc and c["row"] == r] for r in ROWS}
            lines = ["| labels | top-1 % (last epoch) | best of epochs 250, 300 | extra bytes | s / iteration | "
                     "peak memory (MiB) | label-view agreement: source / dominant / p_max |",
                     "|---|---|---|---|---|---|---|"]
            points: list[tuple[str, float, float]] = []
            for row, cs in rows.items():
                if not cs:
                    continue
                top = [100 * c["top1"] for c in cs]
                best = [100 * c["best_top1"] for c in cs]
                nbytes = int(statistics.mean(c["extra_storage_bytes"] for c in cs))
                a = cs[0].get("label_view_agreement")
                agree = (f"{100 * a['source_class']:.0f} % / {100 * a['dominant_class']:.0f} % / {a['mean_p_max']:.2f}"
                         if a else "n/a")
                lines.append(f"| {ROWS[row]} | {_mean_std(top)} | {_mean_std(best)} | {nbytes:,} | "
                             f"{_by_device(cs, 'seconds_per_iter', 1, '{:.2f}')} | "
                             f"{_by_device(cs, 'peak_memory_bytes', 2**20, '{:,.0f}')} | {agree} |")
                points.append((f"{row} ({_fmt(nbytes, 'bytes') if nbytes else '0 bytes'})", max(nbytes, 1),
                               statistics.mean(top)))
            gain = _random_gain(ds, rows)
            chart = f"helio-{ds}-ipc{ipc}-bytes.png"
            if points:
                scatter_chart(ROOT / "docs" / chart, points, title=f"{ds}, IPC {ipc}: student top-1 vs extra bytes "
                              "(hard labels plotted at 1 byte)", xlabel="extra bytes (log)", ylabel="top-1 %",
                              logx=True, xunit="bytes")
            steps = sorted({c["steps"] for c in mine if c["ipc"] == ipc})
            hours = sum(c["wall_seconds"] for c in mine if c["ipc"] == ipc) / 3600
            fit_line = ""
            for fit_row in FITTED:
                fit = next((c["fit"] for c in mine if c["ipc"] == ipc and c["row"] == fit_row and "fit" in c), None)
                if fit:
                    curve = fit.get("agreement_by_epoch")
                    fit_line += (
                        f"Adapter fit (`{fit_row}`): {fit['epochs']} epochs on {fit['samples']:,} images, "
                        f"{fit['num_teachers']} weak teachers; held-out top-1 agreement with them "
                        f"{fit.get('final_agreement', float('nan')):.3f}"
                        + (f" (by epoch, from 0 = before fitting: {', '.join(f'{a:.3f}' for a in curve)})" if curve else "")
                        + f", projector top-1 {fit.get('final_top1', float('nan')):.3f}, weak-teacher ensemble top-1 "
                        f"{fit.get('final_teacher_top1', float('nan')):.3f}"
                        + (f", {fit['fit_seconds'] / 60:.0f} min of fitting" if fit.get("fit_seconds") else "") + ".\n\n")
            sections.append(f"### {ds}, IPC {ipc} ({', '.join(map(str, steps))} student steps)\n\n{fit_line}"
                            + "\n".join(lines) + f"\n\n{gain}![{ds} IPC {ipc}: top-1 vs bytes]({chart})\n\n"
                            f"{len([c for c in mine if c['ipc'] == ipc])} cells, {hours:.1f} hours of student wall time "
                            f"(a resumed cell counts its last process only). "
                            f"{_devices_line([c for c in mine if c['ipc'] == ipc])} "
                            f"{_sets_line([c for c in mine if c['ipc'] == ipc])} "
                            f"Each cell: `python benchmarks/helio_table.py --dataset {ds} --ipc {ipc} --seeds S "
                            f"--rows ROW`; the files are in `benchmarks/results/helio/{ds}/ipc{ipc}/`.")
    setting = __doc__.split("Setting (stated again in the report):")[1].strip()
    write_section("helio-table", "## The HeLlO comparison on real data\n\nSetting:\n\n" + setting + "\n\n"
                  + "\n\n".join(sections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SETUP), default="cifar10")
    parser.add_argument("--ipc", type=int, nargs="+", default=[10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="only rebuild docs/results.md from the cells")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if not args.report:
        run = Run(args.dataset, args)
        for ipc in args.ipc:
            for seed in args.seeds:
                for row in args.rows:
                    if (ipc == 50 and (row not in IPC50_ROWS or seed != 0)) or (row in SEED0_ROWS and seed != 0):
                        continue
                    if row in CIFAR10_IPC10_ROWS and (args.dataset, ipc) != ("cifar10", 10):
                        continue
                    run.cell(row, ipc, seed)
    report()


if __name__ == "__main__":
    main()
