"""Time per student training iteration (ResNet-18, CutMix) by label source; how it scales; storage plot.

    python benchmarks/train_step.py [--configs rn50 proxy] [--device cpu]

Uses the library's own student loop (``lightlabel.train_student``) with projector labels (merged,
online), online ResNet-18 teacher labels, stored fp16 labels (written by ``store_soft_labels`` and replayed from
disk), and hard labels. All four see identical batches and augmentation. Targets on CUDA (issue 7): projector step
<= 1.3 x the online-teacher step and below the stored-label step; peak GPU memory below 4004 MiB at batch 100 with
RN50 at 224 px. On CPU only the ratios mean anything.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _common import ROOT, bench_projector, write_section
from _plot import line_chart

import lightlabel as ll
from lightlabel.core.proxy import PROXY_BASE, proxy_available
from lightlabel.models import build_model
from lightlabel.storage import soft_label_nbytes, teacher_nbytes

CONFIGS = {"rn50": ("RN50-quickgelu", 224, 1000, 128), "proxy": (PROXY_BASE, 64, 10, 16),
           "tiny": ("lightlabel-tiny-rn", 32, 10, 4)}


def _distilled(n: int, size: int, classes: int) -> ll.DistilledSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % classes
    return ll.DistilledSet(images, labels, [f"c{i}" for i in range(classes)], [[str(i)] for i in range(n)])


def step_times(config: str, batch: int, iters: int, device: torch.device, classes: int | None = None,
               sources: tuple[str, ...] = ("projector", "teacher", "stored", "hard")) -> dict[str, dict]:
    base, size, default_classes, head_rank = CONFIGS[config]
    classes = classes or default_classes
    projector, _ = bench_projector(base, classes, head_rank, device=device)
    teacher = ll.with_input_spec(build_model("resnet18", classes, low_res=size <= 64, image_size=size).to(device).eval(),
                                 ll.InputSpec.imagenet(size))
    distilled = _distilled(batch, size, classes)
    epochs = iters + 2  # one iteration per epoch; the first two are warm-up
    protocol = ll.EvalProtocol.helio(epochs=epochs, batch_size=batch)
    out = {}
    for source in sources:
        if source == "projector":
            labels = projector
        elif source == "teacher":
            labels = teacher
        elif source == "hard":
            labels = "hard"
        else:
            labels = ll.store_soft_labels(distilled.images, distilled.labels, teacher, tempfile.mkdtemp(),
                                          augment=protocol.augment, epochs=epochs, batch_size=batch, device=device,
                                          progress=False)
        r = ll.train_student(distilled, labels, protocol, device=device, progress=False)
        out[source] = {"seconds": r.seconds_per_iter, "peak": r.peak_memory_bytes, "extra": r.extra_storage_bytes}
        print(config, batch, classes, source, out[source])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["rn50", "proxy" if proxy_available() else "tiny"],
                        choices=sorted(CONFIGS))
    parser.add_argument("--scaling-config", default="proxy" if proxy_available() else "tiny", choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"

    lines = ["| config | labels | s / iteration | vs online teacher | extra storage (bytes) | peak memory |",
             "|---|---|---|---|---|---|"]
    verdicts = []
    for config in args.configs:
        res = step_times(config, args.batch, args.iters, device)
        base, size, classes, _ = CONFIGS[config]
        for source, r in res.items():
            mem = f"{r['peak'] / 2**20:,.0f} MiB" if gpu else "n/a on CPU"
            lines.append(f"| {base} @ {size} px, {classes} classes | {source} | {r['seconds']:.3f} | "
                         f"{r['seconds'] / res['teacher']['seconds']:.2f} | {r['extra']:,} | {mem} |")
        ratio = res["projector"]["seconds"] / res["teacher"]["seconds"]
        verdicts.append(f"- {base}: projector step = **{ratio:.2f} x** the online-teacher step (target <= 1.3 on "
                        f"CUDA), **{res['projector']['seconds'] / res['stored']['seconds']:.2f} x** the stored-label "
                        f"step (target < 1), hard labels {res['hard']['seconds'] / res['teacher']['seconds']:.2f} x.")

    sc = args.scaling_config
    by_batch = {b: step_times(sc, b, args.iters, device, sources=("projector", "teacher", "hard")) for b in (25, 50, 100, 200)}
    by_classes = {c: step_times(sc, args.batch, args.iters, device, classes=c, sources=("projector", "teacher", "hard"))
                  for c in (10, 100, 1000)}
    scale_rows = ["| scaling | value | projector s/it | teacher s/it | hard s/it |", "|---|---|---|---|---|"]
    for b, r in by_batch.items():
        scale_rows.append(f"| batch size | {b} | {r['projector']['seconds']:.3f} | {r['teacher']['seconds']:.3f} | "
                          f"{r['hard']['seconds']:.3f} |")
    for c, r in by_classes.items():
        scale_rows.append(f"| classes | {c} | {r['projector']['seconds']:.3f} | {r['teacher']['seconds']:.3f} | "
                          f"{r['hard']['seconds']:.3f} |")
    line_chart(ROOT / "docs" / f"step-scaling-{device.type}.png",
               {k: (list(by_batch), [by_batch[b][k]["seconds"] for b in by_batch]) for k in ("projector", "teacher", "hard")},
               title=f"student step vs batch size ({CONFIGS[sc][0]}, {device.type})", xlabel="batch size",
               ylabel="seconds / iteration", logx=True, logy=True)

    # storage: stored soft labels grow with IPC and epochs; a teacher and an adapter do not
    adapter = bench_projector("RN50-quickgelu", 1000, 128, device=torch.device("cpu"))[0].adapter_nbytes
    teacher = teacher_nbytes("resnet18", 1000)
    ipcs = [1, 10, 50, 100, 200]
    series = {f"stored fp16 labels, {e} epochs": (ipcs, [soft_label_nbytes(num_classes=1000, ipc=i, epochs=e) for i in ipcs])
              for e in (100, 300)}
    series["ResNet-18 teacher (online)"] = (ipcs, [teacher] * len(ipcs))
    series["lightlabel adapter (RN50, r8/r128)"] = (ipcs, [adapter] * len(ipcs))
    line_chart(ROOT / "docs" / "storage.png", series, title="ImageNet-1k: extra storage for labels vs IPC",
               xlabel="images per class (IPC)", ylabel="bytes", logx=True, logy=True, yunit="bytes")
    storage_rows = ["| IPC | stored fp16, 100 epochs | stored fp16, 300 epochs | ResNet-18 teacher | adapter | "
                    "stored (300 ep) / adapter |", "|---|---|---|---|---|---|"]
    for i in ipcs:
        s300 = soft_label_nbytes(num_classes=1000, ipc=i, epochs=300)
        storage_rows.append(f"| {i} | {soft_label_nbytes(num_classes=1000, ipc=i, epochs=100):,} | {s300:,} | {teacher:,} | "
                            f"{adapter:,} | {s300 / adapter:,.0f} |")

    write_section(f"train-step-{device.type}", f"""
### Student iteration time by label source ({device.type}, batch {args.batch}, ResNet-18 student, CutMix)

Mean time per iteration after two warm-up epochs (one iteration each), through `lightlabel.train_student`.
Random base weights and images: speed does not depend on the values. All sources see the same batches.
{"Absolute times and memory are from a GPU." if gpu else "CPU run: compare ratios only; peak GPU memory needs a CUDA device (none was available to this run)."}

{chr(10).join(lines)}

{chr(10).join(verdicts)}

#### Scaling ({CONFIGS[sc][0]} at {CONFIGS[sc][1]} px; ![step scaling](step-scaling-{device.type}.png))

{args.iters} iterations per point {"on one GPU, each iteration its own epoch (the per-epoch work is timed too)" if gpu
else "on a shared 2-core CPU"}: differences under ~20 % are timing noise. The
projector's head is one [B, d] x [d, C] matmul, so going from 10 to 1000 classes adds almost nothing.

{chr(10).join(scale_rows)}

#### Storage vs IPC and epochs (ImageNet-1k; ![storage](storage.png))

{chr(10).join(storage_rows)}
""")


if __name__ == "__main__":
    main()
