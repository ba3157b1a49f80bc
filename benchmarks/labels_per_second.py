"""Labels per second at batch 100: merged projector vs bare base tower vs unmerged LoRA vs an online ResNet-18
teacher vs reading stored fp16 labels from disk.

    python benchmarks/labels_per_second.py [--configs rn50 tiny] [--batch 100] [--device cpu]

Ratios are measured in the same run. Targets (issue 7): merged / bare >= 0.95 (merging makes LoRA free);
unmerged overhead <= 15 %. Absolute times are only meaningful from a GPU run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision
from _common import bench_projector, timeit, write_section

from lightlabel.models import build_model

CONFIGS = {"rn50": ("RN50-quickgelu", 224, 1000, 128), "tiny": ("lightlabel-tiny-rn", 32, 10, 4)}


def run(name: str, batch: int, device: torch.device, repeat: int) -> dict:
    base, size, classes, head_rank = CONFIGS[name]
    projector, bare = bench_projector(base, classes, head_rank, device=device)
    weight = F.normalize(torch.randn(classes, projector.head.text_weight.shape[1]), dim=-1).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    auto = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
        bare.to(memory_format=torch.channels_last)

    def bare_labels():
        with torch.inference_mode(), auto:
            return 100 * F.normalize(bare(x).float(), dim=-1) @ weight.t()

    def projector_labels():
        with torch.inference_mode(), auto:
            return projector(x, check=False)

    projector.unmerge()
    t_unmerged = timeit(projector_labels, repeat=repeat, device=device)
    projector.merge()
    if device.type == "cuda":
        projector.to(memory_format=torch.channels_last)
    t_merged = timeit(projector_labels, repeat=repeat, device=device)
    t_bare = timeit(bare_labels, repeat=repeat, device=device)
    teacher = (torchvision.models.resnet18(num_classes=classes) if size > 64 else
               build_model("resnet18", classes, low_res=True, image_size=size)).to(device).eval()

    def teacher_labels():
        with torch.inference_mode(), auto:
            return teacher(x).float()

    t_teacher = timeit(teacher_labels, repeat=repeat, device=device)
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i in range(max(repeat + 1, 4)):
        files.append(tmp / f"batch-{i}.safetensors")
        safetensors.torch.save_file({"logits": torch.randn(batch, classes).half(), "crop": torch.zeros(batch, 4, dtype=torch.int16)},
                                    str(files[-1]))
    it = iter(files * 10)

    def stored_labels():
        return safetensors.torch.load_file(str(next(it)))["logits"].to(device).float()

    t_stored = timeit(stored_labels, repeat=repeat, device=device)
    return {"config": name, "base": base, "size": size, "classes": classes, "bare": t_bare, "merged": t_merged,
            "unmerged": t_unmerged, "teacher": t_teacher, "stored": t_stored, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["rn50", "tiny"], choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.configs:
        r = run(name, args.batch, device, args.repeat)
        rows.append(r)
        print(r)
    lines = ["| config | labeller | labels / s | vs bare tower |", "|---|---|---|---|"]
    for r in rows:
        label = f"{r['base']} @ {r['size']} px, {r['classes']} classes"
        for key, name in (("bare", "bare base image tower + zero-shot head"), ("merged", "projector, LoRA merged"),
                          ("unmerged", "projector, LoRA unmerged"), ("teacher", "online ResNet-18 teacher"),
                          ("stored", "stored fp16 labels read from disk")):
            lines.append(f"| {label} | {name} | {r['batch'] / r[key]:,.0f} | {r['bare'] / r[key]:.2f} |")
    summary = "\n".join(
        f"- {r['base']}: merged / bare = **{r['bare'] / r['merged']:.2f}** (target >= 0.95); unmerged LoRA overhead "
        f"**{100 * (r['unmerged'] / r['merged'] - 1):.0f} %** over merged (target <= 15 %)" for r in rows)
    write_section(f"labels-per-second-{device.type}", f"""
### Labels per second ({device.type}, batch {args.batch})

Random base weights and a random non-zero adapter (speed does not depend on the values). Each row is the
median of {args.repeat} timed batches after a warm-up; ratios come from the same run. "Stored" reads one
safetensors file of fp16 logits per batch (page cache warm, so this is a lower bound on disk cost).

{chr(10).join(lines)}

{summary}
""")


if __name__ == "__main__":
    main()
