"""Run one long lightlabel job in a subprocess, so tests can SIGKILL it mid-run and resume it.

    python tests/resume_worker.py JOB OUT_DIR DATA_DIR BASE_CKPT

JOB is "fit", "teachers", "student" (DATA_DIR is then a distilled set) or "distill". All settings are fixed here so the killed run, its resumption and the
uninterrupted reference run are the same job.
"""

from __future__ import annotations

import sys

import torch

import lightlabel as ll
from lightlabel.data import load_image_folder


def main(job: str, out_dir: str, data_dir: str, base_ckpt: str, teacher: str) -> None:
    torch.set_num_threads(1)
    dataset = load_image_folder(data_dir, progress=False)
    if job == "fit":
        ll.fit_adapter(dataset, teachers=[teacher], base="lightlabel-tiny-rn",
                       pretrained=base_ckpt, config=ll.AdapterConfig(head_rank=4),
                       fit=ll.FitConfig(epochs=4, batch_size=16, lr=5e-3, val_fraction=0.1),
                       teacher_input=ll.InputSpec.imagenet(32), out_dir=out_dir, progress=False)
    elif job == "teachers":
        ll.train_teachers(dataset, out_dir=out_dir, arch="cifar_resnet20", epochs=4, save_epochs=[1, 2, 4],
                          batch_size=16, lr=0.05, progress=False)
    elif job == "student":
        distilled = ll.DistilledSet.load(data_dir)
        ll.train_student(distilled, "hard", ll.EvalProtocol.helio(epochs=6, batch_size=10, student="cifar_resnet20"),
                         seed=0, out_dir=out_dir, progress=False)
    elif job == "distill":
        teacher = ll.load_teacher(teacher, input_spec=ll.InputSpec.imagenet(32))
        ll.distill_images(dataset, teacher, ipc=2, patches_per_image=1, candidates_per_class=6, crops_per_image=3,
                          image_size=32, out_dir=out_dir, progress=False)
    else:
        raise SystemExit(f"unknown job {job!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
