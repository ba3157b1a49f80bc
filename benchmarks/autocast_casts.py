"""Casts and ops dispatched per labelled batch under bf16 autocast: the optimised labeller with float32 weights
(0.3.0.dev: autocast casts every frozen weight and bias on every call) against bf16 weights stored once
(``ModelLabels.optimized(..., bf16=True)``, the CUDA default).

    python benchmarks/autocast_casts.py [--configs rn50 tiny] [--batch 2]

On a GPU each cast is one kernel launch, and at small labelling sizes the eager labeller is launch-bound (issue
31: RN50 labelling at 128 px took as long as at 160 px at batch 100). The counts are the dispatcher's, the same on
any device, so they are measured here on the CPU under CPU bf16 autocast (``torch.profiler``, one call after a
warm-up). Also checked in the same run: the two give bitwise the same logits. The time each cast costs on a GPU is
measured by ``labels_per_second.py`` (its float32-weight row) where a GPU is lent.
"""

from __future__ import annotations

import argparse
import collections
import copy

import torch
import torchvision
from _common import bench_projector, write_section
from torch.profiler import ProfilerActivity, profile

import lightlabel as ll
from lightlabel.labeling.sources import ModelLabels

CONFIGS = {"rn50": ("RN50-quickgelu", 224, 1000, 128), "tiny": ("lightlabel-tiny-rn", 32, 10, 4)}


def ops(model: torch.nn.Module, x: torch.Tensor) -> collections.Counter:
    """aten ops dispatched by one forward under CPU bf16 autocast (after one warm-up call)."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = model(x)
    return collections.Counter(e.name for e in prof.events() if e.name.startswith("aten::")), out


def run(name: str, batch: int) -> list[dict]:
    base, size, classes, head_rank = CONFIGS[name]
    projector, _ = bench_projector(base, classes, head_rank, device=torch.device("cpu"))
    teacher = torchvision.models.resnet18(num_classes=classes) if size > 64 else \
        ll.models.build_model("resnet18", classes, low_res=True, image_size=size)
    teacher = ll.with_input_spec(teacher.eval(), ll.InputSpec.imagenet(size))
    x = torch.randn(batch, 3, size, size)
    rows = []
    for kind, model in (("projector", projector), ("teacher", teacher)):
        labeller = ModelLabels(copy.deepcopy(model))
        counts = {}
        for bf16 in (False, True):
            counts[bf16] = ops(labeller.optimized("cpu", bf16=bf16).model, x)
        (f32, out32), (b16, out16) = counts[False], counts[True]
        rows.append({"config": name, "base": base, "size": size, "batch": batch, "labeller": kind,
                     "casts": (f32["aten::_to_copy"], b16["aten::_to_copy"]),
                     "ops": (sum(f32.values()), sum(b16.values())), "bitwise_equal": bool(out32.equal(out16))})
        print(rows[-1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["rn50", "tiny"], choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [r for name in args.configs for r in run(name, args.batch)]
    lines = ["| labeller | casts per call: float32 weights | bf16 weights | aten ops per call: float32 weights | "
             "bf16 weights | ratio | logits bitwise equal |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        what = f"{r['labeller']}, {r['base'] if r['labeller'] == 'projector' else 'ResNet-18'} @ {r['size']} px"
        lines.append(f"| {what} | {r['casts'][0]} | {r['casts'][1]} | {r['ops'][0]:,} | {r['ops'][1]:,} | "
                     f"{r['ops'][1] / r['ops'][0]:.2f} | {'yes' if r['bitwise_equal'] else 'NO'} |")
    write_section("autocast-casts", f"""
### Casts per labelled batch under bf16 autocast (dispatcher counts, device-independent)

The optimised labeller (`ModelLabels.optimized`: LoRA and BatchNorm folded, one-token pool, float32 head or
classifier) with its weights in float32, as 0.3.0.dev ran it on CUDA, against its convolution and linear weights
stored in bf16 once (`optimized(device, bf16=True)`, now the CUDA default). Counts from `torch.profiler` over one
call (batch {args.batch}) under CPU bf16 autocast, which dispatches as CUDA autocast does; on a GPU each cast is one
kernel launch. "Ratio": bf16-weight ops over float32-weight ops, measured in the same run.

{chr(10).join(lines)}

Autocast caches its casts only for weights that require grad; a frozen labeller's do not, so every call re-cast
them. The bf16 tensors are the ones autocast made, so the logits are bitwise the same. The GPU time this saves
(launch-bound at small labelling sizes) is not measured here: `labels_per_second.py`'s float32-weight row measures
it where a GPU is lent.
""")


if __name__ == "__main__":
    main()
