"""GPU correctness: CUDA labelling against CPU, bf16 autocast against fp32, merge, and the recipes on CUDA.

Skipped where no CUDA device is present (CI has none); run them on a GPU machine with ``pytest tests/test_cuda.py``.
Comparisons against CPU run with TF32 off, so that a mismatch is a bug and not TF32's 10-bit mantissa; the bf16
checks compare lightlabel's own autocast path (``ModelLabels``, used by every recipe) with fp32 on the same device.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import CIFAR10_CLASSES, randomize_adapter

import lightlabel as ll
from lightlabel.data import TensorImageDataset, load_image_folder
from lightlabel.labeling.sources import ModelLabels
from lightlabel.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
IMAGENET32 = ll.InputSpec.imagenet(32)


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def resnet56(models_dir):
    return ll.load_teacher(models_dir / "cifar10-resnet56-4bfd9763.th", input_spec=IMAGENET32)


@pytest.fixture(scope="module")
def resnet20_path(models_dir):
    return models_dir / "cifar10-resnet20-12fca82f.th"


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


def test_real_teacher_labels_on_cuda_equal_cpu_and_bf16_keeps_the_argmax(resnet56, cifar_batch):
    views = cifar_batch[0]
    cpu = ModelLabels(copy.deepcopy(resnet56)).label(views)
    gpu = ModelLabels(copy.deepcopy(resnet56).to(CUDA), autocast=False).label(views.to(CUDA))
    bf16 = ModelLabels(copy.deepcopy(resnet56).to(CUDA)).label(views.to(CUDA))
    assert gpu.device.type == "cuda" and gpu.dtype == bf16.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(bf16).all()
    assert _agreement(bf16.cpu(), cpu) >= 0.95, "bf16 autocast must keep the teacher's argmax on real images"
    p, q = F.log_softmax(cpu, 1), F.log_softmax(bf16.cpu(), 1)
    assert F.kl_div(q, p, log_target=True, reduction="batchmean") < 0.02


@pytest.mark.parametrize("which", ["tiny_rn", "tiny_vit"])
def test_projector_on_cuda_equals_cpu_and_merge_equals_unmerged(request, make_projector, which, cifar_batch):
    projector = make_projector(request.getfixturevalue(which), targets=("conv", "linear", "attn")).eval()
    randomize_adapter(projector)
    x = projector.input_spec.normalize(cifar_batch[0])
    with torch.no_grad():
        cpu = projector(x)
        projector.to(CUDA)
        assert projector.device.type == "cuda"
        unmerged = projector(x.to(CUDA))
        projector.merge()
        merged = projector(x.to(CUDA))
        projector.unmerge()
        again = projector(x.to(CUDA))
    torch.testing.assert_close(unmerged.cpu(), cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, unmerged, rtol=1e-5, atol=1e-5)


def test_projector_bf16_labels_are_close_to_fp32(make_projector, cifar_batch):
    projector = make_projector().eval()
    randomize_adapter(projector)
    projector.to(CUDA).merge()
    views = cifar_batch[0].to(CUDA)
    fp32 = ModelLabels(projector, autocast=False).label(views)
    bf16 = ModelLabels(projector).label(views)
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().max()


def test_online_relabeler_on_cuda_labels_the_views_it_returns(make_projector, cifar_batch):
    projector = make_projector().eval()
    randomize_adapter(projector)
    projector.to(CUDA)
    images01, labels = cifar_batch[0].to(CUDA), cifar_batch[1].to(CUDA)
    images = IMAGENET32.normalize(images01)
    relabeler = ll.OnlineRelabeler(projector, mix="cutmix", input_spec=IMAGENET32, seed=0)
    out, soft, targets = relabeler(images, labels)
    assert out.device.type == soft.device.type == targets.device.type == "cuda"
    assert soft.dtype == targets.dtype == torch.float32 and soft.shape == (40, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(40, device=CUDA))
    merged = copy.deepcopy(projector).merge()
    expected = ModelLabels(merged).label(IMAGENET32.denormalize(out))
    torch.testing.assert_close(soft, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())
    assert not projector.merged, "the relabeler must not change the caller's projector"


def test_train_student_on_cuda_with_each_label_source(make_projector, resnet56, tmp_path):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(20, 3, 32, 32, generator=g) * 255).round().to(torch.uint8)
    labels = torch.arange(10).repeat(2)
    distilled = ll.DistilledSet(images, labels, CIFAR10_CLASSES, [[str(i)] for i in range(20)],
                                {"ipc": 2, "patches_per_image": 1})
    protocol = ll.EvalProtocol.helio(patches_per_side=1, epochs=2, batch_size=10, eval_every=1)
    val = TensorImageDataset(images, labels, CIFAR10_CLASSES).with_transform(lambda x: x.float() / 255)
    projector = make_projector()
    before = {k: v.clone() for k, v in projector.state_dict().items()}
    stored = ll.store_soft_labels(images, labels, copy.deepcopy(resnet56).to(CUDA), tmp_path / "stored",
                                  augment=protocol.augment, epochs=2, batch_size=10, seed=0, device=CUDA,
                                  progress=False)
    for source in (projector, resnet56, stored, "hard"):
        result = ll.train_student(distilled, source, protocol, val_set=val, device=CUDA, progress=False)
        assert result.iterations == 4 and 0.0 <= result.top1 <= 1.0
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history if "loss" in h)
        assert result.peak_memory_kind.startswith("cuda") and result.peak_memory_bytes > 0
    after = projector.state_dict()
    assert not projector.merged and all(torch.equal(before[k], after[k]) for k in before)


def test_fit_adapter_on_cuda_changes_only_the_adapter_and_loads_on_cpu(cifar_ds, resnet20_path, tiny_rn, tmp_path):
    reference = ll.Projector(base=tiny_rn[0], pretrained=tiny_rn[1], class_names=CIFAR10_CLASSES,
                             config=ll.AdapterConfig(head_rank=4))
    projector = ll.fit_adapter(cifar_ds, teachers=[resnet20_path], base=tiny_rn[0], pretrained=tiny_rn[1],
                               out_dir=tmp_path / "fit", config=ll.AdapterConfig(head_rank=4),
                               fit=ll.FitConfig(epochs=2, batch_size=20, lr=5e-3, val_fraction=0.2),
                               teacher_input=IMAGENET32, device=CUDA, progress=False)
    history = projector.fit_info["history"]
    assert history[-1]["mse"] < history[0]["mse"], "fitting under bf16 autocast must lower the held-out MSE"
    base_after = {k: v.cpu() for k, v in projector.visual.state_dict().items() if "lora" not in k}
    for k, v in reference.visual.state_dict().items():
        if "lora" not in k:
            assert torch.equal(base_after[k], v), f"base tensor {k} changed during fitting on CUDA"
    adapter = {k: v.cpu() for k, v in projector.adapter_state().items()}
    assert any(not torch.equal(v, reference.adapter_state()[k]) for k, v in adapter.items())
    on_cpu = ll.Projector.from_pretrained(tmp_path / "fit", pretrained=tiny_rn[1], device="cpu").eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(projector.eval()(on_cpu.input_spec.normalize(x).to(CUDA)).cpu(), on_cpu(on_cpu.input_spec.normalize(x)),
                                   rtol=1e-4, atol=1e-4)


def test_factorized_generation_on_cuda_equals_cpu_and_stays_in_range():
    from lightlabel.recipes.factorize import HallucinatorBank

    torch.manual_seed(0)
    bank = HallucinatorBank(count=3, image_size=32)
    x, index = torch.rand(6, 3, 32, 32), torch.tensor([0, 2, 1, 1, 2, 0])
    with torch.no_grad():
        cpu = bank(x, index)
        bank.to(CUDA)
        gpu = bank(x.to(CUDA), index.to(CUDA))
        single = torch.cat([bank(x[i:i + 1].to(CUDA), index[i:i + 1].to(CUDA)) for i in range(6)])
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gpu, single, rtol=1e-5, atol=1e-5)


def test_distill_images_on_cuda_leaves_the_callers_observer_on_the_cpu(cifar_ds, resnet56):
    observer = copy.deepcopy(resnet56)
    out = ll.distill_images(cifar_ds, observer, ipc=1, patches_per_image=1, candidates_per_class=4, crops_per_image=2,
                            image_size=32, device=CUDA, progress=False)
    assert out.images.dtype == torch.uint8 and out.images.shape == (10, 3, 32, 32)
    assert next(observer.parameters()).device.type == "cpu", "the caller's observer must not move"


def test_no_host_sync_in_twenty_labelled_student_steps(make_projector):
    """Issue 31: the step a student loop runs (RDED's 2x2 views, online projector labels, the student's forward,
    backward and AdamW step) never waits for the GPU; torch raises on any synchronising call in sync-debug mode."""
    from lightlabel.labeling.augment import Augmenter, epoch_views
    from lightlabel.labeling.sources import ModelLabels
    from lightlabel.models import build_model

    projector = make_projector()
    randomize_adapter(projector)
    source = ModelLabels(projector).optimized(CUDA)
    student = build_model("resnet18", 10, low_res=True, image_size=32).to(CUDA).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (160, 3, 32, 32), dtype=torch.uint8, device=CUDA)
    labels = (torch.arange(160) % 10).to(CUDA)
    augmenter = Augmenter(ll.AugmentConfig.rded(2), 10)
    spec = ll.InputSpec.imagenet()

    def run(epoch: int) -> None:
        for view in epoch_views(images, labels, augmenter, batch_size=8, seed=0, epoch=epoch):
            soft = source.label(view.views)
            out = student(spec.normalize(view.views).contiguous(memory_format=torch.channels_last))
            loss = ll.soft_label_loss(out, soft, view.targets, kind="mse", ce_weight=0.025)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(0)  # warm-up: cuDNN plans, the cached normalisation constants, the optimiser's state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run(1)  # 20 steps
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("overlap", [False, True])
def test_train_students_own_epoch_has_no_host_sync_but_its_last(make_projector, cifar_ds, overlap):
    """Issue 31, on the real step: ``train_student``'s epoch (views made on the device from the resident images, online
    projector labels, DDP wrapper, forward, backward, AdamW, schedule) runs its 20 batches in sync-debug "error" mode;
    only the end of the epoch (the timing's synchronize and the loss read back) may wait for the GPU."""
    import warnings

    from lightlabel.recipes.student import _fast_source, _StudentRun

    projector = make_projector()
    randomize_adapter(projector)
    distilled = ll.random_subset(cifar_ds, 8, seed=0)  # 80 images: 20 batches of 4
    protocol = ll.EvalProtocol.helio(student="resnet18", batch_size=4, epochs=3, patches_per_side=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 2 x 2 views on 1-patch images: this test wants the costlier views
        run = _StudentRun(distilled, _fast_source(projector, distilled.classes, CUDA), protocol, seed=0, device=CUDA,
                          val_set=None, student_model=None, overlap=overlap)
    original, guarded_batches = run._labelled, []

    def guarded(views, epoch):
        torch.cuda.set_sync_debug_mode("error")
        try:
            for item in original(views, epoch):
                guarded_batches.append(epoch)
                yield item
        finally:
            torch.cuda.set_sync_debug_mode(0)

    run.step(0)  # warm-up: cuDNN plans, the cached normalisation constants, AdamW's state
    run._labelled = guarded
    record = run.step(1)
    assert guarded_batches == [1] * 20 and record["loss"] > 0


def test_relabeler_call_has_no_host_sync(make_projector):
    projector = make_projector().to(CUDA).merge()
    relabeler = ll.OnlineRelabeler(projector, input_spec=IMAGENET32, seed=0, check_every=1000)
    images = IMAGENET32.normalize(torch.rand(16, 3, 32, 32, device=CUDA))
    targets = torch.arange(16, device=CUDA) % 10
    relabeler(images, targets)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(20):
            relabeler(images, targets)
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_teacher_module_under_data_parallel_on_two_gpus_equals_one_module(make_projector, cifar_batch):
    """Issue 32: RDED and SRe2L wrap their teacher in nn.DataParallel; every replica must hold its own merged head."""
    projector = make_projector()
    randomize_adapter(projector)
    spec = ll.InputSpec.cifar10_dd()
    # fp32: under bf16 autocast, batch 40 on one device and 20 + 20 on two may pick kernels that differ by ~1e-2
    teacher = ll.TeacherModule(projector.merge(), input_spec=spec, autocast=False).to(CUDA)
    images = spec.normalize(cifar_batch[0]).to(CUDA)
    single = teacher(images)
    parallel = torch.nn.DataParallel(teacher, device_ids=[0, 1])(images)
    torch.testing.assert_close(parallel, single, rtol=1e-4, atol=1e-4)


def test_overlapped_labelling_on_a_side_stream_gives_the_same_student(make_projector, cifar_ds):
    """Issue 31: labelling the next batch on a side stream while the student trains changes nothing."""
    projector = make_projector()
    randomize_adapter(projector)
    distilled = ll.random_subset(cifar_ds, 4, seed=0)
    protocol = ll.EvalProtocol.helio(student="cifar_resnet20", epochs=2, batch_size=8)
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # so that only the overlap could make the two runs differ
    try:
        runs = [ll.train_student(distilled, projector, protocol, device=CUDA, progress=False, overlap=flag)
                for flag in (False, True)]
    finally:
        torch.backends.cudnn.deterministic = deterministic
    assert [h["loss"] for h in runs[0].history] == pytest.approx([h["loss"] for h in runs[1].history], rel=1e-5)


def test_train_student_runs_under_cudnns_autotuner_and_restores_the_flag(make_projector):
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    distilled = ll.DistilledSet(images, torch.arange(10), CIFAR10_CLASSES, [[str(i)] for i in range(10)],
                                {"ipc": 1, "patches_per_image": 1})
    student = build_model("resnet18", 10, low_res=True, image_size=32)
    seen = []
    student.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.benchmark))
    before = torch.backends.cudnn.benchmark
    ll.train_student(distilled, "hard", ll.EvalProtocol.helio(patches_per_side=1, epochs=1, batch_size=10),
                     student_model=student, device=CUDA, progress=False)
    assert seen and all(seen) and torch.backends.cudnn.benchmark is before


def test_the_optimised_labellers_bf16_weights_give_the_labels_of_autocasts_casts(make_projector, cifar_batch):
    """``optimized("cuda")`` stores the weights autocast would cast on every call (on CPU under CPU autocast the labels
    are bitwise equal: test_fastpath.py); on CUDA the labels must not move either."""
    projector = make_projector()
    randomize_adapter(projector)
    teacher = ll.with_input_spec(build_model("resnet18", 10, low_res=True, image_size=32).eval(), IMAGENET32)
    views = cifar_batch[0][:16].to(CUDA)
    for model in (projector.eval(), teacher):
        f32 = ModelLabels(copy.deepcopy(model)).optimized(CUDA, bf16=False)
        b16 = ModelLabels(copy.deepcopy(model)).optimized(CUDA)
        assert {p.dtype for p in f32.model.parameters()} == {torch.float32}
        assert torch.bfloat16 in {p.dtype for p in b16.model.parameters()}
        torch.testing.assert_close(b16.label(views), f32.label(views), rtol=0, atol=0)
