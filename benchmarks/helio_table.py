"""The HeLlO comparison on real data (issue 19): label sources x IPC, under the evaluation protocol.

    python benchmarks/helio_table.py --dataset cifar10 --ipc 10 --seeds 0 1 2      # run (and resume) cells
    python benchmarks/helio_table.py --dataset imagenette --ipc 10 --rows projector teacher hard
    python benchmarks/helio_table.py --report                                      # docs/results.md from the cells

Every finished cell is one small JSON file under ``benchmarks/results/helio/<dataset>/ipc<N>/`` (config, seed, top-1,
bytes, times, commit), committed to the repository; the report and the plots are built from those files alone, and a
run on a new machine skips the cells that exist. Teachers, adapters, distilled sets, stored labels and decoded data
are cached under ``benchmarks/.cache/helio/`` (git-ignored), each in a folder named by a fingerprint of its inputs and
settings, so a cache is never reused for other data or settings; missing caches are rebuilt.

The rows and their settings are data in ``helio_grid.py`` (the setting in words: ``helio_grid.SETTING``); the report
is ``helio_report.py``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import CACHE, ROOT, commit, data_root, dataset, device_name, digest, parse_run_args  # noqa: F401
from helio_grid import (  # noqa: F401 (re-exported)
    EVAL_EVERY,
    FITTED,
    GRID,
    RANDOM,
    RESULTS,
    ROWS,
    SETUP,
    cell_path,
    earlier_cell_path,
    trajectory_config,
    trajectory_key,
    trajectory_path,
)
from helio_report import report

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
from lightlabel.utils.hashing import tensor_digest

log = logging.getLogger("helio_table")

class Scale(torch.nn.Module):
    """Multiplies a labeller's logits by a constant."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class Run:
    """One dataset's stages, each cached in a folder named by the fingerprint of its inputs and settings."""

    #: the runner's options a stage reads, for scripts that build a Run from a namespace of their own
    DEFAULTS = dict(quiet=True, keep_trajectory=False, workers=0)

    def __init__(self, name: str, args) -> None:
        self.name, self.args = name, argparse.Namespace(**{**self.DEFAULTS, **vars(args)})
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
        config = trajectory_config(self.name)
        key = trajectory_key(self.name, self.data_key)
        out = self.dir / key
        kept = sorted((trajectory_path(self.name).parent / key).glob("teacher-epoch*.pt"))
        if not (out / "trainer-state.pt").is_file() and len(kept) == len(config.save_epochs):
            # the committed checkpoints of these settings on this data (``--keep-trajectory``): the cells'
            # teachers on a fresh machine, where training again may give another trajectory (CPU training is
            # reproducible bit for bit on the same kind of CPU, torch version and thread count, not across them)
            log.info("trajectory: the committed checkpoints in %s", kept[0].parent.relative_to(ROOT))
            return kept
        paths = ll.train_teachers(self.train, config, out_dir=out, input_spec=self.input, val_set=self.val_f,
                                  progress=not self.args.quiet)
        if self.args.keep_trajectory:
            keep = trajectory_path(self.name).parent / key
            keep.mkdir(parents=True, exist_ok=True)
            for p in paths:
                shutil.copyfile(p, keep / p.name)
            log.info("trajectory: checkpoints copied to %s (commit them)", keep.relative_to(ROOT))
        return paths

    @functools.cached_property
    def trajectory_id(self) -> str:
        """The trajectory's identity: a digest of its first checkpoint's weights rounded to fp16, so that the fp16
        copies shipped as the demo teachers name their trajectory too. Written, with every checkpoint's test top-1,
        to ``trajectory_path``."""
        blobs = [torch.load(p, map_location="cpu", weights_only=True) for p in self.trajectory]
        ident = trajectory_id(blobs[0]["state_dict"])
        top1 = {str(b["epoch"]): b["history"][-1].get("val_top1") for b in blobs}
        record = {"dataset": self.name, "id": ident, "config": trajectory_config(self.name).__dict__,
                  "checkpoint_test_top1": top1, "commit": commit(), "machine": f"{platform.machine()}, torch {torch.__version__}"}
        path = trajectory_path(self.name)
        previous = json.loads(path.read_text()) if path.is_file() else {}
        if previous.get("id") != ident:  # a new trajectory: the one it replaces is kept under "earlier"
            record["earlier"] = previous.pop("earlier", {}) | ({previous["id"]: previous} if previous else {})
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(record, indent=1, default=list))
        return ident

    def checkpoints(self, stage: str = "weak") -> list[Path]:
        """The checkpoints of SETUP's ``weak`` epochs (what the projector imitates) or ``late`` epochs."""
        paths = {int(p.stem[-3:]): p for p in self.trajectory}
        return [paths[e] for e in self.cfg[stage]]

    def full_teacher(self) -> torch.nn.Module:
        if self.name == "cifar10":
            return ll.load_teacher(data_root().parent / "models" / "cifar10-resnet56-4bfd9763.th", input_spec=self.input)
        return ll.load_teacher(self.trajectory[-1])

    def fit(self, text_init: bool = True, head_mode: str = "renorm", epochs: int | None = None,
            per_class: int | None = None, stage: str = "weak", label_size: int | None = None,
            image_rank: int = ll.AdapterConfig.image_rank, seed: int = 0) -> ll.Projector:
        """The adapter fitted to the ``stage`` checkpoints; ``per_class`` images per class (None: SETUP's; 0: all);
        ``image_rank``: the tower's LoRA rank; ``seed``: the fit's (initialisation, held-out split, order and
        augmentation)."""
        c = self.cfg
        text = self.text if text_init else F.normalize(
            torch.randn(self.text.shape, generator=torch.Generator().manual_seed(0)), dim=-1)
        train = self.train
        per_class = c["fit_per_class"] if per_class is None else per_class
        if per_class:
            keep = [i for cls in range(len(train.classes)) for i in
                    [j for j, t in enumerate(train.targets) if t == cls][:per_class]]
            train = train.subset(keep)
        config = ll.AdapterConfig(head_rank=c["head_rank"], head_mode=head_mode, label_size=label_size,
                                  image_rank=image_rank)
        fit = ll.FitConfig(epochs=epochs or c["fit_epochs"], lr=c["fit_lr"], batch_size=128, image_size=c["size"],
                           num_workers=self.args.workers, seed=seed)
        teachers = self.checkpoints(stage)
        key = digest(config.to_dict(), fit.result_dict(), [hashlib.sha256(p.read_bytes()).hexdigest() for p in teachers],
                     hashlib.sha256(text.numpy().tobytes()).hexdigest(), self.data_key, len(train))
        return ll.fit_adapter(train, self.names, teachers=teachers, base=PROXY_BASE, pretrained=str(PROXY_CHECKPOINT),
                              text_embeddings=text, config=config, fit=fit, out_dir=self.dir / f"fit-{key}",
                              progress=not self.args.quiet)

    def clip_as_is(self) -> ll.Projector:
        torch.manual_seed(0)
        return ll.Projector(base=PROXY_BASE, pretrained=str(PROXY_CHECKPOINT), class_names=self.names,
                            text_embeddings=self.text, config=ll.AdapterConfig(head_rank=self.cfg["head_rank"]))

    def distilled(self, ipc: int, observer: torch.nn.Module | None = None,
                  refine: ll.Projector | None = None) -> ll.DistilledSet:
        """RDED's images scored by ``observer`` (default: the full teacher), refined by Eq. 7 through ``refine``."""
        c = self.cfg
        config = ll.DistillConfig(ipc=ipc, patches_per_image=c["ppi"], candidates_per_class=300, crops_per_image=5,
                                  image_size=c["size"])
        observer = self.full_teacher() if observer is None else observer
        parts = [config.__dict__, fingerprint(observer), self.data_key] + ([fingerprint(refine)] if refine else [])
        path = self.dir / f"distilled-{digest(*parts)}"
        if (path / "manifest.json").is_file():
            return ll.DistilledSet.load(path)
        out = ll.distill_images(self.train, observer, config, projector=refine, out_dir=path.with_suffix(".work"),
                                progress=not self.args.quiet)
        out.save(path)
        return out

    def random(self, ipc: int, seed: int) -> ll.DistilledSet:
        """The random-subset baseline of this seed: IPC whole real images per class (one picture per image)."""
        return ll.random_subset(self.train, ipc, seed=seed)

    def images(self, row: str, ipc: int, seed: int, labels=None) -> ll.DistilledSet:
        """The images a row trains on: the random subset of its seed for the random rows, else the distilled set
        (selected by the row's own ``labels`` or refined through them where the grid says so)."""
        spec = GRID[row]
        if spec.images == "random":
            return self.random(ipc, seed)
        return self.distilled(ipc, observer=labels if spec.observer == "labeller" else None,
                              refine=labels if spec.refine else None)

    def protocol(self, row: str) -> ll.EvalProtocol:
        spec = GRID[row]
        side = 1 if spec.images == "random" else int(self.cfg["ppi"] ** 0.5)  # whole images: no patch grid
        protocol = ll.EvalProtocol.helio(patches_per_side=side, eval_every=EVAL_EVERY)
        return protocol.replace(**spec.loss) if spec.loss else protocol

    def labels(self, row: str, ipc: int, seed: int, distilled: ll.DistilledSet):
        """The labeller of a row, from its kind of labels and their settings in the grid."""
        spec = GRID[row]
        if spec.labels == "row":
            return self.labels(spec.labels_of[self.name], ipc, seed, distilled)
        if spec.labels == "fit":
            return self.fit(**spec.fit)
        if spec.labels == "clip":
            return self.clip_as_is()
        if spec.labels == "teacher":
            teacher = self.full_teacher()
            if spec.logit_scale is None:
                return teacher
            return ll.with_input_spec(torch.nn.Sequential(teacher, Scale(spec.logit_scale)), teacher.input_spec)
        if spec.labels == "ensemble":
            return [ll.load_teacher(p) for p in self.checkpoints(spec.stage)]
        if spec.labels == "hard":
            return "hard"
        return self.stored(row, ipc, seed, distilled)

    def stored(self, row: str, ipc: int, seed: int, distilled: ll.DistilledSet) -> ll.StoredSoftLabels:
        """Soft labels of the row's ``stored_from`` labeller, stored in its ``compression`` (cached by both)."""
        spec, protocol = GRID[row], self.protocol(row)
        labeller = self.labels(spec.stored_from, ipc, seed, distilled)
        key = [fingerprint(t) for t in labeller] if isinstance(labeller, list) else fingerprint(labeller)
        path = self.dir / (f"stored-{digest(protocol.to_dict(), key, images_digest(distilled.images), seed)}"
                           + ("" if row == "stored" else f"-{digest(spec.compression.to_dict())}"))
        if (path / "stored-labels.json").is_file():
            return ll.StoredSoftLabels(path)
        return ll.store_soft_labels(distilled.images, distilled.labels, labeller, path, augment=protocol.augment,
                                    epochs=protocol.epochs, batch_size=protocol.batch_size, seed=seed,
                                    compression=spec.compression, progress=not self.args.quiet)

    # ---------------------------------------------------------------- cells
    def cell(self, row: str, ipc: int, seed: int) -> dict:
        path = cell_path(self.name, ipc, row, seed)
        spec = GRID[row]
        if path.is_file():
            done = json.loads(path.read_text())
            if not spec.uses_trajectory(self.name) or done.get("trajectory", self.trajectory_id) == self.trajectory_id:
                return done
            kept = earlier_cell_path(self.name, ipc, row, seed, done["trajectory"])
            log.info("%s ran on trajectory %s, not this machine's %s: running it again (the earlier cell moves to %s)",
                     path.relative_to(ROOT), done["trajectory"], self.trajectory_id, kept.relative_to(ROOT))
            kept.parent.mkdir(parents=True, exist_ok=True)
            path.replace(kept)
        if spec.observer == "labeller" or spec.refine:  # the images depend on the labeller (a fitted row)
            labels = self.labels(row, ipc, seed, None)
            distilled = self.images(row, ipc, seed, labels)
        else:
            distilled = self.images(row, ipc, seed)
            labels = self.labels(row, ipc, seed, distilled)
        protocol = self.protocol(row)
        agreement = None
        if not isinstance(labels, str) and GRID[row].labels != "stored":
            agreement = ll.label_view_agreement(labels, distilled, protocol, views=1000, seed=0)
        images_sha = images_digest(distilled.images)
        # the state folder's name carries the settings, so a changed row (e.g. its compression) starts afresh
        compression = GRID[row].compression
        state_key = digest(protocol.to_dict(), compression.to_dict() if compression else None, images_sha)
        t0 = time.time()
        r = ll.train_student(distilled, labels, protocol, val_set=self.val_f, seed=seed,
                             out_dir=CACHE / "helio" / "student-states" / f"{self.name}-ipc{ipc}-{row}-seed{seed}-{state_key}",
                             progress=not self.args.quiet)
        record = {"dataset": self.name, "ipc": ipc, "row": row, "seed": seed, "top1": r.top1, "best_top1": r.best_top1,
                  "images": spec.images, "observer": spec.observer, "eq7_refined": spec.refine,
                  "evaluated_epochs": [h["epoch"] for h in r.history if "top1" in h],
                  "val_images": len(self.val), "steps": r.iterations, "seconds_per_iter": r.seconds_per_iter,
                  "extra_storage_bytes": r.extra_storage_bytes, "peak_memory_bytes": r.peak_memory_bytes,
                  "peak_memory_kind": r.peak_memory_kind, "label_view_agreement": agreement,
                  "wall_seconds": time.time() - t0, "distilled_bytes": distilled.storage_nbytes,
                  "distilled_sha256": images_sha, "protocol": r.protocol,
                  "commit": commit(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
                  "torch_threads": torch.get_num_threads(), "device": device_name(),
                  "command": f"python benchmarks/helio_table.py --dataset {self.name} --ipc {ipc} --seeds {seed} --rows {row}"}
        if spec.uses_trajectory(self.name):
            record["trajectory"] = self.trajectory_id
        if isinstance(labels, ll.Projector) and labels.fit_info:
            record["fit"] = {k: v for k, v in labels.fit_info.items() if k not in ("history", "config")}
            history = labels.fit_info["history"]  # epoch 0: before fitting
            record["fit"]["agreement_by_epoch"] = [h["agreement"] for h in history if "agreement" in h]
            record["fit"]["fit_seconds"] = round(sum(h.get("seconds", 0.0) for h in history), 1)
        atomic_write_text(path, json.dumps(record, indent=1))
        log.info("cell %s: top-1 %.4f (%.0f s)", path.relative_to(ROOT), r.top1, time.time() - t0)
        return record


def trajectory_id(state_dict: dict[str, torch.Tensor]) -> str:
    """A short digest of a checkpoint's weights rounded to fp16 (floating tensors; others as they are)."""
    return digest({k: tensor_digest(v.half() if v.is_floating_point() else v) for k, v in sorted(state_dict.items())})


def cifar_text_embeddings(names: list[str]) -> torch.Tensor:
    """Mean real CLIP text embedding of related ImageNet classes per CIFAR-10 class (CIFAR10_AS_IMAGENET)."""
    return proxy_head(names)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SETUP), default="cifar10")
    parser.add_argument("--ipc", type=int, nargs="+", default=[10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--report", action="store_true", help="only rebuild docs/results.md from the cells")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader workers of the adapter fits (their per-sample CPU augmentation); results do "
                             "not depend on it. On a GPU machine 8 keeps the device fed")
    parser.add_argument("--keep-trajectory", action="store_true",
                        help="copy the teacher trajectory's checkpoints next to trajectory.json, to commit: a fresh "
                             "machine then uses them instead of training another trajectory")
    parser.add_argument("--distill-only", action="store_true",
                        help="only build (or find) the distilled sets of --ipc, e.g. to carry them to a GPU machine "
                             "(benchmarks/gpu/prepare.sh), and print their sha256")
    args = parse_run_args(parser)
    if args.distill_only:
        run = Run(args.dataset, args)
        for ipc in args.ipc:
            log.info("IPC %d: distilled set %s", ipc, images_digest(run.distilled(ipc).images))
        return
    if not args.report:
        cells = [(row, ipc, seed) for ipc in args.ipc for seed in args.seeds for row in args.rows]
        outside = [c for c in cells if not GRID[c[0]].runs(args.dataset, c[1], c[2])]
        if outside and "--rows" in sys.argv:  # rows asked for by name: say which cells the grid does not hold
            names = ", ".join(f"{row} IPC {ipc} seed {seed}" for row, ipc, seed in outside)
            if len(outside) == len(cells):
                parser.error(f"no cell to run: not in the grid for {args.dataset} (helio_grid.py: a row's `only`, "
                             f"`ipc50_seeds`, `seed0_only`): {names}")
            log.warning("skipped, not in the grid for %s: %s", args.dataset, names)
        run = Run(args.dataset, args)
        for row, ipc, seed in cells:
            if (row, ipc, seed) not in outside:
                run.cell(row, ipc, seed)
    report()


if __name__ == "__main__":
    main()
