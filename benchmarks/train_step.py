"""Time per student step by label source, interleaved, at several labelling sizes; the storage plot (issue 31).

    python benchmarks/train_step.py --configs rn50 --batch 32               # CPU (about 40 min on 2 cores)
    python benchmarks/train_step.py --configs rn50 --batch 100 256          # one GPU (the figures issue 31 targets)
    python benchmarks/train_step.py ... --compile     # also a compiled projector and teacher, with compile times
    python benchmarks/train_step.py ... --patches-per-side 2   # RDED's ImageNet views: 2 x 2 mosaics

Each label source trains its own ResNet-18 student (CutMix, RDED's views at f = ``--patches-per-side``: 1 by
default, whole images; 2 shuffles the 2 x 2 patches of each image and crops RandomResizedCrop(1/2, 1), the batched
path of RDED's ImageNet setting; MSE + 0.025 CE, AdamW) on the
same batches, through the library's own pieces in the order ``train_student`` runs them: ``epoch_views``, then the
labeller on its fast path (``ModelLabels.optimized``: merged projector with folded BatchNorm and a one-token
attention pool, or the teacher with folded BatchNorm and a float32 classifier; channels-last on CUDA, like the
student), then the student's step. Sources take turns epoch by epoch (interleaved), so a change in the machine's
load falls on all of them alike; each epoch has ``--steps`` steps and is timed as a whole (one synchronisation per
epoch on CUDA, as in ``train_student``); the first epoch of each source is warm-up. Reported: the median seconds
per step over the timed epochs with their range, the ratio to the online ResNet-18 teacher's step and to the
hard-label step. One more row runs the projector through ``ll.train_student`` itself ("as train_student gets it").

Sources: ``hard`` (no labeller), ``teacher`` (a ResNet-18 at the student's resolution), and ``projector@S`` for
each labelling size S (``AdapterConfig.label_size``: the positional embedding resampled, views resized to S).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from _common import ROOT, bench_projector, write_section
from _plot import line_chart

import lightlabel as ll
from lightlabel.labeling.augment import Augmenter, epoch_views
from lightlabel.labeling.sources import as_label_source
from lightlabel.models import build_model
from lightlabel.storage import soft_label_nbytes, teacher_nbytes

#: name -> (open_clip base, student/view size, classes, head rank, labelling sizes to sweep)
CONFIGS = {"rn50": ("RN50-quickgelu", 224, 1000, 128, (224, 160, 128)),
           "proxy": ("lightlabel-proxy-rn", 64, 10, 16, (64, 32))}


def _images(n: int, size: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g), torch.arange(n) % classes


class Runner:
    """One label source's student, optimiser and labeller; :meth:`epoch` runs and times one epoch of steps."""

    def __init__(self, labels, classes: int, size: int, device: torch.device, compile: bool = False) -> None:
        self.device = device
        self.source = None if labels == "hard" else as_label_source(labels).optimized(device, compile=compile)
        torch.manual_seed(0)
        self.student = build_model("resnet18", classes, low_res=size <= 64, image_size=size).to(device).train()
        if device.type == "cuda":
            self.student = self.student.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.student.parameters(), lr=1e-3)
        self.spec = ll.InputSpec.imagenet()

    def epoch(self, images: torch.Tensor, labels: torch.Tensor, augmenter: Augmenter, batch: int, epoch: int) -> float:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        steps = 0
        for view in epoch_views(images, labels, augmenter, batch_size=batch, seed=0, epoch=epoch):
            soft = None if self.source is None else self.source.label(view.views)
            x = self.spec.normalize(view.views)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            out = self.student(x)
            loss = F.cross_entropy(out.float(), view.targets) if soft is None else ll.soft_label_loss(
                out, soft, view.targets, kind="mse", ce_weight=0.025)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            steps += 1
        if cuda:
            torch.cuda.synchronize(self.device)
        return (time.perf_counter() - t0) / steps


def measure(config: str, batch: int, steps: int, epochs: int, device: torch.device,
            compile: bool = False, f: int = 1) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Timed seconds per step by source, and each source's warm-up epoch (seconds per step: compilation shows
    there)."""
    base, size, classes, head_rank, sizes = CONFIGS[config]
    images, labels = _images(batch * steps, size, classes)
    images, labels = images.to(device), labels.to(device)
    teacher = ll.with_input_spec(build_model("resnet18", classes, low_res=size <= 64, image_size=size).eval(),
                                 ll.InputSpec.imagenet(size))
    runners = {"hard": Runner("hard", classes, size, device), "teacher": Runner(teacher, classes, size, device)}
    for s in sizes:
        projector, _ = bench_projector(base, classes, head_rank, device=torch.device("cpu"),
                                       label_size=None if s == size else s)
        runners[f"projector@{s}"] = Runner(projector, classes, size, device)
    if compile:  # the same projector, compiled (ModelLabels.optimized(compile=True), as train_student takes it)
        native, _ = bench_projector(base, classes, head_rank, device=torch.device("cpu"))
        runners[f"projector@{size} compiled"] = Runner(native, classes, size, device, compile=True)
        runners["teacher compiled"] = Runner(teacher, classes, size, device, compile=True)  # like with like
    augmenter = Augmenter(ll.AugmentConfig.rded(f), classes)
    times: dict[str, list[float]] = {name: [] for name in runners}
    warmup: dict[str, float] = {}
    for e in range(epochs + 1):  # interleaved: every source runs epoch e before any runs e + 1
        for name, runner in runners.items():
            t = runner.epoch(images, labels, augmenter, batch, e)
            if e > 0:
                times[name].append(t)
            else:
                warmup[name] = t
            print(f"{config} batch {batch} epoch {e} {name}: {t:.4f} s/step", flush=True)
    # the projector exactly as train_student gets it (its own run: train_student has no interleaving)
    projector, _ = bench_projector(base, classes, head_rank, device=torch.device("cpu"))
    distilled = ll.DistilledSet(images.cpu(), labels.cpu(), [f"c{i}" for i in range(classes)],
                                [[str(i)] * f * f for i in range(len(labels))], {"patches_per_image": f * f})
    protocol = ll.EvalProtocol.helio(epochs=epochs + 2, batch_size=batch, patches_per_side=f)
    r = ll.train_student(distilled, projector, protocol, device=device, progress=False)
    times["projector via train_student"] = [r.seconds_per_iter]
    return times, warmup


def _row(config: str, batch: int, name: str, ts: list[float], times: dict[str, list[float]]) -> str:
    base, size, classes, _, _ = CONFIGS[config]
    med = statistics.median(ts)
    spread = f"{min(ts):.3f}-{max(ts):.3f}" if len(ts) > 1 else "one run"
    teacher, hard = statistics.median(times["teacher"]), statistics.median(times["hard"])
    return (f"| {base}, {classes} classes, student @ {size} px | {batch} | {name} | {med:.4f} | {spread} | "
            f"{med / teacher:.2f} | {med / hard:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["rn50"], choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, nargs="+", default=[100])
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (at least 20)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per source, after one warm-up epoch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patches-per-side", type=int, default=1, choices=(1, 2),
                        help="RDED's views: f = 1 whole images, f = 2 2 x 2 mosaics (RDED's ImageNet setting)")
    parser.add_argument("--compile", action="store_true",
                        help="add a torch.compile'd projector at the native size and a compiled teacher, with "
                             "their compile times")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows, verdicts = [], []
    load_before = os.getloadavg()[0]
    for config in args.configs:
        for batch in args.batch:
            times, warmup = measure(config, batch, args.steps, args.epochs, device, compile=args.compile,
                                    f=args.patches_per_side)
            rows += [_row(config, batch, name, ts, times) for name, ts in times.items()]
            teacher, hard = statistics.median(times["teacher"]), statistics.median(times["hard"])
            for name in (n for n in times if n.startswith("projector@")):
                p = statistics.median(times[name])
                verdicts.append(f"- {CONFIGS[config][0]}, batch {batch}, {name}: **{p / teacher:.2f} x** the online "
                                f"teacher's step ({p / hard:.2f} x the hard-label step; the teacher's is "
                                f"{teacher / hard:.2f} x).")
            for name in (n for n in times if n.endswith(" compiled")):
                plain = name[:-len(" compiled")]
                eager, compiled = statistics.median(times[plain]), statistics.median(times[name])
                extra = (warmup[name] - compiled) * args.steps
                against = ""
                if name.startswith("projector@") and "teacher compiled" in times:
                    both = compiled / statistics.median(times["teacher compiled"])
                    against = f"; **{both:.2f} x** the compiled teacher's step (both compiled)"
                verdicts.append(f"- {CONFIGS[config][0]}, batch {batch}, {name}: steady step **{compiled / eager:.2f} "
                                f"x** the eager {plain.split('@')[0]}'s{against}; compiling cost {extra:.1f} s once "
                                f"(its warm-up epoch over a steady one).")

    # storage: stored soft labels grow with IPC and epochs; a teacher and an adapter do not
    adapter = bench_projector("RN50-quickgelu", 1000, 128, device=torch.device("cpu"))[0].adapter_nbytes
    teacher_bytes = teacher_nbytes("resnet18", 1000)
    ipcs = [1, 10, 50, 100, 200]
    series = {f"stored fp16 labels, {e} epochs": (ipcs, [soft_label_nbytes(num_classes=1000, ipc=i, epochs=e) for i in ipcs])
              for e in (100, 300)}
    series["ResNet-18 teacher (online)"] = (ipcs, [teacher_bytes] * len(ipcs))
    series["lightlabel adapter (RN50, r8/r128)"] = (ipcs, [adapter] * len(ipcs))
    line_chart(ROOT / "docs" / "storage.png", series, title="ImageNet-1k: extra storage for labels vs IPC",
               xlabel="images per class (IPC)", ylabel="bytes", logx=True, logy=True, yunit="bytes")
    storage_rows = ["| IPC | stored fp16, 100 epochs | stored fp16, 300 epochs | ResNet-18 teacher | adapter | "
                    "stored (300 ep) / adapter |", "|---|---|---|---|---|---|"]
    for i in ipcs:
        s300 = soft_label_nbytes(num_classes=1000, ipc=i, epochs=300)
        storage_rows.append(f"| {i} | {soft_label_nbytes(num_classes=1000, ipc=i, epochs=100):,} | {s300:,} | "
                            f"{teacher_bytes:,} | {adapter:,} | {s300 / adapter:,.0f} |")
    load = ("One GPU." if device.type == "cuda" else
            f"{os.cpu_count()}-core CPU, 1-minute load average {load_before:.2f} before the run and "
            f"{os.getloadavg()[0]:.2f} after it (about {args.threads} is this benchmark alone; more means other jobs "
            f"shared the cores, and the interleaving spreads their load over all sources alike).")
    write_section(f"train-step-{device.type}", f"""
### Student step by label source ({device.type}; ResNet-18 student, CutMix, interleaved epochs)

RDED's views at f = {args.patches_per_side} ({"whole images" if args.patches_per_side == 1 else "2 x 2 mosaics: patches shuffled, then RandomResizedCrop(1/2, 1)"}).
Median seconds per step over {args.epochs} timed epochs of {args.steps} steps per source (after one warm-up epoch),
sources interleaved epoch by epoch; the range is over the timed epochs. Labellers on their fast path
(`ModelLabels.optimized`), random weights (speed does not depend on the values). {load}

| config | batch | labels | s / step (median) | range | vs online teacher | vs hard labels |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{chr(10).join(verdicts)}

#### Storage vs IPC and epochs (ImageNet-1k; ![storage](storage.png))

{chr(10).join(storage_rows)}
""")


if __name__ == "__main__":
    main()
