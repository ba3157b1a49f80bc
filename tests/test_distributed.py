"""torch.distributed on CPU: 2 gloo processes launched by torchrun give the single-process results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import IMAGENET32, SETTINGS

import lightlabel as ll
from lightlabel.data import load_image_folder

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def _torchrun(job, out, cifar_train, tiny_rn, resnet20_path):
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), job,
           str(out), str(cifar_train), tiny_rn[1], str(resnet20_path)]
    # gloo on CPU processes (a GPU machine may have fewer GPUs than processes)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


def test_fit_on_two_processes_equals_one_process_with_the_same_global_batch(cifar_train, cifar_ds, tiny_rn,
                                                                            resnet20_path, tmp_path):
    _torchrun("fit", tmp_path / "ddp", cifar_train, tiny_rn, resnet20_path)
    single = ll.fit_adapter(cifar_ds, teachers=[resnet20_path],
                            base=tiny_rn[0], pretrained=tiny_rn[1], out_dir=tmp_path / "single", **SETTINGS["fit"])
    _, ddp = ll.read_adapter(tmp_path / "ddp" / "adapter.safetensors")
    ref = single.adapter_state()
    assert ddp.keys() == ref.keys()
    for k, v in ref.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5, msg=k)
    changed = [k for k in ref if not torch.equal(v := ref[k], torch.zeros_like(v))]
    assert "head.lora_B" in changed, "the comparison must be between fitted adapters"
    state = torch.load(tmp_path / "ddp" / "fit-state.pt", weights_only=False)
    assert state["epoch"] == 2 and state["settings"]["world"] == 2


def test_distributed_distillation_equals_single_process(cifar_train, cifar_ds, tiny_rn, resnet20_path, tmp_path):
    _torchrun("distill", tmp_path / "ddp", cifar_train, tiny_rn, resnet20_path)
    teacher = ll.load_teacher(resnet20_path, input_spec=IMAGENET32)
    single = ll.distill_images(cifar_ds, teacher, **SETTINGS["distill"])
    ddp = ll.DistilledSet.load(tmp_path / "ddp" / "distilled")
    assert torch.equal(ddp.images, single.images) and ddp.sources == single.sources and ddp.targets == single.targets


def test_relabeler_labels_on_each_rank_match_single_process(cifar_train, cifar_ds, tiny_rn, resnet20_path, tmp_path):
    _torchrun("relabel", tmp_path, cifar_train, tiny_rn, resnet20_path)
    projector = ll.Projector(base=tiny_rn[0], pretrained=tiny_rn[1], class_names=cifar_ds.classes,
                             config=ll.AdapterConfig(head_rank=4))
    expected = ll.OnlineRelabeler(projector, input_spec=projector.input_spec).label(
        projector.input_spec.normalize(cifar_ds.images.float() / 255))
    for rank in (0, 1):
        part = torch.load(tmp_path / f"labels-rank{rank}.pt")
        torch.testing.assert_close(part["labels"], expected[part["index"]], rtol=1e-5, atol=1e-5)


def test_teachers_and_student_training_run_under_torchrun(cifar_train, tiny_rn, resnet20_path, tmp_path):
    _torchrun("teachers", tmp_path / "teachers", cifar_train, tiny_rn, resnet20_path)
    teacher = ll.load_teacher(tmp_path / "teachers" / "teacher-epoch002.pt")
    assert teacher(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == ["teacher-epoch002.pt", "trainer-state.pt"]
    _torchrun("train", tmp_path / "train", cifar_train, tiny_rn, resnet20_path)
    result = json.loads((tmp_path / "train" / "result.json").read_text())
    scored = result["top1"] * 120  # rank 0 scored the whole 120-image validation set
    assert abs(scored - round(scored)) < 1e-9 and result["iterations"] == 4


def test_labeler_weights_must_match_across_ranks(monkeypatch, make_projector):
    projector = make_projector()
    relabeler = ll.OnlineRelabeler(projector, input_spec=projector.input_spec)
    relabeler._ranks_checked = False
    import torch.distributed as dist

    monkeypatch.setattr("lightlabel.labeling.relabel._world", lambda: (0, 2))
    monkeypatch.setattr(dist, "all_gather_object", lambda out, obj: out.__setitem__(slice(None), [obj, "f" * 64]))
    with pytest.raises(RuntimeError, match="weights differ between processes"):
        relabeler.label(torch.randn(2, 3, 32, 32))


def test_ddp_wraps_only_under_a_process_group():
    """One process: the recipes train the module itself (no DistributedDataParallel, which needs a process group)."""
    from lightlabel.recipes.loop import ddp

    module = torch.nn.Linear(3, 2)
    assert ddp(module, torch.device("cpu")) is module
    assert ddp(module, torch.device("cpu"), sync_buffers=False) is module
