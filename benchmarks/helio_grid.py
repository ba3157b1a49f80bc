"""The HeLlO comparison's grid as data: every row (a label source on a kind of images) with its settings, and every
dataset's setup. ``helio_table.py`` runs cells of this grid, ``helio_report.py`` writes docs/results.md from the
committed cells; neither holds a setting of its own.

A row says where its labels come from (``labels``), on which images (``images``), the settings of that kind of
labeller, which of the dataset x IPC x seed cells it runs on, and which online ensemble it imitates (the report reads
a fitted row's gap to the teacher off that ensemble's cells). The order of ``GRID`` is the order of the report's
tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, digest

import lightlabel as ll

#: where a row's labels come from: a fitted adapter (``fit``: the arguments of ``Run.fit``), an online ensemble of the
#: trajectory's ``stage`` checkpoints, the online full teacher (optionally with its logits scaled), the base as-is,
#: hard labels, stored labels of another row (``stored_from``, ``compression``), or another row's labeller per dataset
#: (``labels_of``, for the random-subset rows)
LABEL_KINDS = ("fit", "ensemble", "teacher", "clip", "hard", "stored", "row")


@dataclass(frozen=True)
class Row:
    """One row of the grid. ``title`` is the report's label; see LABEL_KINDS for ``labels``."""

    title: str
    labels: str
    images: str = "distilled"  # or "random": ll.random_subset, IPC real images per class drawn by the seed
    observer: str = "teacher"  # who scores RDED's patches (HeLlO Eq. 6): the full teacher, or the row's own labeller
    refine: bool = False  # refine the distilled images through the row's projector (HeLlO Eq. 7)
    fit: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    logit_scale: float | None = None
    stored_from: str | None = None
    compression: ll.LabelCompression | None = None
    labels_of: dict[str, str] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)  # EvalProtocol fields replaced for this row
    imitates: str | None = None
    ipc50_seeds: tuple[int, ...] = ()  # the seeds it runs at IPC 50 (a 1,500-step student: 40-110 min on the CPU)
    seed0_only: bool = False
    only: tuple[tuple[str, int], ...] | None = None  # runs on these (dataset, IPC) cells alone

    def __post_init__(self) -> None:
        if self.labels not in LABEL_KINDS:
            raise ValueError(f"`labels` must be one of {list(LABEL_KINDS)}, got {self.labels!r}")
        if self.images not in ("distilled", "random"):
            raise ValueError(f"`images` must be 'distilled' or 'random', got {self.images!r}")
        if self.observer not in ("teacher", "labeller"):
            raise ValueError(f"`observer` must be 'teacher' or 'labeller', got {self.observer!r}")
        if (self.observer == "labeller" or self.refine) and (self.labels != "fit" or self.images != "distilled"):
            raise ValueError("an own-labeller observer or Eq. 7 refinement needs a fitted row on distilled images")

    @property
    def own_images(self) -> bool:
        """Whether the row trains on images of its own (not the dataset's one distilled set)."""
        return self.images == "random" or self.observer != "teacher" or self.refine

    def uses_trajectory(self, dataset: str) -> bool:
        """Whether the row's cells depend on the dataset's teacher trajectory (``SETUP``'s checkpoints), which a
        machine that lacks the cached trajectory trains again, and CPU training on another machine or torch version
        does not reproduce bit for bit. On CIFAR-10 that is every row whose labels are the trajectory's checkpoints or
        fitted to them; on Imagenette, whose full teacher (labeller and RDED's observer) is the trajectory's last
        checkpoint, every row but hard labels on random images."""
        if self.labels == "row":  # random images: only the labels can come from the trajectory
            if dataset not in self.labels_of:
                return False
            source = GRID[self.labels_of[dataset]]
            return source.uses_trajectory(dataset) if dataset == "cifar10" else source.labels != "hard"
        if dataset != "cifar10":  # distilled images, scored by the trajectory's last checkpoint
            return True
        if self.labels == "stored":
            return GRID[self.stored_from].uses_trajectory(dataset)
        return self.labels in ("fit", "ensemble")

    def runs(self, dataset: str, ipc: int, seed: int) -> bool:
        """Whether the cell (dataset, IPC, seed) of this row is part of the grid."""
        if ipc == 50 and seed not in self.ipc50_seeds:
            return False
        if self.labels == "row" and dataset not in self.labels_of:  # a random row labelled on some datasets only
            return False
        if self.seed0_only and seed != 0:
            return False
        return self.only is None or (dataset, ipc) in self.only


_RANDOM_PROJECTOR = {"cifar10": "projector_fit10", "imagenette": "projector_full"}

GRID: dict[str, Row] = {
    "projector": Row("projector (HeLlO: proxy base + LoRA, the short fit to the weak teachers: 3 epochs on CIFAR-10, "
                     "2 on Imagenette)", "fit", imitates="weak_teachers", ipc50_seeds=(0,)),
    "teacher": Row("online full teacher (RDED)", "teacher", ipc50_seeds=(0, 1)),
    "weak_teachers": Row("online weak-teacher ensemble (what the projector imitates)", "ensemble", stage="weak",
                         ipc50_seeds=(0,)),
    "stored": Row("stored fp16 soft labels (SRe2L/FKD)", "stored", stored_from="teacher",
                  compression=ll.LabelCompression()),
    "stored_weak": Row("stored fp16 soft labels of the weak-teacher ensemble (the projector's labeller, stored)",
                       "stored", stored_from="weak_teachers", compression=ll.LabelCompression(), seed0_only=True,
                       only=(("cifar10", 10),)),
    "hard": Row("hard labels only", "hard", ipc50_seeds=(0,)),
    "clip": Row("base as-is: zero-shot head, no LoRA (HeLlO Table 5 'CLIP')", "clip"),
    "no_text_init": Row("LoRA without text initialisation (HeLlO Table 3 ablation)", "fit", fit=dict(text_init=False)),
    "projector_fit10": Row("projector fitted 10 epochs (HeLlO fits 20; the short fit is a CPU shortcut)", "fit",
                           fit=dict(epochs=10), imitates="weak_teachers", ipc50_seeds=(0,)),
    "projector_full": Row("projector fitted as HeLlO does: 20 epochs on the whole train split (Imagenette: about 75 min on 2 CPU cores)", "fit",
                          fit=dict(epochs=20, per_class=0), imitates="weak_teachers", ipc50_seeds=(0,)),
    "projector_fit10_32px": Row("projector_fit10, fitted and labelling at 32 px instead of the base's 64 "
                                "(label_size=32)", "fit", fit=dict(epochs=10, label_size=32), imitates="weak_teachers",
                                only=(("cifar10", 10),)),
    # the 32 px fit agreed with its teachers on 65 % of held-out images against 75 % at 64 px, still rising at
    # epoch 10: is the gap the fit's length or the base's 1 x 1 final grid at 32 px? The same fit, twice as long.
    "projector_fit20_32px": Row("projector_fit10_32px fitted for 20 epochs instead of 10", "fit",
                                fit=dict(epochs=20, label_size=32), imitates="weak_teachers",
                                only=(("cifar10", 10),)),
    # ...and its control: the 64 px fit twice as long, so the two sizes are compared at one fit length. At IPC 50 it
    # also tests the imitation gap (3-epoch fit 50.9, 10-epoch 55.9, the ensemble it imitates 63.7): does it close?
    "projector_fit20": Row("projector_fit10 fitted for 20 epochs instead of 10 (64 px)", "fit", fit=dict(epochs=20),
                           imitates="weak_teachers", only=(("cifar10", 10), ("cifar10", 50)), ipc50_seeds=(0,)),
    # At IPC 50 the 20-epoch fit and the HeLlO-length one agree with the ensemble on 0.830 and 0.843 of held-out
    # images and teach 59.4 and 59.7, against the ensemble's own 63.7: five times the fit's images add little. Is
    # the rest the adapter's capacity? The 20-epoch fit with four times the tower's LoRA rank (the head is full rank
    # already: rank 16 over 10 classes).
    "projector_fit20_r32": Row("projector_fit20 with LoRA rank 32 on the tower instead of 8 (a capacity check)",
                               "fit", fit=dict(epochs=20, image_rank=32), imitates="weak_teachers",
                               only=(("cifar10", 10), ("cifar10", 50)), ipc50_seeds=(0, 1)),
    # (IPC 50 seed 1 of this row and of the teacher: at seed 0 it trails the teacher by 1.2 points, the closest of
    # any cell to the 2-point line, on one student seed each.)
    # Three rank-8 fits with one setting teach 47.5, 49.4 and 47.3 at IPC 10: the -1.3 of rank 32 at IPC 50 rests on
    # one fit. The same setting fitted again with fit seed 1.
    "projector_fit20_r32_seed1": Row("projector_fit20_r32 fitted again with fit seed 1 instead of 0 (the labeller's "
                                     "own spread at rank 32)", "fit", fit=dict(epochs=20, image_rank=32, seed=1),
                                     imitates="weak_teachers", only=(("cifar10", 10), ("cifar10", 50)),
                                     ipc50_seeds=(0, 1)),
    # Fits seed 0 and 1 teach 48.7 and 49.9 at IPC 10, both above rank 8's three fits (48.1 pooled): a third says
    # whether rank 32's lead is the setting or the spread of two fits.
    "projector_fit20_r32_seed2": Row("projector_fit20_r32 fitted again with fit seed 2 instead of 0 (the labeller's "
                                     "own spread at rank 32)", "fit", fit=dict(epochs=20, image_rank=32, seed=2),
                                     imitates="weak_teachers", only=(("cifar10", 10),)),
    # projector_full imitates the ensemble more closely than projector_fit20 on every measure (view_fidelity.py), yet
    # teaches 46.0 ± 0.9 against 47.5 ± 0.2: how far apart do two fits with the same settings teach? projector_fit20
    # again with another fit seed (initialisation, held-out split, order, augmentation).
    "projector_fit20_seed1": Row("projector_fit20 fitted again with fit seed 1 instead of 0 (the labeller's own spread)",
                                 "fit", fit=dict(epochs=20, seed=1), imitates="weak_teachers",
                                 only=(("cifar10", 10),)),
    # Fits seed 0 and 1 teach 47.5 and 49.4: a third fit says whether 2 points is the spread or one outlier.
    "projector_fit20_seed2": Row("projector_fit20 fitted again with fit seed 2 instead of 0 (the labeller's own spread)",
                                 "fit", fit=dict(epochs=20, seed=2), imitates="weak_teachers",
                                 only=(("cifar10", 10),)),
    # At 32 px the frozen tower predicts the teachers 8.1 points less often under a linear probe (label_size.py), and
    # the rank-8 fit recovers part of it (agreement 0.704 against 0.830 at 64 px). Does rank 32 recover the rest? The
    # merged labeller costs the same at any rank: only the file grows.
    "projector_fit20_32px_r32": Row("projector_fit20_32px with LoRA rank 32 on the tower instead of 8", "fit",
                                    fit=dict(epochs=20, label_size=32, image_rank=32), imitates="weak_teachers",
                                    only=(("cifar10", 10),)),
    # HeLlO Sec. 3.4: the observer that selects the patches is not the projector that labels them; Eq. 7 narrows
    # that gap. These rows measure it: on CIFAR-10 with the 10-epoch fit (1 patch per image), and on Imagenette's
    # 2 x 2 grids, where stitching down-samples each patch, with the 20-epoch fit (GPU rows).
    "projector_observer": Row("projector_fit10 on images RDED selects with that projector as the observer (no "
                              "observer/labeller gap)", "fit", fit=dict(epochs=10), observer="labeller",
                              only=(("cifar10", 10),)),
    "projector_eq7": Row("projector_fit10 on the distilled images refined through it by HeLlO Eq. 7 (300 Adam steps, "
                         "lr 0.01)", "fit", fit=dict(epochs=10), refine=True, only=(("cifar10", 10),)),
    "projector_full_observer": Row("projector_full on images RDED selects with it as the observer (a GPU row)", "fit",
                                   fit=dict(epochs=20, per_class=0), observer="labeller", only=(("imagenette", 10),)),
    "projector_full_eq7": Row("projector_full on the 2 x 2 distilled images refined through it by HeLlO Eq. 7 (300 "
                              "Adam steps, lr 0.01; a GPU row)", "fit", fit=dict(epochs=20, per_class=0), refine=True,
                              only=(("imagenette", 10),)),
    "late_teachers": Row("online ensemble of later checkpoints (epochs 2-4 on CIFAR-10, 6-8 on Imagenette: a stage "
                         "check)", "ensemble", stage="late", ipc50_seeds=(0,)),
    "projector_late": Row("projector fitted as projector_full is, to those later checkpoints", "fit",
                          fit=dict(epochs=20, per_class=0, stage="late"), imitates="late_teachers", ipc50_seeds=(0,)),
    # On the slower 2-core CPU (5 min per trajectory epoch) the 20-epoch fit on all 9,469 Imagenette images is about
    # 1.8 h (estimated from this row's 2.3 min per epoch on 4,000). The fit that projector_fit10 is, to the later
    # checkpoints: 10 epochs on 400 images per class (on the H100 trajectory that size cost 2.2 points against the
    # 20-epoch fit to the weak checkpoints, 44.8 vs 47.0).
    "projector_late_fit10": Row("projector_fit10 fitted to the later checkpoints (the CPU-sized projector_late)",
                                "fit", fit=dict(epochs=10, stage="late"), imitates="late_teachers",
                                only=(("imagenette", 1), ("imagenette", 10))),
    # The fit to epochs 6-8 falls 12 points short of them, and a probe on its features agrees with them more than its
    # head does (base_ceiling.py): does the tower's capacity limit it? Rank 32 at the CPU's fit size (about 25 min).
    "projector_late_fit10_r32": Row("projector_late_fit10 with LoRA rank 32 on the tower instead of 8", "fit",
                                    fit=dict(epochs=10, stage="late", image_rank=32), imitates="late_teachers",
                                    only=(("imagenette", 10),)),
    # HeLlO's fit to epochs 6-8 (projector_late, rank 8) teaches 57.6 at IPC 10, 2.0 below the teacher and 3.5 below
    # the ensemble it imitates; at the CPU's fit size rank 32 added 1.1 (projector_late_fit10_r32), and at CIFAR-10
    # IPC 10 rank 32 at the 20-epoch fit added 1.2. The same fit at rank 32 (about 2 h on the 2 cores).
    "projector_late_r32": Row("projector_late with LoRA rank 32 on the tower instead of 8", "fit",
                              fit=dict(epochs=20, per_class=0, stage="late", image_rank=32), imitates="late_teachers",
                              only=(("imagenette", 10),)),
    # At CIFAR-10 IPC 50 the later checkpoints (epochs 2-4) teach 67.9 online (seed 0), against the early ones' 63.7
    # and the ResNet-56's 61.4, on one trajectory and distilled set: the stage HeLlO Table 4 (right) picks for larger
    # IPC. The best early fit (projector_fit20_r32) teaches 61.3; the same fit to the later checkpoints.
    "projector_late_fit20_r32": Row("projector_fit20_r32 fitted to the later checkpoints (epochs 2-4)", "fit",
                                    fit=dict(epochs=20, image_rank=32, stage="late"), imitates="late_teachers",
                                    only=(("cifar10", 50),), ipc50_seeds=(0, 1)),
    # At CIFAR-10 IPC 50 select_teachers chose the last checkpoint alone (epoch 4), which teaches 68.8 online (seed 0)
    # against the later ensemble's 67.9: the same fit to the checkpoint the selection chose.
    "projector_final_fit20_r32": Row("projector_fit20_r32 fitted to the last checkpoint alone (epoch 4, the "
                                     "select_teachers choice at IPC 50)", "fit",
                                     fit=dict(epochs=20, image_rank=32, stage="final"), imitates="final_checkpoint",
                                     only=(("cifar10", 50),), ipc50_seeds=(0,)),
    # It teaches 63.9, the fit to epochs 2-4 63.1: one fit each, and fits of one setting differ by up to 2 points.
    # The same fit again with fit seed 1, so the setting is read off the mean of two fits.
    "projector_final_fit20_r32_seed1": Row("projector_final_fit20_r32 fitted again with fit seed 1 instead of 0 (the "
                                           "labeller's own spread)", "fit",
                                           fit=dict(epochs=20, image_rank=32, stage="final", seed=1),
                                           imitates="final_checkpoint", only=(("cifar10", 50),), ipc50_seeds=(0,)),
    # Fitted twice, the last checkpoint teaches 63.6 (63.9, 63.2), the fit to epochs 2-4 63.1 (one fit): a lead of 0.4,
    # below the two fits' spread. The late fit again with fit seed 1, so both targets are read off two fits. Its two
    # fits (63.1, 64.7) are the best setting at IPC 50, 2.5 above the ResNet-56 (61.4 over student seeds 0 and 1):
    # both fits also train student seed 1, so the claim rests on four students, as the teacher's on two.
    "projector_late_fit20_r32_seed1": Row("projector_late_fit20_r32 fitted again with fit seed 1 instead of 0 (the "
                                          "labeller's own spread)", "fit",
                                          fit=dict(epochs=20, image_rank=32, stage="late", seed=1),
                                          imitates="late_teachers", only=(("cifar10", 50),), ipc50_seeds=(0, 1)),
    "teacher_kl": Row("online full teacher, RDED's loss (KL, T = 20)", "teacher",
                      loss=dict(soft_loss="kl", temperature=20.0, ce_weight=0.0), seed0_only=True),
    # the same teacher with its logits at the projector's spread (benchmarks/label_scale.py: 6.4 vs 2.1)
    "teacher_div3": Row("online full teacher, logits / 3 (the projector's logit spread; a check of the labels' scale)",
                        "teacher", logit_scale=1 / 3, seed0_only=True),
    "stored_top3": Row("stored labels, top-3 logits fp16 (LPQLD-style)", "stored", stored_from="teacher",
                       compression=ll.LabelCompression(topk=3), only=(("cifar10", 10),)),
    "stored_top3_int8": Row("stored labels, top-3 logits int8 (LPQLD-style)", "stored", stored_from="teacher",
                            compression=ll.LabelCompression(topk=3, values="int8"), only=(("cifar10", 10),)),
    "stored_top1": Row("stored labels, top-1 logit fp16, the rest of the mass spread (RDED keep_top_k)", "stored",
                       stored_from="teacher", compression=ll.LabelCompression(topk=1, fill="mass"),
                       only=(("cifar10", 10),)),
    "first_checkpoint": Row("online: the trajectory's first checkpoint alone (CIFAR-10: epoch 1; a select_teachers "
                            "candidate)", "ensemble", stage="first",
                            only=(("cifar10", 1), ("cifar10", 10), ("cifar10", 50)), ipc50_seeds=(0,)),
    "final_checkpoint": Row("online: the trajectory's last checkpoint alone (CIFAR-10: epoch 4; a select_teachers "
                            "candidate)", "ensemble", stage="final",
                            only=(("cifar10", 1), ("cifar10", 10), ("cifar10", 50)), ipc50_seeds=(0,)),
    "random_projector": Row("random real images (IPC per class, drawn by the seed) + the best projector (CIFAR-10: "
                            "the 10-epoch fit; Imagenette: the 20-epoch fit)", "row", images="random",
                            labels_of=_RANDOM_PROJECTOR, ipc50_seeds=(0,)),
    "random_teacher": Row("random real images + online full teacher", "row", images="random",
                          labels_of={"cifar10": "teacher", "imagenette": "teacher"}, ipc50_seeds=(0,)),
    "random_hard": Row("random real images + hard labels", "row", images="random",
                       labels_of={"cifar10": "hard", "imagenette": "hard"}, ipc50_seeds=(0,)),
    # random_projector's Imagenette labeller (projector_full, the 20-epoch fit on all 9,469 images) is about 1.8 h of
    # fitting on the 2-core CPU; the projector fitted on the CPU trajectory is projector_late_fit10 (23 min)
    "random_projector_late_fit10": Row("random real images + projector_late_fit10 (the projector fitted on the CPU "
                                       "trajectory)", "row", images="random",
                                       labels_of={"imagenette": "projector_late_fit10"},
                                       only=(("imagenette", 1), ("imagenette", 10))),
    # projector_late's random-image side (Imagenette IPC 10 and 50, where it is the best projector): the labels of
    # HeLlO's fit length on images nobody chose
    "random_projector_late": Row("random real images + projector_late (HeLlO's 20-epoch fit on all images, to the "
                                 "later checkpoints)", "row", images="random",
                                 labels_of={"imagenette": "projector_late"},
                                 only=(("imagenette", 10), ("imagenette", 50)), ipc50_seeds=(0,)),
    # At CIFAR-10 IPC 50 the best projector is projector_fit20_r32 (61.3, two fits), not random_projector's
    # projector_fit10 (55.9): its random-image side, so the distilled-over-random gain is read for the labels that
    # carry the cell (the fit is about 12 min here, the 1,500-step student about 40 min)
    "random_projector_fit20_r32": Row("random real images + projector_fit20_r32 (the 20-epoch fit with LoRA rank 32, "
                                      "the best projector at CIFAR-10 IPC 50)", "row", images="random",
                                      labels_of={"cifar10": "projector_fit20_r32"}, only=(("cifar10", 50),),
                                      ipc50_seeds=(0,)),
    # projector_final_fit20_r32's random-image side at CIFAR-10 IPC 50 (the fit to the checkpoint select_teachers
    # chose): the distilled-over-random gain of the labels that carry that cell
    "random_projector_final_fit20_r32": Row("random real images + projector_final_fit20_r32 (the fit to the last "
                                            "checkpoint alone)", "row", images="random",
                                            labels_of={"cifar10": "projector_final_fit20_r32"},
                                            only=(("cifar10", 50),), ipc50_seeds=(0,)),
    # Over two fits each, the fit to epochs 2-4 (63.9) and the one to epoch 4 (63.6) are level; the former is the
    # report's best setting at this cell: its random-image side (fit seed 0, as the other random rows)
    "random_projector_late_fit20_r32": Row("random real images + projector_late_fit20_r32 (the fit to epochs 2-4)",
                                           "row", images="random",
                                           labels_of={"cifar10": "projector_late_fit20_r32"},
                                           only=(("cifar10", 50),), ipc50_seeds=(0,)),
    # At Imagenette IPC 1 the early checkpoints teach best (38.6 against 30.6 for epochs 6-8 on 79091d5b7df6), and the
    # best projector there is projector_fit10 (the CPU-sized fit to them): its random-image side, 3 min per cell
    "random_projector_fit10": Row("random real images + projector_fit10 (the CPU-sized fit to the early checkpoints)",
                                  "row", images="random", labels_of={"imagenette": "projector_fit10"},
                                  only=(("imagenette", 1),)),
}

#: each dataset's setup: image size, RDED patches per image, the trajectory (arch, epochs, which checkpoints each
#: stage takes, batch, lr) and the adapter fit (epochs, lr, head rank, images per class)
SETUP = {
    "imagenette": dict(size=64, ppi=4, weak_arch="resnet18", weak_epochs=8, weak=(2, 3, 4), late=(6, 7, 8), final=(8,),
                       teacher_batch=64, teacher_lr=0.05, fit_epochs=2, fit_lr=2e-3, head_rank=16, fit_per_class=400),
    "cifar10": dict(size=32, ppi=1, weak_arch="cifar_resnet20", weak_epochs=4, weak=(1, 2, 3), late=(2, 3, 4),
                    first=(1,), final=(4,),
                    teacher_batch=128, teacher_lr=0.1, fit_epochs=3, fit_lr=2e-3, head_rank=16, fit_per_class=1000),
}


def trajectory_config(dataset: str) -> ll.TeacherConfig:
    """The teacher trajectory of a dataset's SETUP: every checkpoint a stage takes, and the last, are kept."""
    c = SETUP[dataset]
    stages = set(c["weak"]) | set(c["late"]) | {c["weak_epochs"]}
    return ll.TeacherConfig(arch=c["weak_arch"], epochs=c["weak_epochs"], save_epochs=tuple(sorted(stages)),
                            batch_size=c["teacher_batch"], lr=c["teacher_lr"], image_size=c["size"])


EVAL_EVERY = 50  # evaluations at epochs 250 and 300 (see helio_table's docstring)

# views of the grid the runner, the report and other scripts read
ROWS = {name: row.title for name, row in GRID.items()}
RANDOM = {name: row.labels_of for name, row in GRID.items() if row.images == "random"}
STORED = {name: (row.stored_from, row.compression) for name, row in GRID.items() if row.labels == "stored"}
FITTED = {name: row.fit for name, row in GRID.items() if row.labels == "fit"}
ENSEMBLES = {name: row.stage for name, row in GRID.items() if row.labels == "ensemble"}
IMITATES = {name: row.imitates for name, row in GRID.items() if row.imitates}


def _setting_key(row: Row) -> tuple:
    """What a row's labels are, without the fit's seed or the cells it runs on: two rows with one key are fits of one
    setting (a refit with another ``fit`` seed draws another initialisation, held-out split, order and augmentation)."""
    return (row.labels, row.images, row.observer, row.refine, sorted((k, v) for k, v in row.fit.items() if k != "seed"),
            row.stage, row.logit_scale, row.stored_from, repr(row.compression), sorted(row.labels_of.items()),
            sorted(row.loss.items()), row.imitates)


#: each fitted row to the first row of its setting (itself unless it refits an earlier row with another fit seed);
#: the report pools the fits of one setting instead of picking the luckiest fit
SETTING_OF = {name: next(first for first in FITTED if _setting_key(GRID[first]) == _setting_key(GRID[name]))
              for name in FITTED}

#: the setting, stated in the report above the tables
SETTING = """- Student: the HeLlO protocol (``EvalProtocol.helio``: ResNet-18 with the low-resolution stem, AdamW 1e-3 cosine, 300
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
  use the mean embedding of related ImageNet classes (lightlabel.core.proxy.CIFAR10_AS_IMAGENET)."""

#: where the committed cells live: one small JSON file per (dataset, IPC, row, seed)
RESULTS = ROOT / "benchmarks" / "results" / "helio"


def trajectory_path(dataset: str) -> Path:
    """The committed record of the trajectory the runner last used for a dataset (its id and its checkpoints' test
    top-1); cells of rows that use the trajectory carry the same id."""
    return RESULTS / dataset / "trajectory.json"


def trajectory_key(dataset: str, data_key: str) -> str:
    """The folder name of a dataset's trajectory checkpoints: its SETUP's settings and the training data's key (in
    the runner's cache, and under ``trajectory_path``'s folder where the checkpoints are committed)."""
    return f"teachers-{digest(trajectory_config(dataset).__dict__, data_key)}"


def current_trajectory(dataset: str) -> str | None:
    """The id of the trajectory the runner last used for a dataset (None before any was recorded)."""
    path = trajectory_path(dataset)
    return json.loads(path.read_text())["id"] if path.is_file() else None


def cell_path(dataset: str, ipc: int, row: str, seed: int) -> Path:
    """The committed JSON file of one cell."""
    return RESULTS / dataset / f"ipc{ipc}" / f"{row}-seed{seed}.json"


def earlier_cell_path(dataset: str, ipc: int, row: str, seed: int, trajectory: str) -> Path:
    """Where a cell run on an earlier teacher trajectory is kept once the same cell runs on a newer one, so that the
    report can still read every figure of a comparison off one trajectory (``helio_report.gap_table``)."""
    return RESULTS / dataset / f"ipc{ipc}" / f"trajectory-{trajectory}" / f"{row}-seed{seed}.json"


def cell_files() -> list[Path]:
    """Every committed cell: those of ``cell_path`` and those kept by ``earlier_cell_path``."""
    return sorted(RESULTS.glob("*/ipc*/*.json")) + sorted(RESULTS.glob("*/ipc*/trajectory-*/*.json"))


def trajectory_cells(dataset: str, ipc: int, row: str, seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
    """A row's committed cells of ``seeds`` on the dataset's current trajectory, the cells that compare with each
    other (adapters must imitate the same teachers)."""
    current = current_trajectory(dataset)
    paths = [cell_path(dataset, ipc, row, s) for s in seeds]
    cells = [json.loads(p.read_text()) for p in paths if p.is_file()]
    return [c for c in cells if c.get("trajectory") == current]
