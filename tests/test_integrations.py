"""The one-line swap in third-party loops (docs/third-party-loops.md), each run at toy size on the CPU: DD-Ranking's
own soft-label loop, and the teacher calls of RDED, SRe2L (online and chunked) and FKD as their code makes them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

import lightlabel as ll
from lightlabel.core.base import fingerprint
from lightlabel.data import load_image_folder

DDRANKING = "ddranking not installed: pip install --no-deps ddranking==0.2.0 (see docs/third-party-loops.md)"


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


@pytest.fixture(scope="module")
def adapter_projector(cifar_ds):
    """The fitted CIFAR-10 adapter shipped in the package, on the packaged base."""
    return ll.Projector.from_pretrained("lightlabel/cifar10-proxy-rn", class_names=cifar_ds.classes)


def _student() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def test_ddranking_soft_label_loop_mode_m_with_as_teacher(cifar_ds, adapter_projector):
    """DD-Ranking 0.2.0's own train_one_epoch in soft-label mode 'M': its CutMix on the batch, then our teacher."""
    ddranking = pytest.importorskip("ddranking", reason=DDRANKING)
    from ddranking import Cutmix, KLDivergenceLoss
    from ddranking.utils import TensorDataset, build_model, get_lr_scheduler, get_optimizer, train_one_epoch

    host = ll.InputSpec.cifar10_dd()  # DD-Ranking's CIFAR statistics (its utils/data.py)
    images = host.normalize(cifar_ds.images.float() / 255)
    loader = torch.utils.data.DataLoader(TensorDataset(images, cifar_ds.labels), batch_size=20, shuffle=True)
    student = build_model("ConvNet-3", num_classes=10, im_size=(32, 32), device="cpu")
    before = fingerprint(student)
    teacher = adapter_projector.as_teacher(host)
    labeller = fingerprint(teacher)
    optimizer = get_optimizer("sgd", student, 0.01)
    scheduler = get_lr_scheduler("step", optimizer, num_epochs=2, step_size=1)
    for epoch in range(2):
        train_one_epoch(epoch, student, loader, KLDivergenceLoss(temperature=1.0), optimizer, soft_label_mode="M",
                        aug_func=Cutmix({"beta": 1.0}), tea_models=[teacher], lr_scheduler=scheduler, device="cpu")
    assert fingerprint(student) != before, "the student trained on the teacher's labels"
    assert fingerprint(teacher) == labeller and all(p.grad is None for p in teacher.parameters())
    assert ddranking.__name__ == "ddranking"


def test_rded_teacher_call_dataparallel_no_grad_kl_at_t20(cifar_ds, adapter_projector):
    """RDED's validation/main.py: DataParallel teacher, eval, frozen; under no_grad on the CutMixed batch,
    softmax(logits / 20); KL (batchmean) without T^2; ImageNet statistics for CIFAR too."""
    host = ll.InputSpec.imagenet(32)
    teacher = nn.DataParallel(adapter_projector.as_teacher(host)).eval()  # lightlabel: replaces load_model(...)
    for p in teacher.parameters():
        p.requires_grad = False
    student = _student()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    cutmix = v2.CutMix(num_classes=10, alpha=1.0)
    images = host.normalize(cifar_ds.images[:20].float() / 255)
    before = fingerprint(student)
    for _ in range(2):
        mixed, _ = cutmix(images, cifar_ds.labels[:20])
        with torch.no_grad():
            soft = F.softmax(teacher(mixed) / 20.0, dim=1)
        loss = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(student(mixed) / 20.0, dim=1), soft)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss) and fingerprint(student) != before


def test_sre2l_online_teacher_and_chunked_accumulation(cifar_ds, adapter_projector):
    """SRe2L's train_KD.py (teacher output detached) and train_FKD.py's chunks: labelling chunk by chunk gives the
    labels of the whole batch, and the relabeler's augment-once, label-per-chunk route does too."""
    host = ll.InputSpec.imagenet(32)
    teacher = adapter_projector.as_teacher(host)
    images = host.normalize(cifar_ds.images[:24].float() / 255)
    whole = teacher(images).detach()
    chunks = torch.cat([teacher(c).detach() for c in images.chunk(3)])
    torch.testing.assert_close(chunks, whole, rtol=1e-5, atol=1e-5)
    relabeler = ll.OnlineRelabeler(adapter_projector, input_spec=host, seed=0)
    views, targets = relabeler.augment(images, cifar_ds.labels[:24])
    per_chunk = torch.cat([relabeler.label(v) for v in views.chunk(4)])
    torch.testing.assert_close(per_chunk, relabeler.label(views), rtol=1e-5, atol=1e-5)
    assert targets.shape == (24, 10)


def test_fkd_soft_cross_entropy_on_probabilities(cifar_ds, adapter_projector):
    """FKD trains with soft cross-entropy on probabilities (its generator softmaxes at --temp 1)."""
    host = ll.InputSpec.imagenet(32)
    teacher = adapter_projector.as_teacher(host, output="probs")
    images = host.normalize(cifar_ds.images[:10].float() / 255)
    soft = teacher(images)
    torch.testing.assert_close(soft.sum(1), torch.ones(10))
    student = _student()
    loss = torch.sum(-soft * F.log_softmax(student(images), dim=1), dim=1).mean()
    loss.backward()
    assert torch.isfinite(loss) and student[-1].weight.grad is not None


def test_rded_layout_reads_back_in_imagefolder_order(cifar_ds, tmp_path):
    subset = ll.random_subset(cifar_ds, 2, seed=0)
    folder = subset.save(tmp_path / "syn", layout="rded")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [f"{c:05d}" for c in range(10)]
    assert (folder / "classes.txt").read_text().split("\n")[:2] == cifar_ds.classes[:2]
    assert (folder / "00003" / "class00003_id00000.png").is_file()
    host = ImageFolder(str(folder))  # what RDED, DD-Ranking and torchvision read
    assert [t for _, t in host.samples] == subset.targets
    back = ll.DistilledSet.load(folder)
    assert torch.equal(back.images, subset.images) and back.classes == subset.classes
    with pytest.raises(ValueError, match="layout"):
        subset.save(tmp_path / "x", layout="sre2l")
