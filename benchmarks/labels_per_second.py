"""Labels per second: merged projector vs bare base tower vs unmerged LoRA vs an online ResNet-18 teacher vs
reading stored fp16 labels from disk, and both labellers as ``train_student`` calls them (``ModelLabels.label`` on
their fast path, views as [0, 1] pixels).

    python benchmarks/labels_per_second.py [--configs rn50 tiny] [--batch 100 256] [--device cpu]

Every model row runs on the same memory layout (channels-last on CUDA) under the same autocast. Each figure is the
median over ``--repeat`` timings of ``--calls`` back-to-back batches (one synchronisation per timing), with the
range; the rows take turns, one timing each per round. Ratios are measured in the same run. A second table applies
the merge's rewrites (LoRA, BatchNorm, one-token pool) to the image tower one at a time, to show where merged /
bare goes. Targets: merged / bare >= 0.95 (merging makes LoRA free, issue 7);
RN50 at 224 px through ModelLabels.label on one GPU >= 12,000 labels/s at batch 100 and >= 14,000 at 256 (issue
31). Absolute figures are only meaningful from a GPU run.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import tempfile
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision
from _common import bench_projector, interleaved_timings, write_section

import lightlabel as ll
from lightlabel.core.fastpath import fold_batchnorm
from lightlabel.core.lora import merge_lora
from lightlabel.labeling.sources import ModelLabels
from lightlabel.models import build_model
from lightlabel.recipes.loop import cudnn_autotune

CONFIGS = {"rn50": ("RN50-quickgelu", 224, 1000, 128), "tiny": ("lightlabel-tiny-rn", 32, 10, 4)}


def run(name: str, batch: int, device: torch.device, repeat: int, calls: int) -> dict:
    base, size, classes, head_rank = CONFIGS[name]
    projector, bare = bench_projector(base, classes, head_rank, device=device)
    cuda = device.type == "cuda"
    layout = (lambda m: m.to(memory_format=torch.channels_last)) if cuda else (lambda m: m)  # every row alike
    weight = F.normalize(torch.randn(classes, projector.head.text_weight.shape[1]), dim=-1).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if cuda else x
    auto = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    unmerged, merged = layout(projector), layout(copy.deepcopy(projector).merge())
    # the merge one rewrite at a time, towers only (where merged / bare's time goes): LoRA folded; + BatchNorm folded;
    # + the one-token attention pool (the whole merged tower)
    lora_only = copy.deepcopy(projector)
    merge_lora(lora_only.visual, lora_only.lora_weights)
    bn_folded = copy.deepcopy(lora_only)
    fold_batchnorm(bn_folded.visual, bn_folded.folded_norms)
    towers = {"tower_bare": layout(bare), "tower_lora": layout(lora_only.visual), "tower_bn": layout(bn_folded.visual),
              "tower_merged": merged.visual}
    teacher = layout((torchvision.models.resnet18(num_classes=classes) if size > 64 else
                      build_model("resnet18", classes, low_res=True, image_size=size)).to(device).eval())
    pixels = torch.rand(batch, 3, size, size, device=device)  # views as train_student hands them over
    via_projector = ModelLabels(copy.deepcopy(projector).cpu()).optimized(device)
    via_projector_f32 = ModelLabels(copy.deepcopy(projector).cpu()).optimized(device, bf16=False)  # 0.3.0.dev's
    via_teacher = ModelLabels(ll.with_input_spec(copy.deepcopy(teacher).cpu(), ll.InputSpec.imagenet(size))).optimized(
        device)
    stored_labels = _stored_reader(batch, classes, device, max(repeat + 1, 4))

    def under(fn):
        def call():
            with torch.inference_mode(), auto:
                return fn()
        return call

    fns = {"bare": under(lambda: 100 * F.normalize(bare(x).float(), dim=-1) @ weight.t()),
           "unmerged": under(lambda: unmerged(x, check=False)), "merged": under(lambda: merged(x, check=False)),
           "teacher": under(lambda: teacher(x).float()),
           **{key: under(lambda tower=tower: tower(x)) for key, tower in towers.items()},
           "via_projector": lambda: via_projector.label(pixels), "via_teacher": lambda: via_teacher.label(pixels),
           "via_projector_f32": lambda: via_projector_f32.label(pixels),
           "stored": stored_labels}
    with cudnn_autotune(device):  # as the recipes run (lightlabel.recipes.loop.run_resumable)
        out = interleaved_timings(fns, repeat=repeat, device=device, calls=calls)
    return {"config": name, "base": base, "size": size, "classes": classes, "batch": batch, **out}


def _stored_reader(batch: int, classes: int, device: torch.device, files: int):
    """One safetensors file of fp16 logits read per call, cycling over ``files`` files (page cache warm)."""
    tmp = Path(tempfile.mkdtemp())
    paths = []
    for i in range(files):
        paths.append(tmp / f"batch-{i}.safetensors")
        safetensors.torch.save_file({"logits": torch.randn(batch, classes).half(),
                                     "crop": torch.zeros(batch, 4, dtype=torch.int16)}, str(paths[-1]))
    it = itertools.cycle(paths)
    return lambda: safetensors.torch.load_file(str(next(it)))["logits"].to(device).float()


def _table(rows: list[dict], what: str, baseline: str, label, keys) -> list[str]:
    """Markdown rows: labels per second (median and range) of each ``(key, name)`` and its speed over ``baseline``."""
    med = statistics.median
    out = [f"| config | batch | {what} | labels / s (median) | range | vs bare tower |", "|---|---|---|---|---|---|"]
    for r in rows:
        for key, name in keys:
            lo, hi = r["batch"] / max(r[key]), r["batch"] / min(r[key])
            out.append(f"| {label(r)} | {r['batch']} | {name} | {r['batch'] / med(r[key]):,.0f} | {lo:,.0f}-{hi:,.0f} | "
                       f"{med(r[baseline]) / med(r[key]):.2f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["rn50", "tiny"], choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, nargs="+", default=[100])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="back-to-back batches per timing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in args.configs:
        for batch in args.batch:
            r = run(name, batch, device, args.repeat, args.calls)
            rows.append(r)
            print({k: (statistics.median(v) if isinstance(v, list) else v) for k, v in r.items()})
    med = statistics.median
    lines = _table(rows, "labeller", "bare", lambda r: f"{r['base']} @ {r['size']} px, {r['classes']} classes", (
        ("bare", "bare base image tower + zero-shot head"), ("merged", "projector, LoRA merged"),
        ("unmerged", "projector, LoRA unmerged"), ("teacher", "online ResNet-18 teacher"),
        ("via_projector", "projector as train_student gets it (ModelLabels.label)"),
        ("via_projector_f32", "the same with float32 weights, cast by autocast on every call (0.3.0.dev)"),
        ("via_teacher", "teacher as train_student gets it (ModelLabels.label)"),
        ("stored", "stored fp16 labels read from disk")))
    steps = _table(rows, "image tower (no head)", "tower_bare", lambda r: f"{r['base']} @ {r['size']} px", (
        ("tower_bare", "bare base tower"), ("tower_lora", "LoRA folded into the weights"),
        ("tower_bn", "+ BatchNorm folded into the convolutions"),
        ("tower_merged", "+ one-token attention pool (the merged tower)")))
    summary = "\n".join(
        f"- {r['base']}, batch {r['batch']}: merged / bare = **{med(r['bare']) / med(r['merged']):.2f}** (target >= 0.95); "
        f"unmerged LoRA overhead **{100 * (med(r['unmerged']) / med(r['merged']) - 1):.0f} %** over merged; through "
        f"ModelLabels.label **{r['batch'] / med(r['via_projector']):,.0f}** labels/s, the teacher's "
        f"{r['batch'] / med(r['via_teacher']):,.0f}; stored bf16 weights against float32 ones cast on every call "
        f"**{med(r['via_projector_f32']) / med(r['via_projector']):.2f} x** (1.00 on CPU, where both are float32)"
        for r in rows)
    write_section(f"labels-per-second-{device.type}", f"""
### Labels per second ({device.type})

Random base weights and a random non-zero adapter (speed does not depend on the values). Each figure is the median
of {args.repeat} timings of {args.calls} back-to-back batches after a warm-up (range: the slowest and fastest
timing); the rows take turns, one timing each per round, so a change of clocks or load hits them alike; every
model on the same memory layout, cuDNN's autotuner on (as in the recipes). "Stored" reads one safetensors file of
fp16 logits per batch (page cache warm, so this is a lower bound on disk cost).

{chr(10).join(lines)}

Where the merged projector's time goes: its image tower with the merge's rewrites applied one at a time, against
the bare tower (same run, same turns).

{chr(10).join(steps)}

{summary}
""")


if __name__ == "__main__":
    main()
