"""Speed-up of fit_adapter and student training with torch.distributed CPU processes (gloo) vs one process.

    python benchmarks/distributed_speedup.py [--procs 1 2] [--threads-per-proc 1]

Launches ``torchrun --standalone --nproc_per_node N`` on the same job for each N, each process with the same
number of torch threads, and reports wall time per epoch and the speed-up against N = 1. On a GPU machine run
with ``--device cuda``. The job: fit_adapter on 600 real CIFAR-10 images with the real ResNet-20 teacher (tiny
base), then a ResNet-18 student on 100 distilled images with projector labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_root, machine, write_section

JOB = r'''
import json, os, sys, time, torch, torch.distributed as dist
import lightlabel as ll
from lightlabel.data import extract_image_folder, load_image_folder
from lightlabel.testing import save_tiny_base
out, data, models, threads, device = sys.argv[1:6]
torch.set_num_threads(int(threads))
dist.init_process_group("nccl" if device == "cuda" else "gloo")
if device == "cuda":
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
rank = dist.get_rank()
train = load_image_folder(extract_image_folder(f"{data}/cifar10/train.tar.gz", f"{out}/train-{rank}", split="train", per_class=60), progress=False)
base, ckpt = save_tiny_base(f"{out}/base-{rank}")
t0 = time.time()
spec = ll.InputSpec.imagenet(32)
p = ll.fit_adapter(train, teachers=[f"{models}/cifar10-resnet20-12fca82f.th"], teacher_input=spec, base=base,
                   pretrained=str(ckpt), config=ll.AdapterConfig(head_rank=4),
                   fit=ll.FitConfig(epochs=2, batch_size=60, lr=2e-3, val_fraction=0), out_dir=f"{out}/fit",
                   progress=False, device=device)
fit_s = (time.time() - t0) / 2
distilled = ll.distill_images(train, ll.load_teacher(f"{models}/cifar10-resnet56-4bfd9763.th", input_spec=spec), ipc=10, patches_per_image=1,
                              candidates_per_class=20, crops_per_image=2, progress=False, device=device)
t0 = time.time()
r = ll.train_student(distilled, p, student="resnet18", epochs=4, batch_size=100, progress=False, device=device)
student_s = (time.time() - t0) / 4
if rank == 0:
    json.dump({"fit_epoch_s": fit_s, "student_epoch_s": student_s}, open(f"{out}/timing.json", "w"))
dist.destroy_process_group()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads-per-proc", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    script = Path(tempfile.mkdtemp()) / "job.py"
    script.write_text(JOB)
    rows = {}
    for n in args.procs:
        out = Path(tempfile.mkdtemp())
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                        str(script), str(out), str(data_root()), str(data_root().parent / "models"),
                        str(args.threads_per_proc), args.device], check=True, env={**os.environ, "TQDM_DISABLE": "1"})
        rows[n] = {**json.loads((out / "timing.json").read_text()), "wall": time.time() - t0}
        print(n, rows[n])
    one = rows[min(rows)]
    lines = ["| processes | fit_adapter s / epoch | speed-up | student s / epoch | speed-up |", "|---|---|---|---|---|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['fit_epoch_s']:.2f} | {one['fit_epoch_s'] / r['fit_epoch_s']:.2f} x | "
                     f"{r['student_epoch_s']:.2f} | {one['student_epoch_s'] / r['student_epoch_s']:.2f} x |")
    write_section(f"distributed-{args.device}", f"""
### Distributed speed-up ({args.device}, gloo/NCCL via torchrun, {args.threads_per_proc} torch thread(s) per process)

{chr(10).join(lines)}

fit_adapter: 600 CIFAR-10 images per epoch (60 per class), global batch 60; student: ResNet-18 on 100 distilled images, global
batch 100 (one iteration per epoch, split across the processes). {machine()}.
""")


if __name__ == "__main__":
    main()
