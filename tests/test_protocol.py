"""The evaluation protocol: RDED's views, the presets against their sources, the student loop with every label
source, resume, and the label-view diagnostic."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import interrupt_after_save
from torch import nn

import lightlabel as ll
from lightlabel.labeling.augment import Augmenter, epoch_views, shuffle_patches

IMAGENET = ll.InputSpec.imagenet()


def _grid_image(f: int, patch: int = 4) -> torch.Tensor:
    """One (3, f*patch, f*patch) image whose patch (i, j) holds the constant value 10 * i + j."""
    values = torch.arange(f * f, dtype=torch.float32).view(f, f)
    values = 10 * (values // f) + values % f
    return values.repeat_interleave(patch, 0).repeat_interleave(patch, 1).expand(3, -1, -1).clone()


# ---------------------------------------------------------------------------------------------- views
def test_f1_applies_no_crop_and_no_shuffle():
    aug = Augmenter(ll.AugmentConfig.rded(1), num_classes=10)
    assert aug.config.crop_scale is None
    params = aug.sample(8, 32, 32, torch.Generator().manual_seed(0))
    assert not {"crop", "rows", "cols"} & set(params), "at f = 1 RDED's views neither crop nor shuffle"
    no_flip_no_mix = Augmenter(ll.AugmentConfig.rded(1).__class__(flip=False, mix="none"), num_classes=10)
    x = torch.rand(8, 3, 32, 32)
    views, targets = no_flip_no_mix(x, torch.arange(8), torch.Generator().manual_seed(0))
    assert torch.equal(views, x) and torch.equal(targets.argmax(1), torch.arange(8))


def test_shuffle_patches_permutes_whole_patches_only():
    f = 3
    images = torch.stack([_grid_image(f), _grid_image(f) + 100])
    gen = torch.Generator().manual_seed(1)
    rows = torch.stack([torch.randperm(f, generator=gen) for _ in range(2)])
    cols = torch.stack([torch.randperm(f, generator=gen) for _ in range(2)])
    out = shuffle_patches(images, rows, cols)
    for b in range(2):
        for i in range(f):
            for j in range(f):
                block = out[b, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4]
                expected = images[b, 0, 4 * rows[b, i], 4 * cols[b, j]]
                assert torch.equal(block, torch.full_like(block, float(expected))), (b, i, j)
    assert sorted(out[0, 0, ::4, ::4].flatten().tolist()) == sorted(images[0, 0, ::4, ::4].flatten().tolist())
    with pytest.raises(ValueError, match="do not split"):
        shuffle_patches(torch.zeros(1, 3, 10, 10), rows[:1], cols[:1])


def test_rded_views_at_f2_crop_at_least_half_and_keep_the_size():
    config = ll.AugmentConfig.rded(2)
    assert config.crop_scale == (0.5, 1.0) and config.patches_per_side == 2
    aug = Augmenter(config, num_classes=4)
    params = aug.sample(64, 32, 32, torch.Generator().manual_seed(0))
    areas = params["crop"][:, 2] * params["crop"][:, 3] / (32 * 32)
    assert areas.min() >= 0.45 and areas.max() <= 1.0
    views, targets = aug.apply(torch.rand(64, 3, 32, 32), torch.arange(64) % 4, params)
    assert views.shape == (64, 3, 32, 32) and targets.shape == (64, 4)
    torch.testing.assert_close(targets.sum(1), torch.ones(64))


def test_augment_config_errors_name_the_argument():
    for kwargs, match in [({"patches_per_side": 0}, "patches_per_side"), ({"crop_scale": (0.9, 0.5)}, "crop_scale"),
                          ({"mix": "cutout"}, "mix"), ({"alpha": 0}, "alpha")]:
        with pytest.raises(ValueError, match=match):
            ll.AugmentConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- presets
def test_presets_equal_their_sources():
    rded = ll.EvalProtocol.rded(ipc=10, num_classes=10)
    # RDED argument.py / validation/main.py
    assert (rded.epochs, rded.batch_size, rded.lr, rded.weight_decay) == (300, 50, 1e-3, 0.01)
    assert (rded.soft_loss, rded.temperature, rded.ce_weight, rded.schedule) == ("kl", 20.0, 0.0, "rded")
    assert not rded.decay_norm_and_bias and rded.augment == ll.AugmentConfig.rded(1)
    assert rded.eval_epochs() == [250, 260, 270, 280, 290, 300]
    assert rded.total_steps(100) == 600
    assert rded.lr_factor(0, 0, 600) == 1.0
    assert rded.lr_factor(599, 299, 600) == pytest.approx(0.5 * (1 + math.cos(math.pi * 299 / 300 / 2)))
    assert [ll.EvalProtocol.rded(ipc=i, num_classes=10).batch_size for i in (1, 10, 50)] == [10, 50, 100]
    assert ll.EvalProtocol.rded(ipc=10, num_classes=100).batch_size == 100
    assert ll.EvalProtocol.rded(ipc=1, num_classes=1000).batch_size == 20
    assert ll.EvalProtocol.rded(ipc=10, num_classes=4).batch_size == 40, "capped at all the images"
    assert ll.EvalProtocol.rded(ipc=1, num_classes=10, patches_per_side=2).augment.crop_scale == (0.5, 1.0)
    with pytest.raises(ValueError, match="IPC"):
        ll.EvalProtocol.rded(ipc=5, num_classes=10)
    assert ll.EvalProtocol.rded(ipc=5, num_classes=10, batch_size=25).batch_size == 25
    # HeLlO supplementary Table 3
    helio = ll.EvalProtocol.helio()
    assert (helio.epochs, helio.batch_size, helio.lr, helio.soft_loss, helio.ce_weight) == (300, 100, 1e-3, "mse", 0.025)
    assert helio.augment.mix == "cutmix" and helio.augment.alpha == 1.0 and helio.total_steps(100) == 300
    assert helio.lr_factor(150, 150, 300) == pytest.approx(0.5)
    assert ll.EvalProtocol.from_dict(helio.to_dict()) == helio
    with pytest.raises(TypeError, match="unknown EvalProtocol fields"):
        helio.replace(epoch=3)
    with pytest.raises(ValueError, match="schedule"):
        helio.replace(schedule="linear")


# ---------------------------------------------------------------------------------------------- student loop
def _toy_set(per_class: int = 8, size: int = 8, seed: int = 0) -> ll.DistilledSet:
    """Two colour-separable classes: reddish and bluish noise images."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([[200, 40, 40], [40, 40, 200]], dtype=torch.float32)
    images = torch.cat([(base[c].view(1, 3, 1, 1) + 30 * torch.randn(per_class, 3, size, size, generator=g))
                        for c in range(2)]).clamp(0, 255).round().to(torch.uint8)
    labels = torch.arange(2).repeat_interleave(per_class)
    return ll.DistilledSet(images, labels, ["red", "blue"], [[str(i)] for i in range(len(labels))],
                           {"ipc": per_class, "patches_per_image": 1})


class _Tiny(nn.Module):
    """Mean colour -> linear: learns the toy set in a few steps."""

    def __init__(self, num_classes: int = 2, spec: ll.InputSpec | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)
        self.inputs: list[torch.Tensor] = []
        if spec is not None:
            self.input_spec = spec

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.fc(x.mean(dim=(2, 3)))


class _Recorder:
    """A label source that records the views it is given (and labels them with a fixed linear teacher)."""

    kind, num_classes, input_spec = "recorder", 2, ll.InputSpec((0, 0, 0), (1, 1, 1))

    def __init__(self) -> None:
        self.views: list[torch.Tensor] = []
        self.calls: list[tuple[int, int]] = []

    def label(self, views, *, epoch=None, step=None):
        self.views.append(views.clone())
        self.calls.append((epoch, step))
        mean = views.mean(dim=(2, 3))
        return 10 * torch.stack([mean[:, 0] - mean[:, 2], mean[:, 2] - mean[:, 0]], 1)

    def extra_bytes(self):
        return 123

    def describe(self):
        return {"kind": "recorder"}


TOY = dict(epochs=2, batch_size=4, lr=0.2, eval_every=1)


def test_the_labeller_sees_the_students_exact_view():
    distilled, source, student = _toy_set(), _Recorder(), _Tiny()
    result = ll.train_student(distilled, source, student_model=student, device="cpu", progress=False, **TOY)
    assert isinstance(ll.labeling.sources.as_label_source(source), ll.LabelSource)  # 0.2-style: hooks added
    assert source.calls == [(e, s) for e in range(2) for s in range(4)]
    assert len(student.inputs) == len(source.views) == 8
    for seen, view in zip(student.inputs, source.views):
        torch.testing.assert_close(seen, IMAGENET.normalize(view))
    assert result.label_kind == "recorder" and result.extra_storage_bytes == 123 and result.iterations == 8
    first = next(epoch_views(distilled.images, distilled.labels, Augmenter(ll.AugmentConfig.rded(1), 2),
                             batch_size=4, seed=0, epoch=0))
    assert torch.equal(source.views[0], first.views), "the views are epoch_views' (the one source of views)"


def test_a_0_2_style_source_with_hooks_added_copies_and_pickles():
    import copy
    import pickle
    wrapped = ll.labeling.sources.as_label_source(_Recorder())
    for clone in (copy.copy(wrapped), copy.deepcopy(wrapped), pickle.loads(pickle.dumps(wrapped))):
        assert clone.extra_bytes() == 123 and clone.view_epoch(3) == 3 and clone.describe() == {"kind": "recorder"}
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute  # noqa: B018


@pytest.mark.parametrize("labels", ["hard", "recorder"])
def test_student_on_a_separable_toy_set_beats_chance(labels):
    train, val = _toy_set(seed=0), _toy_set(per_class=20, seed=1)
    val_set = [(img.float() / 255, int(y)) for img, y in zip(val.images, val.labels)]
    source = "hard" if labels == "hard" else _Recorder()
    torch.manual_seed(0)
    result = ll.train_student(train, source, student_model=_Tiny(), val_set=val_set, device="cpu", progress=False,
                              **TOY)
    assert result.top1 >= 0.9, f"{labels}: top-1 {result.top1:.2f}, chance is 0.5"
    assert result.best_top1 >= result.top1 and [h["epoch"] for h in result.history] == [1, 2]
    assert result.extra_storage_bytes == (0 if labels == "hard" else 123)


def test_a_val_set_of_other_classes_or_a_bad_seed_is_refused_before_training():
    """Before 0.3 a val set with a third class was scored (top-1 on a class the student cannot name), silently."""
    from lightlabel.data import TensorImageDataset

    train = _toy_set()
    three = TensorImageDataset(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.arange(3), ["red", "blue", "green"])
    with pytest.raises(ValueError, match="`val_set` has 3 classes but the distilled set has 2"):
        ll.train_student(train, "hard", student_model=_Tiny(), val_set=three, device="cpu", progress=False, **TOY)
    outside = [(torch.zeros(3, 8, 8), 0), (torch.zeros(3, 8, 8), 2)]  # no `classes`: the labels are checked
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\) for its 2 class names: \[2\]"):
        ll.train_student(train, "hard", student_model=_Tiny(), val_set=outside, device="cpu", progress=False, **TOY)
    renamed = TensorImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.arange(2), ["cat", "dog"])
    with pytest.warns(UserWarning, match="same order"):
        ll.train_student(train, "hard", student_model=_Tiny(), val_set=renamed, device="cpu", progress=False, **TOY)
    for seed in (-1, "0", 1.0):
        with pytest.raises(ValueError, match="`seed` must be an int >= 0"):
            ll.train_student(train, "hard", student_model=_Tiny(), seed=seed, device="cpu", progress=False, **TOY)


def test_labels_that_name_the_images_classes_in_another_order_are_refused():
    """Before 0.3 only the class count was compared: a teacher whose ``classes`` were the images' in another order
    taught every image another class's label, silently."""
    train = _toy_set()
    teacher = _Tiny(spec=IMAGENET)
    teacher.classes = ["blue", "red"]
    with pytest.raises(ValueError, match=r"a different order \(2 of 2 positions differ, e.g. 0: images 'red', labels "
                                         r"'blue'.*restrict_classes\(teacher, \[1, 0\]\)"):
        ll.train_student(train, teacher, student_model=_Tiny(), device="cpu", progress=False, **TOY)
    with pytest.raises(ValueError, match="different order"):
        ll.label_view_agreement(teacher, train, views=4, device="cpu")
    reordered = ll.pretrained.restrict_classes(teacher, [1, 0])
    assert reordered.classes == ["red", "blue"]
    for fine in (reordered, teacher):  # reordered; or names the check cannot match (it only refuses a permutation)
        if fine is teacher:
            teacher.classes = ["rouge", "bleu"]
        result = ll.train_student(train, fine, student_model=_Tiny(), device="cpu", progress=False, **TOY)
        assert result.iterations == 8


def test_a_projector_in_another_class_order_is_refused_until_remapped(make_projector):
    from lightlabel.labeling.sources import as_label_source

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    projector = make_projector(class_names=names[::-1])
    with pytest.raises(ValueError, match=r"the labels of the projector name the images' 10 classes in a different order.*"
                                         r"projector.remap\(class_names\)"):
        as_label_source(projector, 10, class_names=names)
    assert as_label_source(projector.remap(names), 10, class_names=names).class_names == tuple(names)


def test_teacher_list_labels_use_each_teachers_input_spec():
    """A list of teachers carrying a spec other than the student's gets its own (the 0.1 bug: train_student wrapped
    a list in an ensemble without its statistics, so it silently got the student's)."""
    distilled = _toy_set()
    cifar = ll.InputSpec.cifar10(None)
    teacher = _Tiny(spec=cifar)
    source = ll.labeling.as_label_source([teacher])
    assert source.input_spec == cifar and source.kind == "teachers"
    views = next(epoch_views(distilled.images, distilled.labels, Augmenter(ll.AugmentConfig.rded(1), 2),
                             batch_size=4, seed=0, epoch=0)).views
    with torch.no_grad():
        torch.testing.assert_close(source.label(views), teacher(cifar.normalize(views)))
        assert not torch.allclose(source.label(views), teacher(IMAGENET.normalize(views)), atol=1e-3)
    result = ll.train_student(distilled, [teacher], student_model=_Tiny(), device="cpu", progress=False, **TOY)
    assert result.label_kind == "teachers" and result.extra_storage_bytes == 4 * (3 * 2 + 2)


def test_stored_labels_path_equals_online_teacher(tmp_path):
    distilled, teacher = _toy_set(), _Recorder()
    protocol = ll.EvalProtocol.helio(**TOY)
    stored = ll.store_soft_labels(distilled.images, distilled.labels, teacher, tmp_path / "stored",
                                  augment=protocol.augment, epochs=protocol.epochs, batch_size=protocol.batch_size,
                                  seed=0, device="cpu", progress=False)
    assert stored.extra_bytes() == sum(f.stat().st_size for f in (tmp_path / "stored").iterdir())
    assert stored.extra_bytes() > 8 * 4 * 2 * 2, "the logits alone are 2 epochs x 16 views x 2 classes x 2 bytes"
    torch.manual_seed(0)
    a, b = _Tiny(), _Tiny()
    b.load_state_dict(a.state_dict())
    online = ll.train_student(distilled, _Recorder(), protocol, student_model=a, device="cpu", progress=False)
    replay = ll.train_student(distilled, stored, protocol, student_model=b, device="cpu", progress=False)
    assert replay.label_kind == "stored" and replay.extra_storage_bytes == stored.extra_bytes()
    for h_online, h_replay in zip(online.history, replay.history):
        assert h_replay["loss"] == pytest.approx(h_online["loss"], rel=2e-2)
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=2e-2, atol=2e-3)  # fp16 storage of the logits
    with pytest.raises(ValueError, match="another run .*seed"):
        ll.train_student(distilled, stored, protocol, seed=1, student_model=_Tiny(), device="cpu", progress=False)
    with pytest.raises(ValueError, match="another run .*batch_size"):
        ll.train_student(distilled, stored, protocol.replace(batch_size=8), student_model=_Tiny(), device="cpu",
                         progress=False)
    other = ll.DistilledSet(distilled.images.flip(0), distilled.labels, distilled.classes, distilled.sources)
    with pytest.raises(ValueError, match="images_sha256"):
        ll.train_student(other, stored, protocol, student_model=_Tiny(), device="cpu", progress=False)


def _same_init_students():
    """A factory of `_Tiny` students that all start from one initialisation (seed 0)."""
    torch.manual_seed(0)
    init = _Tiny().state_dict()

    def student():
        m = _Tiny()
        m.load_state_dict(init)
        return m
    return student


def test_student_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    distilled = _toy_set()
    protocol = ll.EvalProtocol.helio(epochs=3, batch_size=4, lr=0.05)
    student = _same_init_students()
    full = student()
    ll.train_student(distilled, "hard", protocol, student_model=full, device="cpu", progress=False,
                     out_dir=tmp_path / "full")
    interrupt_after_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ll.train_student(distilled, "hard", protocol, student_model=student(), device="cpu", progress=False,
                         out_dir=tmp_path / "resumed", save_interval_s=0)
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed" / "student-state.pt", weights_only=False)["epoch"] == 1
    resumed = student()
    result = ll.train_student(distilled, "hard", protocol, student_model=resumed, device="cpu", progress=False,
                              out_dir=tmp_path / "resumed")
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    with pytest.raises(ValueError, match="differing: .*protocol.lr"):
        ll.train_student(distilled, "hard", protocol.replace(lr=0.01), student_model=student(), device="cpu",
                         progress=False, out_dir=tmp_path / "resumed")


def test_student_state_is_saved_at_the_interval_and_a_resume_reruns_the_unsaved_epochs(tmp_path, monkeypatch):
    import lightlabel.recipes.loop as loop

    distilled = _toy_set()
    protocol = ll.EvalProtocol.helio(epochs=5, batch_size=4, lr=0.05)
    student = _same_init_students()
    full = student()
    ll.train_student(distilled, "hard", protocol, student_model=full, device="cpu", progress=False)
    saved, real_save = [], loop.save_state
    monkeypatch.setattr(loop, "save_state", lambda path, state: (saved.append(state["epoch"]), real_save(path, state)))

    def clock(crash_at_read=None):
        reads = iter(range(100))

        def now():  # each read is 10 s after the one before
            n = next(reads)
            if n == crash_at_read:
                raise KeyboardInterrupt("simulated interruption")
            return 10.0 * n
        return now

    ll.train_student(distilled, "hard", protocol, student_model=student(), device="cpu", progress=False,
                     out_dir=tmp_path / "every", save_interval_s=0)
    assert saved == [1, 2, 3, 4, 5], "0 saves after every epoch"
    saved.clear()
    # reads: 0 at the start, 10 and 20 after epochs 1-2 (not due), 30 after epoch 3 (due; the save reads 40),
    # 50 after epoch 4 (10 s since the save); the last epoch is always saved
    monkeypatch.setattr(loop, "_clock", clock())
    ll.train_student(distilled, "hard", protocol, student_model=student(), device="cpu", progress=False,
                     out_dir=tmp_path / "sparse", save_interval_s=25)
    assert saved == [3, 5]
    saved.clear()
    monkeypatch.setattr(loop, "_clock", clock(crash_at_read=5))  # stopped after epoch 4, which is not saved
    with pytest.raises(KeyboardInterrupt):
        ll.train_student(distilled, "hard", protocol, student_model=student(), device="cpu", progress=False,
                         out_dir=tmp_path / "stopped", save_interval_s=25)
    assert saved == [3] and torch.load(tmp_path / "stopped" / "student-state.pt", weights_only=False)["epoch"] == 3
    monkeypatch.undo()
    resumed = student()
    result = ll.train_student(distilled, "hard", protocol, student_model=resumed, device="cpu", progress=False,
                              out_dir=tmp_path / "stopped")
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    for bad in (-1.0, float("nan"), float("inf"), "60"):
        with pytest.raises(ValueError, match="`save_interval_s` must be a finite number of seconds >= 0"):
            ll.train_student(distilled, "hard", protocol, student_model=student(), device="cpu", progress=False,
                             save_interval_s=bad)


def test_label_view_agreement_counts_the_views_the_student_sees():
    distilled = _toy_set()

    class Constant:
        kind, num_classes, input_spec = "constant", 2, ll.InputSpec((0, 0, 0), (1, 1, 1))

        def label(self, views, *, epoch=None, step=None):
            return torch.tensor([[2.0, 0.0]]).expand(views.shape[0], 2)

        def extra_bytes(self):
            return 0

        def describe(self):
            return {"kind": "constant"}

    protocol = ll.EvalProtocol.helio(batch_size=4)
    out = ll.label_view_agreement(Constant(), distilled, protocol, views=8, device="cpu")
    aug = Augmenter(protocol.augment, 2)
    targets = torch.cat([v.targets for e in range(2) for v in epoch_views(distilled.images, distilled.labels, aug,
                                                                           batch_size=4, seed=0, epoch=e)])[:8]
    assert out["views"] == 8
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="`views` must be an int >= 1"):
            ll.label_view_agreement(Constant(), distilled, protocol, views=bad, device="cpu")
    assert out["source_class"] == pytest.approx(float((targets[:, 0] > 0).float().mean()))
    assert out["dominant_class"] == pytest.approx(float((targets.argmax(1) == 0).float().mean()))
    assert out["mean_p_max"] == pytest.approx(float(torch.tensor([2.0, 0.0]).softmax(0).max()))
    q = torch.tensor([2.0, 0.0]).softmax(0)
    assert out["mean_logit_std"] == pytest.approx(float(torch.tensor([2.0, 0.0]).std()))  # sqrt(2)
    assert out["mean_entropy"] == pytest.approx(float(-(q * q.log()).sum()))
    with pytest.raises(ValueError, match="look at no views"):
        ll.label_view_agreement("hard", distilled, protocol)


def test_student_errors():
    distilled = _toy_set()
    with pytest.raises(TypeError, match="unknown EvalProtocol fields"):
        ll.train_student(distilled, "hard", epoch=2)
    with pytest.raises(TypeError, match="LabelSource"):
        ll.train_student(distilled, 3.0)
    with pytest.raises(ValueError, match="3 classes but the images have 2"):
        ll.train_student(distilled, [_Tiny(num_classes=3, spec=IMAGENET)])
    with pytest.raises(ValueError, match="carries no input normalisation"):
        ll.train_student(distilled, _Tiny())


def test_model_labels_to_copies_and_never_moves_the_callers_model():
    from lightlabel.labeling.sources import ModelLabels

    teacher = _Tiny(spec=IMAGENET)
    source = ModelLabels(teacher)
    assert source.to("cpu") is source, "a labeller already on the device is used as it is"
    moved = source.to("meta")
    assert moved is not source and moved.device.type == "meta" and moved.kind == source.kind
    assert next(teacher.parameters()).device.type == "cpu", "the caller's model must stay where it is"


def test_on_device_copies_a_module_elsewhere_and_keeps_one_already_there():
    from lightlabel.utils import on_device

    module = nn.Linear(2, 2)
    assert on_device(module, "cpu") is module
    moved = on_device(module, "meta")
    assert moved is not module and moved.weight.device.type == "meta" and module.weight.device.type == "cpu"
    relu = nn.ReLU()
    assert on_device(relu, "meta") is relu, "a module without tensors has nothing to move"


def test_overlap_is_ignored_with_a_warning_on_cpu_and_changes_nothing():
    distilled = _toy_set()
    torch.manual_seed(0)
    plain = ll.train_student(distilled, "hard", student_model=_Tiny(), device="cpu", progress=False, **TOY)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="overlap"):
        overlapped = ll.train_student(distilled, "hard", student_model=_Tiny(), device="cpu", progress=False,
                                      overlap=True, **TOY)
    assert [h["loss"] for h in overlapped.history] == [h["loss"] for h in plain.history]


def test_a_protocol_on_another_patch_grid_than_the_sets_is_warned_about(cifar_train):
    from lightlabel.data import load_image_folder

    distilled = ll.random_subset(load_image_folder(cifar_train, progress=False), 1, seed=0)  # whole images: 1 x 1
    protocol = ll.EvalProtocol.helio(patches_per_side=2, epochs=1, batch_size=10, student="cifar_resnet20")
    with pytest.warns(UserWarning, match=r"shuffles patches on a 2 x 2 grid but the set's images hold 1 x 1"):
        ll.train_student(distilled, "hard", protocol, device="cpu", progress=False)


def test_the_0_2_names_still_work_with_a_deprecation_warning():
    """``train_student(labels=)``, ``label_view_agreement(labels=)`` and ``StudentResult.labels`` (lightlabel 0.2)."""
    distilled, teacher = _toy_set(), _Tiny(spec=IMAGENET)
    with pytest.warns(DeprecationWarning, match="labeller"):
        old = ll.train_student(distilled, labels="hard", student_model=_Tiny(), device="cpu", progress=False, **TOY)
    torch.manual_seed(0)
    new = ll.train_student(distilled, "hard", student_model=_Tiny(), device="cpu", progress=False, **TOY)
    with pytest.warns(DeprecationWarning, match="label_kind"):
        assert old.labels == new.label_kind == "hard"
    with pytest.raises(TypeError, match="give `labeller` only"):
        ll.train_student(distilled, "hard", labels="hard", device="cpu", progress=False, **TOY)
    with pytest.warns(DeprecationWarning, match="labeller"):
        a = ll.label_view_agreement(labels=teacher, distilled=distilled, views=8, device="cpu")
    assert a == ll.label_view_agreement(teacher, distilled=distilled, views=8, device="cpu")


def test_recipes_run_under_cudnns_autotuner_on_cuda_and_give_the_callers_setting_back():
    from lightlabel.recipes.loop import cudnn_autotune, run_resumable

    before = torch.backends.cudnn.benchmark
    seen = []
    try:
        for setting in (False, True):
            torch.backends.cudnn.benchmark = setting
            with cudnn_autotune(torch.device("cuda")):  # the flag only: no device is touched
                seen.append(torch.backends.cudnn.benchmark)
            assert torch.backends.cudnn.benchmark is setting
            with cudnn_autotune(torch.device("cpu")):
                assert torch.backends.cudnn.benchmark is setting
        torch.backends.cudnn.benchmark = False
        with pytest.raises(RuntimeError, match="boom"), cudnn_autotune(torch.device("cuda")):
            raise RuntimeError("boom")
        assert torch.backends.cudnn.benchmark is False
        inside = []
        run_resumable(units=2, step=lambda e: inside.append(torch.backends.cudnn.benchmark) or {}, state={},
                   path=None, settings={}, what="t", seed=0, device=torch.device("cpu"))
        assert inside == [False, False] and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before
    assert seen == [True, True]


def test_the_resumable_runner_counts_its_own_units_and_resumes_after_the_last_one_saved(tmp_path):
    from lightlabel.recipes.loop import Accumulator, run_resumable

    done, crash = Accumulator(), [True]

    def step(i):
        if i == 2 and crash:  # the first run stops in unit 2; the resumed one passes
            crash.pop()
            raise RuntimeError("interrupted")
        done.items.append(i)
        return {"value": float(torch.rand(()))}

    kwargs = dict(units=4, step=step, state={"done": done}, path=tmp_path / "state.pt", settings={"lr": 1},
                  what="t", seed=3, device=torch.device("cpu"), unit="chunk")
    with pytest.raises(RuntimeError, match="interrupted"):
        run_resumable(**kwargs)
    done.items = []  # the saved state, not this object, must bring the first two units back
    history = run_resumable(**kwargs)
    assert [r["chunk"] for r in history] == [1, 2, 3, 4] and "epoch" not in history[0]
    assert done.items == [0, 1, 2, 3]
    seen = []  # after_unit(i, history) runs after each unit, with the history so far
    fresh = run_resumable(**{**kwargs, "path": None, "state": {"done": Accumulator()}},
                          after_unit=lambda i, h: seen.append((i, len(h))))
    assert [r["value"] for r in fresh] == [r["value"] for r in history]  # unit i's randomness is (seed, i)'s
    assert seen == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError, match=r"differing: \['lr'\]"):
        run_resumable(**{**kwargs, "settings": {"lr": 2}})
    from lightlabel.recipes.loop import run_epochs

    with pytest.warns(DeprecationWarning, match="run_resumable"):
        old = run_epochs(**{k: v for k, v in kwargs.items() if k != "units"}, epochs=4)
    assert [r["chunk"] for r in old] == [1, 2, 3, 4]  # the 0.2 name resumes the same finished state
    seen.clear()
    with pytest.warns(DeprecationWarning):  # and its after_epoch= is the runner's after_unit=
        run_epochs(**{k: v for k, v in kwargs.items() if k not in ("units", "path")}, path=None, epochs=2,
                   after_epoch=lambda i, h: seen.append(i))
    assert seen == [0, 1]
