"""One process of a 2-process gloo job, launched by the tests with ``python -m torch.distributed.run``.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py JOB OUT DATA BASE_CKPT TEACHER

or as two one-process nodes (``--nnodes 2 --nproc-per-node 1 --rdzv-backend c10d``, tests/test_multinode.py).

JOB: fit | distill | relabel | teachers | train. Settings are fixed here; the tests run the same settings in one
process and compare (fit, distill, relabel), or compare two launches of the same world size (train: the per-rank
augmentation streams and BatchNorm statistics make it depend on the number of processes).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

import lightlabel as ll
from lightlabel.data import load_image_folder

IMAGENET32 = ll.InputSpec.imagenet(32)
SETTINGS = {
    "fit": dict(config=ll.AdapterConfig(head_rank=4), fit=ll.FitConfig(epochs=2, batch_size=20, lr=5e-3, val_fraction=0.1),
                teacher_input=IMAGENET32, progress=False),
    "distill": dict(ipc=2, patches_per_image=1, candidates_per_class=6, crops_per_image=3, progress=False),
}


def main(job: str, out: str, data_dir: str, base_ckpt: str, resnet20: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    dataset = load_image_folder(data_dir, progress=False)
    if job == "fit":
        ll.fit_adapter(dataset, teachers=[resnet20], base="lightlabel-tiny-rn", pretrained=base_ckpt, out_dir=out,
                       **SETTINGS["fit"])
    elif job == "distill":
        ll.distill_images(dataset, ll.load_teacher(resnet20, input_spec=IMAGENET32), out_dir=out, **SETTINGS["distill"])
    elif job == "relabel":
        torch.manual_seed(0)  # the same LoRA initialisation on every rank (the relabeler checks the weights agree)
        projector = ll.Projector(base="lightlabel-tiny-rn", pretrained=base_ckpt, class_names=dataset.classes,
                                 config=ll.AdapterConfig(head_rank=4))
        relabeler = ll.OnlineRelabeler(projector, seed=0, input_spec=projector.input_spec)
        index = torch.arange(rank, len(dataset), world)
        labels = relabeler.label(projector.input_spec.normalize(dataset.images[index].float() / 255))
        torch.save({"index": index, "labels": labels}, f"{out}/labels-rank{rank}.pt")
    elif job == "teachers":
        ll.train_teachers(dataset, out_dir=out, arch="cifar_resnet20", epochs=2, save_epochs=[2], batch_size=20,
                          progress=False)
    elif job == "train":
        distilled = ll.distill_images(dataset, ll.load_teacher(resnet20, input_spec=IMAGENET32), **SETTINGS["distill"])
        torch.manual_seed(0)
        projector = ll.Projector(base="lightlabel-tiny-rn", pretrained=base_ckpt, class_names=dataset.classes,
                                 config=ll.AdapterConfig(head_rank=4))
        result = ll.train_student(distilled, projector, student="cifar_resnet20", epochs=2, batch_size=10,
                                  val_set=dataset, out_dir=out, progress=False)  # rank 0 writes student-state.pt
        if rank == 0:
            with open(f"{out}/result.json", "w") as f:
                json.dump({"top1": result.top1, "iterations": result.iterations}, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
