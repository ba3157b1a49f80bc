"""Teacher ensemble: one vmapped call (torch.func.stack_module_state + vmap) vs a plain loop over teachers.

    python benchmarks/teacher_ensemble.py [--teachers 9] [--batch 256] [--size 64] [--device cpu]

Measured in one run on the same inputs; also checks that both give the same mean logits.
"""

from __future__ import annotations

import argparse

import torch
from _common import timeit, write_section

import lightlabel as ll
from lightlabel.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", type=int, default=9)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    teachers = []
    for i in range(args.teachers):
        torch.manual_seed(i)
        teachers.append(build_model(args.arch, args.classes, low_res=args.size <= 64, image_size=args.size).eval())
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    loop = ll.TeacherEnsemble(teachers, vectorize=False).to(device)
    vmap = ll.TeacherEnsemble(teachers, vectorize=True).to(device)
    auto = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def run(ens):
        with torch.inference_mode(), auto:
            return ens(x)

    diff = (run(loop).float() - run(vmap).float()).abs().max().item()
    t_loop = timeit(lambda: run(loop), repeat=args.repeat, device=device)
    t_vmap = timeit(lambda: run(vmap), repeat=args.repeat, device=device)
    print(f"loop {t_loop:.3f} s, vmap {t_vmap:.3f} s, max |difference| {diff:.2e}")
    write_section(f"teacher-ensemble-{device.type}", f"""
### Teacher ensemble: vmap vs loop ({device.type})

{args.teachers} x {args.arch} ({args.classes} classes) at {args.size} px, batch {args.batch}, inference:

| ensemble | seconds / batch | speed vs loop |
|---|---|---|
| plain loop over teachers | {t_loop:.3f} | 1.00 |
| one `torch.vmap` call over stacked weights | {t_vmap:.3f} | {t_loop / t_vmap:.2f} |

Largest difference between the two mean logits: {diff:.1e}. `TeacherEnsemble` loops by default on
CPU and CUDA alike (vmap only with `vectorize=True`); here vmap measured {'faster' if t_vmap < t_loop else 'slower'}.
""")


if __name__ == "__main__":
    main()
