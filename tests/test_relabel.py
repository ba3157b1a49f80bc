"""OnlineRelabeler: shapes, mixed targets, determinism, teachers, re-normalisation, and errors."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_adapter
from torch import nn

import lightlabel as ll

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET = ll.InputSpec.imagenet()


@pytest.fixture
def projector(make_projector):
    p = make_projector().eval()
    randomize_adapter(p)
    return p


def _normalised(batch, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    images, labels = batch
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (images - m) / s, labels


@pytest.mark.parametrize("mix", ["cutmix", "mixup", "none"])
def test_shapes_dtypes_and_targets_sum_to_one(projector, cifar_batch, mix):
    images, labels = _normalised(cifar_batch)
    relabeler = ll.OnlineRelabeler(projector, mix=mix, input_spec=IMAGENET, seed=0)
    before = {k: v.clone() for k, v in projector.state_dict().items()}
    out_images, soft, targets = relabeler(images, labels)
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    assert soft.shape == (40, 10) and soft.dtype == torch.float32 and not soft.is_inference()
    assert targets.shape == (40, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(40))
    if mix == "none":
        assert torch.equal(targets.argmax(1), labels)
    else:
        assert not torch.equal(out_images, images)
    assert not projector.merged, "the relabeler must not change the caller's projector"
    after = projector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_labels_equal_projector_on_renormalised_images(projector, cifar_batch):
    images01, labels = cifar_batch
    images, _ = _normalised(cifar_batch)
    relabeler = ll.OnlineRelabeler(projector, mix="none", input_spec=IMAGENET)
    _, soft, _ = relabeler(images, labels)
    with torch.no_grad():
        expected = projector(projector.input_spec.normalize(images01))
    torch.testing.assert_close(soft, expected, rtol=1e-4, atol=1e-4)


def test_float64_and_float16_batches_are_labelled_as_their_float32_values(projector, cifar_batch):
    images, labels = _normalised(cifar_batch)
    relabeler = ll.OnlineRelabeler(projector, mix="none", input_spec=IMAGENET)
    expected = relabeler.label(images)
    torch.testing.assert_close(relabeler.label(images.double()), expected, rtol=1e-5, atol=1e-5)
    half = images.half()
    torch.testing.assert_close(relabeler.label(half), relabeler.label(half.float()), rtol=1e-5, atol=1e-5)
    assert relabeler.label(images.double()).dtype == torch.float32


def test_student_resolution_is_resized_for_the_projector(projector, cifar_batch):
    images01, labels = cifar_batch
    big = torch.nn.functional.interpolate(images01, size=64, mode="bilinear")
    out, soft, _ = ll.OnlineRelabeler(projector, mix="none", input_spec=ll.InputSpec((0, 0, 0), (1, 1, 1)), seed=0)(
        big, labels)
    assert out.shape[-1] == 64 and soft.shape == (40, 10)
    with torch.no_grad():
        expected = projector(projector.input_spec.prepare(big))
    torch.testing.assert_close(soft, expected, rtol=1e-4, atol=1e-4)


def test_deterministic_under_seed_and_global_rng_untouched(projector, cifar_batch):
    images, labels = _normalised(cifar_batch)
    kw = dict(augment=ll.AugmentConfig(crop_scale=(0.3, 1.0), flip=True), input_spec=IMAGENET, seed=7)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = ll.OnlineRelabeler(projector, **kw)(images, labels)
    assert torch.equal(torch.random.get_rng_state(), before), "the seeded relabeler must not consume the global RNG"
    b = ll.OnlineRelabeler(projector, **kw)(images, labels)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a[0].shape == (40, 3, 32, 32)
    r = ll.OnlineRelabeler(projector, **kw)
    first, second = r(images, labels), r(images, labels)
    assert not torch.equal(first[0], second[0]), "successive batches must get fresh augmentations"
    resumed = ll.OnlineRelabeler(projector, **kw)
    resumed(images, labels)
    state = resumed.state_dict()
    again = ll.OnlineRelabeler(projector, **kw)
    again.load_state_dict(state)
    assert torch.equal(again(images, labels)[0], second[0])


class _Teacher(nn.Module):
    def __init__(self, seed, spec=IMAGENET):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, 10))
        if spec is not None:
            self.input_spec = spec

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("vectorize", [True, False])
def test_teacher_ensemble_labels_are_mean_logits(cifar_batch, vectorize):
    images, labels = _normalised(cifar_batch)
    teachers = [_Teacher(s) for s in range(3)]
    ensemble = ll.TeacherEnsemble(teachers, vectorize=vectorize)
    assert ensemble.stacked and ensemble.vectorized == vectorize
    assert not ll.TeacherEnsemble(teachers).vectorized, "the default is the loop, measured faster on CPU and CUDA"
    with pytest.warns(DeprecationWarning, match="auto"):
        assert not ll.TeacherEnsemble(teachers, vectorize="auto").vectorized
    relabeler = ll.OnlineRelabeler(ensemble, mix="none", input_spec=IMAGENET)
    _, soft, _ = relabeler(images, labels)
    with torch.no_grad():
        expected = torch.stack([t.eval()(images) for t in teachers]).mean(0)
    torch.testing.assert_close(soft, expected, rtol=1e-5, atol=1e-5)
    _, from_list, _ = ll.OnlineRelabeler(teachers, mix="none", input_spec=IMAGENET)(images, labels)
    torch.testing.assert_close(from_list, expected, rtol=1e-5, atol=1e-5)


def test_teachers_get_their_own_normalisation(cifar_batch):
    """A teacher with other input statistics than the loader's gets its own (the latent bug of 0.1: a list of
    teachers silently got the student's normalisation)."""
    images01, labels = cifar_batch
    cifar = ll.InputSpec.cifar10(None)
    teacher = _Teacher(0, spec=cifar)
    _, soft, _ = ll.OnlineRelabeler([teacher], mix="none", input_spec=IMAGENET)(IMAGENET.normalize(images01), labels)
    with torch.no_grad():
        expected = teacher.eval()(cifar.normalize(images01))
        wrong = teacher(IMAGENET.normalize(images01))
    torch.testing.assert_close(soft, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(soft, wrong, atol=1e-3)
    with pytest.raises(ValueError, match="different inputs"):
        ll.TeacherEnsemble([_Teacher(0, spec=cifar), _Teacher(1)])


def test_an_ensemble_refuses_members_that_disagree_about_the_classes():
    """Averaging logit columns that mean different classes would give silently wrong labels."""
    a, b, c = _Teacher(0), _Teacher(1), _Teacher(2)
    names = [f"c{i}" for i in range(10)]
    a.classes, b.classes, c.classes = names, names[::-1], list(names)
    with pytest.raises(ValueError, match="`teachers` name their classes differently"):
        ll.TeacherEnsemble([a, b])
    assert ll.TeacherEnsemble([a, c]).classes == names
    assert ll.TeacherEnsemble([a, _Teacher(3)]).classes is None  # one member's classes unknown: none claimed
    wide = _Teacher(4)
    wide.net[-1] = nn.Linear(4, 11)
    with pytest.raises(ValueError, match="classifiers of different widths"):
        ll.TeacherEnsemble([_Teacher(0), wide])


def test_works_in_a_training_step_with_amp(projector, cifar_batch):
    images, labels = _normalised(cifar_batch)
    student = _Teacher(0).train()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    relabeler = ll.OnlineRelabeler(projector, input_spec=IMAGENET, seed=0)
    criterion = ll.SoftLabelLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x, soft, y = relabeler(images, labels)
        loss = criterion(student(x), soft, y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_errors(projector, cifar_batch):
    images, labels = _normalised(cifar_batch)
    with pytest.raises(ValueError, match="input normalisation"):
        ll.OnlineRelabeler(_Teacher(0, spec=None), input_spec=IMAGENET)
    with pytest.raises(TypeError, match="input_spec"):
        ll.OnlineRelabeler(projector, input_spec=(IMAGENET_MEAN, IMAGENET_STD))
    with pytest.raises(ValueError, match="mix"):
        ll.OnlineRelabeler(projector, mix="cutout", input_spec=IMAGENET)
    with pytest.raises(ValueError, match="either"):
        ll.OnlineRelabeler(projector, mix="cutmix", augment=ll.AugmentConfig(), input_spec=IMAGENET)
    with pytest.raises(TypeError, match="`labeller` must be a LabelSource"):
        ll.OnlineRelabeler(3.0, input_spec=IMAGENET)
    with pytest.raises(FileNotFoundError, match="projector.safetensors"):
        ll.OnlineRelabeler("projector.safetensors", input_spec=IMAGENET)  # a string names an adapter, teacher, ...
    relabeler = ll.OnlineRelabeler(projector, seed=0, input_spec=IMAGENET)
    with pytest.raises(TypeError, match="float"):
        relabeler((images * 255).to(torch.uint8), labels)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        relabeler(images[:, :1], labels)
    with pytest.raises(ValueError, match=r"class indices in \[0, 10\)"):
        relabeler(images, labels + 5)
    with pytest.raises(ValueError, match="NaN"):
        relabeler(torch.full_like(images, float("nan")), labels)
    with pytest.raises(ValueError, match="NaN"):
        ll.OnlineRelabeler(_Teacher(0), mix="none", input_spec=IMAGENET)(torch.full_like(images, float("nan")), labels)


def test_labeller_argument_and_its_deprecated_name(projector):
    spec = ll.InputSpec.imagenet()
    assert ll.OnlineRelabeler(projector, input_spec=spec).source.model is projector
    with pytest.warns(DeprecationWarning, match="labeller"):
        assert ll.OnlineRelabeler(labels=projector, input_spec=spec).source.model is projector
    with pytest.raises(TypeError, match="labeller"):
        ll.OnlineRelabeler(input_spec=spec)


def test_a_label_source_in_0_2_style_gets_the_hooks(projector):
    """A user's source with only label/extra_bytes/describe and the attributes still works: the hooks default."""
    from lightlabel.labeling.sources import ModelLabels, as_label_source

    inner = ModelLabels(projector)

    class Old:
        kind, num_classes, input_spec = "mine", inner.num_classes, inner.input_spec

        def label(self, views, *, epoch=None, step=None):
            return inner.label(views)

        def extra_bytes(self):
            return 7

        def describe(self):
            return {"kind": "mine"}

    source = as_label_source(Old())
    assert isinstance(source, ll.LabelSource) and source.view_epoch(3) == 3 and source.prepare(None) is None
    assert source.extra_bytes() == 7 and source.kind == "mine"


def test_optimized_labeller_compiles_on_request(projector, cifar_batch):
    """The opt-in compiled fast path labels as the eager one (backend 'eager' here: the wiring, not inductor)."""
    from lightlabel.labeling.sources import ModelLabels

    source = ModelLabels(projector)
    eager = source.optimized("cpu")
    compiled = source.optimized("cpu", compile={"backend": "eager"})
    torch.testing.assert_close(compiled.label(cifar_batch[0][:4]), eager.label(cifar_batch[0][:4]))
    assert compiled.describe() == source.describe() and compiled.extra_bytes() == source.extra_bytes()


def test_train_student_takes_an_optimised_labeller_as_it_is(projector, monkeypatch):
    """A compiled labeller passed to train_student is the one that labels: the recipe does not optimise it again."""
    from lightlabel.labeling.sources import ModelLabels
    from lightlabel.recipes.student import _fast_source

    compiled = ModelLabels(projector).optimized("cpu", compile={"backend": "eager"})
    assert compiled.is_optimized and not ModelLabels(projector).is_optimized
    monkeypatch.setattr(ModelLabels, "optimized", lambda *a, **k: pytest.fail("optimised a second time"))
    assert _fast_source(compiled, projector.class_names, torch.device("cpu")) is compiled
    distilled = ll.random_subset(ll.data.TensorImageDataset(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8),
                                                            torch.arange(20) % 10, list(projector.class_names)), 1)
    result = ll.train_student(distilled, compiled, device="cpu", progress=False, epochs=1, batch_size=10)
    assert result.label_kind == "projector"


def test_teachers_alike_in_shapes_but_not_in_strides_are_not_stacked(cifar_batch):
    """Stacked teachers all run teacher 0's skeleton: a member with another stride would be run wrongly."""
    images, _ = _normalised(cifar_batch)
    a, b = _Teacher(0), _Teacher(1)
    b.net[0].stride = (2, 2)
    ensemble = ll.TeacherEnsemble([a, b])
    assert not ensemble.stacked
    with torch.no_grad():
        torch.testing.assert_close(ensemble(images), (a(images) + b(images)) / 2)
