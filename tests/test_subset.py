"""The random-subset baseline: a seeded draw of real images, usable wherever a distilled set is."""

from __future__ import annotations

import pytest
import torch

import lightlabel as ll
from lightlabel.data import load_image_folder


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


def test_draw_is_seeded_per_class_and_copies_real_images_exactly(cifar_ds):
    subset = ll.random_subset(cifar_ds, 3, seed=0)
    assert subset.images.shape == (30, 3, 32, 32) and subset.images.dtype == torch.uint8
    assert subset.labels.tolist() == [c for c in range(10) for _ in range(3)]
    for image, label, (source,) in zip(subset.images, subset.labels, subset.sources):
        i = cifar_ds.ids.index(source)
        assert cifar_ds.targets[i] == label and torch.equal(cifar_ds.images[i], image)  # the real image, bit-exact
    assert torch.equal(ll.random_subset(cifar_ds, 3, seed=0).images, subset.images)
    other = ll.random_subset(cifar_ds, 3, seed=1)
    assert other.sources != subset.sources and other.fingerprint != subset.fingerprint
    m = subset.manifest
    assert (m["method"], m["ipc"], m["seed"], m["patches_per_image"]) == ("random", 3, 0, 1)
    # one class's draw does not depend on the others: drop class 9 from the pool, classes 0-8 draw the same
    keep = [i for i, t in enumerate(cifar_ds.targets) if t != 9]
    nine = ll.random_subset(cifar_ds.subset(keep), 3, seed=0, class_names=cifar_ds.classes[:9])
    assert nine.sources == subset.sources[:27]


def test_subset_saves_loads_and_trains_a_student(cifar_ds, tmp_path):
    subset = ll.random_subset(cifar_ds, 1, seed=2, image_size=16)
    assert subset.images.shape == (10, 3, 16, 16)
    back = ll.DistilledSet.load(subset.save(tmp_path / "random"))
    assert torch.equal(back.images, subset.images) and back.manifest["method"] == "random"
    result = ll.train_student(back, "hard", ll.EvalProtocol.helio(epochs=1, batch_size=5, student="cifar_resnet20"),
                              val_set=cifar_ds, progress=False)
    assert result.iterations == 2 and 0 <= result.top1 <= 1


@pytest.mark.parametrize("ipc, error", [(0, "`ipc` must be an int >= 1"), (True, "`ipc`"), (2.0, "`ipc`"),
                                        (13, "fewer than `ipc` = 13")])
def test_bad_ipc_is_named(cifar_ds, ipc, error):
    with pytest.raises(ValueError, match=error):
        ll.random_subset(cifar_ds, ipc)


@pytest.mark.parametrize("kwargs, error", [
    (dict(seed=-1), "`seed` must be an int >= 0, got -1"), (dict(seed="a"), "`seed`"),
    (dict(image_size=0), "`image_size` must be an int >= 1 or None, got 0"), (dict(image_size=16.0), "`image_size`"),
    (dict(class_names=["airplane"]), r"labels outside \[0, 1\) for its 1 class names: \[1, 2, 3, 4, 5\]"),
])
def test_bad_settings_are_named_not_ignored(cifar_ds, kwargs, error):
    """Before 0.3, ``image_size=0`` drew full-size images and one class name drew class 0 alone, with no error."""
    with pytest.raises(ValueError, match=error):
        ll.random_subset(cifar_ds, 2, **kwargs)


def test_distill_refuses_labels_outside_its_class_names(cifar_ds):
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        ll.distill_images(cifar_ds, torch.nn.Linear(1, 2), ll.DistillConfig(ipc=1), class_names=["a", "b"])


def test_every_training_set_implements_the_protocol(cifar_ds):
    subset = ll.random_subset(cifar_ds, 1)
    assert isinstance(subset, ll.TrainingSet) and subset.patches_per_side == 1
    mosaic = ll.DistilledSet(subset.images, subset.labels, subset.classes, subset.sources, {"patches_per_image": 4})
    assert mosaic.patches_per_side == 2
    assert ll.train_student.__module__ == "lightlabel.recipes.student"


@pytest.mark.parametrize("labels, classes, manifest, match", [
    ([0, 0, 1, 2], ["a", "b"], {}, r"class indices in \[0, 2\) for 2 classes, got range \[0, 2\]"),
    ([0, 0, 1, -1], ["a", "b"], {}, r"got range \[-1, 1\]"),
    ([0.0, 0.0, 1.0, 1.0], ["a", "b"], {}, "must be integer class indices, got torch.float32"),
    ([0, 0, 1, 1], ["a", "a"], {}, "distinct class names"),
    ([0, 0, 1, 1], ["a", "b"], {"patches_per_image": 3}, "must be a perfect square"),
    ([0, 0, 1, 1], ["a", "b"], {"patches_per_image": 9}, r"\(8, 8\) images do not split into the 3 x 3 grid"),
])
def test_a_distilled_set_refuses_labels_or_a_grid_that_would_train_wrongly(labels, classes, manifest, match):
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=match):
        ll.DistilledSet(images, torch.tensor(labels), classes, [["x"]] * 4, manifest)
    ok = ll.DistilledSet(images, torch.tensor([0, 0, 1, 1], dtype=torch.int32), ["a", "b"], [["x"]] * 4,
                         {"patches_per_image": 4})
    assert ok.labels.dtype == torch.int64 and ok.patches_per_side == 2

