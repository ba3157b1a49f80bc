"""A labeller as a third-party loop's teacher: projector.as_teacher and TeacherModule (issue 32)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import CIFAR10_CLASSES, randomize_adapter
from torch import nn
from torchvision import transforms as T
from torchvision.transforms import v2

import lightlabel as ll

HOST = ll.InputSpec.cifar10_dd()  # DD-Ranking's and SRe2L's CIFAR statistics, 32 px


@pytest.fixture
def projector(make_projector):
    p = make_projector()
    randomize_adapter(p)
    return p.eval()


def _plain_tensors(module: nn.Module) -> list[str]:
    """Tensors a module holds outside its parameters and buffers (DataParallel replicas would not move them)."""
    found = []
    for name, m in module.named_modules():
        for key, value in vars(m).items():
            values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            if key in ("_parameters", "_buffers", "_modules"):
                continue
            if any(isinstance(v, torch.Tensor) for v in values):
                found.append(f"{name}.{key}")
    return found


def test_teacher_module_equals_the_relabelers_labels(projector, cifar_batch):
    images = HOST.normalize(cifar_batch[0])
    relabeler = ll.OnlineRelabeler(projector.merge(), input_spec=HOST, seed=0)
    expected = relabeler.label(images)
    teacher = projector.as_teacher(HOST)
    out = teacher(images)
    assert out.dtype == torch.float32 and out.shape == (40, 10)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_no_gradient_reaches_the_labeller_under_a_loss_that_does_not_detach(projector, cifar_batch):
    teacher = projector.as_teacher(HOST, output="probs")
    student = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    images = HOST.normalize(cifar_batch[0][:8])
    soft = teacher(images)  # DD-Ranking's soft cross-entropy uses the teacher's output as is
    loss = -(soft * F.log_softmax(student(images), -1)).sum(-1).mean()
    loss.backward()
    assert not soft.requires_grad and soft.grad_fn is None
    assert all(p.grad is None for p in teacher.parameters())
    assert student[1].weight.grad is not None


def test_every_tensor_is_a_parameter_or_buffer_and_moves_with_to(projector, make_projector):
    teacher = projector.as_teacher(HOST)
    assert _plain_tensors(teacher) == []
    assert "labeller.head.merged_weight" in dict(teacher.named_buffers())
    moved = teacher.to(torch.float64)
    assert {t.dtype for t in moved.buffers() if t.is_floating_point()} == {torch.float64}
    ensemble = ll.TeacherEnsemble([ll.load_teacher("lightlabel:cifar10-resnet20-epoch1"),
                                   ll.load_teacher("lightlabel:cifar10-resnet20-epoch2")]).as_teacher(HOST)
    assert _plain_tensors(ensemble) == []


def test_data_parallel_and_the_global_rng(projector, cifar_batch):
    teacher = projector.as_teacher(HOST)
    images = HOST.normalize(cifar_batch[0][:6])
    expected = teacher(images)
    state = torch.get_rng_state()
    # no GPU: DataParallel calls the module itself; one GPU: it moves the module to cuda:0 and scatters the batch
    out = nn.DataParallel(teacher)(images)
    assert torch.equal(torch.get_rng_state(), state), "a teacher module must not draw random numbers"
    torch.testing.assert_close(out.cpu(), expected, atol=2e-2 if out.is_cuda else 0, rtol=1e-2 if out.is_cuda else 0)
    teacher.train()
    assert teacher.training and not teacher.labeller.training  # the host's .train() never unfreezes the labeller


def test_outputs_temperature_and_scale(projector, cifar_batch):
    images = HOST.normalize(cifar_batch[0][:5])
    logits = projector.as_teacher(HOST)(images)
    probs = projector.as_teacher(HOST, output="probs", temperature=4.0, scale=2.0)(images)
    torch.testing.assert_close(probs, (logits * 2.0 / 4.0).softmax(-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    for bad in (dict(output="log"), dict(temperature=0), dict(scale=-1.0), dict(temperature=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            projector.as_teacher(HOST, **bad)
    with pytest.raises(TypeError, match="input_spec"):
        projector.as_teacher((0.5, 0.5, 0.5))


def test_foreign_input_is_refused_never_relabelled(projector, cifar_batch):
    x = torch.zeros(2, 3, 64, 64)
    with pytest.raises(ValueError, match="as_teacher"):
        projector(x)  # the projector labels 32 px in CLIP's normalisation; a 64 px batch is somebody else's
    with pytest.raises(ValueError, match="host's input_spec says 32x32"):
        projector.as_teacher(HOST)(x)
    with pytest.raises(ValueError, match="as_teacher"):
        ll.OnlineRelabeler(ll.labeling.ModelLabels(projector, input_spec=HOST), input_spec=HOST)
    with pytest.raises(ValueError, match=r"got numpy.ndarray \(2, 3, 32, 32\)"):
        projector.as_teacher(HOST)(torch.zeros(2, 3, 32, 32).numpy())  # not a tensor, and said so


def test_the_host_batch_is_checked_in_the_hosts_terms(projector):
    """A flat grey host batch is valid input: before 0.3 the projector judged the converted batch and warned that it
    was 'not normalised'. Non-finite values and raw 0-255 pixels are still refused, naming the problem."""
    teacher = projector.as_teacher(HOST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert teacher(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
    with pytest.raises(ValueError, match="NaN or Inf"):
        teacher(torch.full((2, 3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="raw 0-255 pixels"):
        teacher(torch.full((2, 3, 32, 32), 200.0))


def test_host_resolution_and_normalisation_are_converted(projector, cifar_batch):
    """A 64 px ImageNet-normalised host batch gives the labels of the same pixels in the projector's own input."""
    pixels = cifar_batch[0][:4]
    host = ll.InputSpec.imagenet(64)
    big = F.interpolate(pixels, size=64, mode="bilinear", antialias=True, align_corners=False)
    out = projector.as_teacher(host)(host.normalize(big))
    expected = projector.merge()(projector.input_spec.prepare(big), check=False)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_to_pixels_hook_for_a_non_affine_host_input(projector, cifar_batch):
    pixels = cifar_batch[0][:4]
    flipped = 1.0 - pixels  # a stand-in for a whitening the host applied instead of Normalize

    teacher = projector.as_teacher(ll.InputSpec((0, 0, 0), (1, 1, 1), 32), to_pixels=lambda x: 1.0 - x)
    expected = projector.as_teacher(ll.InputSpec((0, 0, 0), (1, 1, 1), 32))(pixels)
    torch.testing.assert_close(teacher(flipped), expected)


class ZCA(nn.Module):
    """A ZCA whitening as DD-Ranking fits one (kornia's ZCAWhitening): ``forward`` whitens, ``inverse_transform``
    undoes it; the matrices are buffers."""

    def __init__(self, pixels: torch.Tensor, eps: float = 0.1):
        super().__init__()
        flat = pixels.flatten(1).double()
        mean = flat.mean(0)
        values, vectors = torch.linalg.eigh(torch.cov((flat - mean).T))
        self.register_buffer("mean", mean.float())
        self.register_buffer("whiten", (vectors @ torch.diag((values + eps).rsqrt()) @ vectors.T).float())
        self.register_buffer("unwhiten", (vectors @ torch.diag((values + eps).sqrt()) @ vectors.T).float())

    def forward(self, x):
        return ((x.flatten(1) - self.mean) @ self.whiten).view_as(x)

    def inverse_transform(self, x):
        return (x.flatten(1) @ self.unwhiten + self.mean).view_as(x)


@pytest.mark.parametrize("fit", ["ours", "kornia"])
def test_a_zca_host_labels_through_the_inverse_whitening_and_the_whitening_itself_is_refused(fit, projector,
                                                                                             cifar_batch):
    """DD-Ranking's ``use_zca=True``: the host batch is whitened (with kornia's ZCAWhitening). ``to_pixels=
    zca.inverse_transform`` (a bound method) labels it as the plain pixels; passing the whitening itself would label
    whitened values silently, so the hook's output is checked to be pixels."""
    pixels = cifar_batch[0]
    if fit == "kornia":
        kornia = pytest.importorskip("kornia")  # a test dependency (DD-Ranking imports it)
        zca = kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True).fit(pixels)
    else:
        zca = ZCA(pixels)
    spec = ll.InputSpec((0, 0, 0), (1, 1, 1), 32)
    teacher = projector.as_teacher(spec, to_pixels=zca.inverse_transform)
    expected = projector.as_teacher(spec)(pixels[:8])
    torch.testing.assert_close(teacher(zca(pixels[:8])), expected, rtol=1e-3, atol=1e-3)
    inverse = "unwhiten" if fit == "ours" else "transform_inv"
    assert f"to_pixels_owner.{inverse}" in dict(teacher.named_buffers())  # moves with .to() and DataParallel
    assert getattr(teacher.to(torch.float64).to_pixels_owner, inverse).dtype == torch.float64
    with pytest.raises(ValueError, match=r"not \[0, 1\] pixels: it must undo the host's transform"):
        projector.as_teacher(spec, to_pixels=zca)(zca(pixels[:8]))


def test_a_data_parallel_replica_checks_to_pixels_once_for_all(projector, cifar_batch):
    """DataParallel replicas are shallow copies made on every call; the to_pixels range check (a host sync on an
    accelerator) is done by the first replica and then counts for the module and every later replica."""
    spec = ll.InputSpec((0, 0, 0), (1, 1, 1), 32)
    teacher = projector.as_teacher(spec, to_pixels=lambda x: x)
    replica = teacher._replicate_for_data_parallel()  # what nn.parallel.replicate makes per device
    assert not replica._pixels_state["checked"]
    replica(cifar_batch[0][:2])
    assert teacher._pixels_state["checked"] and teacher._replicate_for_data_parallel()._pixels_state["checked"]
    assert not projector.as_teacher(spec, to_pixels=lambda x: x)._pixels_state["checked"]  # per module, not global


@pytest.mark.parametrize("transform, expected", [
    (T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]), ll.InputSpec.imagenet(224)),
    (T.Compose([T.ToTensor(), T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))]),
     ll.InputSpec.cifar10_dd(None)),
    (v2.Compose([v2.Resize(256), v2.CenterCrop(224), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                 v2.Normalize([0.5] * 3, [0.25] * 3)]), ll.InputSpec((0.5,) * 3, (0.25,) * 3, 224)),
    (v2.Compose([v2.Resize((32, 48)), v2.Compose([v2.ToImage(), v2.Normalize([0.1] * 3, [0.2] * 3)])]),
     ll.InputSpec((0.1,) * 3, (0.2,) * 3, (32, 48))),
    ([T.Resize(64), T.Normalize([0.1] * 3, [0.2] * 3)], ll.InputSpec((0.1,) * 3, (0.2,) * 3, None)),
])
def test_input_spec_from_transform(transform, expected):
    assert ll.InputSpec.from_transform(transform) == expected


@pytest.mark.parametrize("steps", [
    [v2.CenterCrop(224), v2.Resize(64)],
    [v2.RandomCrop((32, 48)), v2.Resize(16)],
    [v2.RandomCrop((48, 32)), v2.Resize(16)],
    [v2.RandomCrop((32, 48)), v2.Resize(16, max_size=20)],
    [v2.RandomResizedCrop(96), v2.Resize([40])],
])
def test_input_spec_from_transform_reads_a_resize_after_a_crop_as_the_transform_makes_it(steps):
    """Before 0.3 ``Resize(int)`` after a crop was ignored: the spec kept the crop's size, and the teacher module
    then refused every correctly sized batch."""
    transform = v2.Compose([*steps, v2.Normalize([0.5] * 3, [0.25] * 3)])
    produced = transform(torch.rand(3, 100, 300)).shape[-2:]
    assert ll.InputSpec.from_transform(transform).image_size == tuple(produced)


def test_two_normalizes_in_a_row_compose_into_the_input_they_produce():
    """Before 0.3 the last Normalize alone was read: the spec then undid only half of what the host did."""
    first, second = v2.Normalize([0.5, 0.4, 0.3], [0.25, 0.5, 2.0]), v2.Normalize([0.1, -0.2, 1.0], [2.0, 4.0, 0.5])
    spec = ll.InputSpec.from_transform(v2.Compose([first, second]))
    pixels = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(spec.normalize(pixels), second(first(pixels)))
    torch.testing.assert_close(spec.denormalize(second(first(pixels))), pixels)


def test_input_spec_from_a_transform_without_normalize_says_what_to_do():
    with pytest.raises(ValueError, match="no Normalize"):
        ll.InputSpec.from_transform(T.Compose([T.ToTensor()]))


def test_calibrate_scale_recovers_a_known_factor(cifar_batch):
    teacher = ll.load_teacher("lightlabel:cifar10-resnet20-epoch3")

    class Flat(nn.Module):  # the same teacher with logits a third as large
        input_spec = teacher.input_spec

        def forward(self, x):
            return teacher(x) / 3

    result = ll.calibrate_scale(Flat(), teacher, cifar_batch[0])
    assert result["scale"] == pytest.approx(3.0, rel=1e-3) and result["kl_after"] < 1e-6 < result["kl_before"]
    assert result["std_ratio"] == pytest.approx(3.0, rel=1e-4)


def test_calibrate_scale_runs_in_eval_mode_and_leaves_the_modules_as_they_were(cifar_batch):
    """A reference left in train mode would label with batch statistics and overwrite its running ones."""
    reference = ll.load_teacher("lightlabel:cifar10-resnet20-epoch3")
    labeller = ll.load_teacher("lightlabel:cifar10-resnet20-epoch3")
    expected = ll.calibrate_scale(labeller, reference, cifar_batch[0][:16])
    reference.train()
    labeller.train()
    labeller.linear.eval()  # a mixed state is restored module by module
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    result = ll.calibrate_scale(labeller, reference, cifar_batch[0][:16])
    assert result == expected
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in state.items())
    assert reference.training and labeller.training and not labeller.linear.training


def test_projector_as_teacher_classes_follow_the_projector(make_projector):
    projector = make_projector(class_names=CIFAR10_CLASSES)
    assert projector.as_teacher(HOST)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_a_host_class_order_the_labeller_does_not_share_is_refused(make_projector):
    projector = make_projector(class_names=CIFAR10_CLASSES)
    host = CIFAR10_CLASSES[1:] + CIFAR10_CLASSES[:1]  # the host numbers the same classes otherwise
    with pytest.raises(ValueError, match=r"the labels of the labeller name the images' 10 classes in a different order"):
        projector.as_teacher(HOST, class_names=host)
    teacher = ll.with_input_spec(ll.models.build_model("cifar_resnet20", 10), ll.InputSpec.cifar10())
    teacher.classes = list(CIFAR10_CLASSES)
    with pytest.raises(ValueError, match=r"restrict_classes\(teacher, \[1, 2, 3, 4, 5, 6, 7, 8, 9, 0\]\)"):
        ll.TeacherEnsemble([teacher]).as_teacher(HOST, class_names=host)
    with pytest.raises(ValueError, match="different order"):
        ll.OnlineRelabeler(teacher, input_spec=HOST, class_names=host)
    reordered = ll.pretrained.restrict_classes(teacher, [1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    assert ll.TeacherModule(reordered, input_spec=HOST, class_names=host)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert projector.remap(host).as_teacher(HOST, class_names=host)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_as_teacher_leaves_the_projector_trainable(projector, cifar_batch):
    teacher = projector.as_teacher(HOST)
    teacher(HOST.normalize(cifar_batch[0][:2]))
    projector.unmerge().train()  # fit further after serving as a teacher (as_teacher merged it)
    loss = projector(projector.input_spec.normalize(cifar_batch[0][:4])).logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in projector.trainable_parameters()]
    assert grads and all(g is not None for g in grads)


def test_to_pixels_module_moves_with_the_teacher_and_bad_hooks_are_refused(projector, cifar_batch):
    class Unwhiten(nn.Module):  # holds its matrix as a buffer, as the docstring asks
        def __init__(self):
            super().__init__()
            self.register_buffer("flip", torch.ones(1, 3, 1, 1))

        def forward(self, x):
            return self.flip - x

    teacher = projector.as_teacher(ll.InputSpec((0, 0, 0), (1, 1, 1), 32), to_pixels=Unwhiten())
    assert "to_pixels.flip" in dict(teacher.named_buffers())
    assert teacher.to(torch.float64).to_pixels.flip.dtype == torch.float64
    with pytest.raises(TypeError, match="to_pixels"):
        projector.as_teacher(HOST, to_pixels=torch.eye(3))


@pytest.mark.parametrize("bad, match", [
    (dict(images=torch.zeros(0, 3, 32, 32)), "images"),
    (dict(images=torch.zeros(4, 32, 32)), "images"),
    (dict(images=torch.zeros(4, 3, 32, 32, dtype=torch.uint8)), "images"),
    (dict(temperature=0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(batch_size=0), "batch_size"),
])
def test_calibrate_scale_refuses_bad_input(bad, match):
    teacher = ll.load_teacher("lightlabel:cifar10-resnet20-epoch3")
    kwargs = dict(images=torch.rand(4, 3, 32, 32)) | bad
    with pytest.raises(ValueError, match=match):
        ll.calibrate_scale(teacher, teacher, **kwargs)


def test_a_host_spec_without_a_size_is_warned_and_resized(projector, cifar_batch):
    sizeless = ll.InputSpec.cifar10_dd(None)
    with pytest.warns(UserWarning, match="no image size"):
        teacher = projector.as_teacher(sizeless)
    big = F.interpolate(cifar_batch[0][:2], size=48, mode="bilinear", antialias=True, align_corners=False)
    assert teacher(sizeless.normalize(big)).shape == (2, 10)


@pytest.mark.parametrize("what", ["projector", "ensemble"])
def test_an_optimized_teacher_module_keeps_bf16_weights_and_labels_as_autocast_does(what, projector, cifar_batch):
    """Under bf16 autocast a frozen labeller's float32 weights are cast on every call; ``optimized()`` stores them in
    bf16 in a copy, with the same labels and options, and leaves the module it came from as it was."""
    if what == "projector":
        teacher = projector.as_teacher(HOST, output="probs", temperature=2.0)
    else:
        teacher = ll.TeacherEnsemble([ll.load_teacher("lightlabel:cifar10-resnet20-epoch1"),
                                      ll.load_teacher("lightlabel:cifar10-resnet20-epoch2")]).as_teacher(
            HOST, output="probs", temperature=2.0)
    images = HOST.normalize(cifar_batch[0][:8])
    fast = teacher.optimized()
    dtypes = lambda m: {p.dtype for p in m.parameters()} | {b.dtype for b in m.buffers()}  # noqa: E731
    assert torch.bfloat16 in dtypes(fast.labeller) and torch.bfloat16 not in dtypes(teacher.labeller)
    assert fast.labeller is not teacher.labeller and _plain_tensors(fast) == []
    assert (fast.output, fast.temperature, fast.scale, fast.input_spec) == ("probs", 2.0, 1.0, HOST)
    out = fast(images)  # under bf16 autocast on the CPU too: its weights need it
    assert out.dtype == torch.float32 and out.shape == (8, 10)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # what the module does under CUDA autocast
        z = (teacher.labeller.merge() if what == "projector" else teacher.labeller)(teacher.convert(images))
    expected = (z.float() / 2.0).softmax(-1)
    if what == "projector":  # a ResNet tower: the stored tensors are the ones autocast made
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
    else:  # the ensemble's copy also has its BatchNorm folded, which moves the bf16 rounding
        torch.testing.assert_close(out, expected, rtol=0, atol=0.05)
    torch.testing.assert_close(out, teacher(images), rtol=0, atol=0.05)  # and the float32 module, to bf16 rounding
