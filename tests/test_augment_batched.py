"""RDED's views made for the whole batch at once: the batched crop against torchvision's per-image
``resized_crop``, the batched crop boxes against torchvision's ``RandomResizedCrop`` distribution, ShufflePatches as a
permutation of whole patches, the parameters' documented keys, shapes and dtypes; and a student run's images moved
to its device once per run, not once per epoch."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torchvision.transforms import v2

import lightlabel as ll
from lightlabel.labeling.augment import Augmenter, crop_boxes, random_permutations, resized_crops


def _per_image(images: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """torchvision, one image at a time (what the batched path replaces)."""
    size = list(images.shape[-2:])
    return torch.stack([v2.functional.resized_crop(img, *map(int, box), size=size, antialias=True)
                        for img, box in zip(images, crop.tolist())])


def _crops(batch: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """Random boxes plus the edge cases: the full image, boxes on each border and corner, 1-pixel boxes."""
    crop = crop_boxes(batch, height, width, (0.05, 1.0), gen)
    edge = torch.tensor([[0, 0, height, width],  # the whole image: the identity
                         [0, 0, 1, 1], [height - 1, width - 1, 1, 1],  # one pixel, in two corners
                         [0, 0, height, 3], [0, width - 3, height, 3],  # full-height strips on the left/right border
                         [0, 0, 2, width], [height - 2, 0, 2, width],  # full-width strips on the top/bottom border
                         [height - 5, width - 4, 5, 4], [1, 2, height - 1, width - 2]])
    return torch.cat([edge, crop])


@pytest.mark.parametrize("height, width", [(32, 32), (64, 64), (24, 40), (7, 5)])
def test_batched_crop_equals_torchvision_per_image(height, width):
    gen = torch.Generator().manual_seed(height * width)
    crop = _crops(40, height, width, gen)
    images = torch.rand(len(crop), 3, height, width, generator=gen)  # noise: neighbours differ by up to 1
    torch.testing.assert_close(resized_crops(images, crop), _per_image(images, crop), rtol=0, atol=1e-5)
    # the same through the public Augmenter (a crop-only configuration replays the given boxes)
    aug = Augmenter(ll.AugmentConfig(shuffle_patches=False, crop_scale=(0.5, 1.0), flip=False, mix="none"), 10)
    views, _ = aug.apply(images, torch.zeros(len(crop), dtype=torch.long), {"crop": crop})
    torch.testing.assert_close(views, _per_image(images, crop), rtol=0, atol=1e-5)
    # a full-image crop is the identity (up to float32 rounding of the sampling coordinates)
    torch.testing.assert_close(resized_crops(images[:1], crop[:1]), images[:1], rtol=0, atol=1e-6)


def test_batched_crop_at_224_px():
    gen = torch.Generator().manual_seed(224)
    crop = _crops(6, 224, 224, gen)
    images = torch.rand(len(crop), 3, 224, 224, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(resized_crops(images, crop), _per_image(images, crop), rtol=0, atol=1e-5)
    # float32: both paths round the sampling coordinates (~2^-24 * 224 px), torchvision included: about 3e-5 apart
    # on noise, each about 2e-5 from the float64 result
    out32, ref32 = resized_crops(images.float(), crop), _per_image(images.float(), crop)
    torch.testing.assert_close(out32, ref32, rtol=0, atol=1e-4)
    torch.testing.assert_close(out32.double(), _per_image(images, crop), rtol=0, atol=5e-5)


def test_batched_crop_rejects_boxes_outside_the_image():
    images = torch.rand(2, 3, 8, 8)
    for bad in ([0, 0, 9, 8], [-1, 0, 4, 4], [0, 5, 4, 4], [0, 0, 0, 4]):
        with pytest.raises(ValueError, match="crop"):
            resized_crops(images, torch.tensor([[0, 0, 8, 8], bad]))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        resized_crops(images, torch.zeros(3, 4, dtype=torch.long))


def _total_variation(a: torch.Tensor, b: torch.Tensor, bins: int = 32) -> float:
    """Total variation distance between the histograms of two int64 samples, in at most ``bins`` equal bins."""
    width = -(-(int(max(a.max(), b.max())) + 1) // bins)
    pa, pb = (torch.bincount(x // width, minlength=bins).double() / len(x) for x in (a, b))
    return 0.5 * float((pa - pb).abs().sum())


@pytest.mark.parametrize("height, width, scale", [(32, 32, (0.5, 1.0)), (20, 30, (0.08, 1.0)), (224, 224, (0.5, 1.0))])
def test_crop_boxes_follow_torchvisions_distribution(height, width, scale):
    n = 20000
    ours = crop_boxes(n, height, width, scale, torch.Generator().manual_seed(0))
    assert ours.dtype == torch.int64 and ours.shape == (n, 4)
    top, left, h, w = ours.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1) & (top + h <= height) & (left + w <= width)).all())
    probe = torch.empty(3, height, width, device="meta")
    rrc = v2.RandomResizedCrop((height, width), scale=scale, antialias=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        theirs = torch.tensor([[p["top"], p["left"], p["height"], p["width"]]
                               for p in (rrc.make_params([probe]) for _ in range(n))])
    # two samples of one distribution: their means differ by sampling noise only (a z-score below 5), and the total
    # variation between their histograms too (about 0.01-0.03 here, as between two torchvision samples). Flooring
    # instead of rounding the box's sides shifts the mean side by about half a pixel: z-scores of 8-10 at 32 px.
    area = lambda c: c[:, 2:3] * c[:, 3:4]  # noqa: E731
    ours, theirs = torch.cat([ours, area(ours)], 1), torch.cat([theirs, area(theirs)], 1)
    for k, name in enumerate(("top", "left", "height", "width", "area")):
        a, b = ours[:, k].double(), theirs[:, k].double()
        z = float((a.mean() - b.mean()).abs() / ((a.var() + b.var()) / n).sqrt())
        assert z < 5, (name, z)
        assert _total_variation(ours[:, k], theirs[:, k]) < 0.05, name


def test_crop_boxes_fall_back_to_torchvisions_central_crop():
    # a 10 x 100 image: no box of 90-100 % of its area has an aspect ratio within (3/4, 4/3)
    ours = crop_boxes(3, 10, 100, (0.9, 1.0), torch.Generator().manual_seed(0))
    rrc = v2.RandomResizedCrop((10, 100), scale=(0.9, 1.0))
    p = rrc.make_params([torch.empty(3, 10, 100, device="meta")])
    assert ours.tolist() == [[p["top"], p["left"], p["height"], p["width"]]] * 3 == [[0, 43, 10, 13]] * 3
    tall = crop_boxes(2, 100, 10, (0.9, 1.0), torch.Generator().manual_seed(0))
    p = rrc.make_params([torch.empty(3, 100, 10, device="meta")])
    assert tall.tolist() == [[p["top"], p["left"], p["height"], p["width"]]] * 2
    with pytest.raises(ValueError, match="scale"):
        crop_boxes(2, 8, 8, (0.9, 0.5), torch.Generator())


def _patch_grid(batch: int, f: int, patch: int) -> torch.Tensor:
    """Images whose every patch is constant and distinct: patch (i, j) of image b holds 1000 b + 10 i + j."""
    v = (1000 * torch.arange(batch)[:, None, None] + 10 * torch.arange(f)[:, None] + torch.arange(f)).float()
    return v.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None].expand(-1, 3, -1, -1).clone()


@pytest.mark.parametrize("f", [2, 3, 4])
def test_batched_shuffle_patches_permute_whole_patches(f):
    batch, patch = 64, 5
    aug = Augmenter(ll.AugmentConfig(patches_per_side=f, crop_scale=None, flip=False, mix="none"), 10)
    params = aug.sample(batch, f * patch, f * patch, torch.Generator().manual_seed(f))
    rows, cols = params["rows"], params["cols"]
    assert rows.shape == cols.shape == (batch, f) and rows.dtype == cols.dtype == torch.int64
    assert torch.equal(rows.sort(1).values, torch.arange(f).expand(batch, f)), "each row is a permutation"
    assert torch.equal(cols.sort(1).values, torch.arange(f).expand(batch, f))
    images = _patch_grid(batch, f, patch)
    views, _ = aug.apply(images, torch.zeros(batch, dtype=torch.long), params)
    blocks = views.unflatten(2, (f, patch)).unflatten(4, (f, patch))  # (B, C, f, patch, f, patch)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks)), "whole patches only"
    got = blocks[:, 0, :, 0, :, 0]  # (B, f, f): the value of each output patch
    want = 1000 * torch.arange(batch)[:, None, None] + 10 * rows[:, :, None] + cols[:, None, :]
    assert torch.equal(got, want.float())
    if f <= 3:  # all f! permutations show up among 64 draws (the draw is not stuck on a few)
        assert len({tuple(r) for r in rows.tolist()}) == math.factorial(f)
    assert random_permutations(0, f, torch.Generator()).shape == (0, f)


def test_rded_parameters_keep_their_documented_form():
    aug = Augmenter(ll.AugmentConfig.rded(2), num_classes=10)
    before = torch.random.get_rng_state()
    params = aug.sample(16, 64, 64, torch.Generator().manual_seed(0))
    assert torch.equal(torch.random.get_rng_state(), before), "the global RNG is left alone"
    again = aug.sample(16, 64, 64, torch.Generator().manual_seed(0))
    assert params.keys() == again.keys() == {"rows", "cols", "crop", "flip", "box", "lam"}
    assert all(torch.equal(params[k], again[k]) for k in params), "the same generator state, the same views"
    spec = {"rows": ((16, 2), torch.int64), "cols": ((16, 2), torch.int64), "crop": ((16, 4), torch.int64),
            "flip": ((16,), torch.bool), "box": ((4,), torch.int64), "lam": ((), torch.float64)}
    for key, (shape, dtype) in spec.items():
        assert params[key].shape == shape and params[key].dtype == dtype and params[key].device.type == "cpu", key
    area = params["crop"][:, 2] * params["crop"][:, 3] / 64 ** 2
    assert float(area.min()) >= 0.45 and float(area.max()) <= 1.0
    views, targets = aug.apply(torch.rand(16, 3, 64, 64), torch.arange(16) % 10, params)
    assert views.shape == (16, 3, 64, 64) and targets.shape == (16, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_apply_on_cuda_matches_cpu_without_a_host_sync():
    aug = Augmenter(ll.AugmentConfig(patches_per_side=2, crop_scale=(0.5, 1.0), mix="none"), num_classes=10)
    images = torch.rand(32, 3, 64, 64)
    targets = torch.softmax(torch.randn(32, 10), 1)
    params = aug.sample(32, 64, 64, torch.Generator().manual_seed(0))
    on_cpu, _ = aug.apply(images, targets, params)
    gpu_images, gpu_targets = images.cuda(), targets.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        on_gpu, _ = aug.apply(gpu_images, gpu_targets, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- resident images
def _toy_sets() -> tuple[ll.DistilledSet, ll.FactorizedSet]:
    from lightlabel.recipes.factorize import HallucinatorBank

    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1] * 4)
    distilled = ll.DistilledSet(images, labels, ["a", "b"], [[str(i)] for i in range(8)], {"patches_per_image": 4})
    return distilled, ll.FactorizedSet(images, labels, ["a", "b"], HallucinatorBank(count=2, image_size=8))


def test_sets_move_to_a_device_once_and_the_callers_set_stays():
    distilled, factorized = _toy_sets()
    assert distilled.to_device("cpu") is distilled and factorized.to_device("cpu") is factorized
    moved = distilled.to_device("meta")
    assert moved.images.device.type == "meta" and distilled.images.device.type == "cpu"
    assert moved.epoch_images(0, 3, "meta") is moved.images, "a resident set copies nothing per epoch"
    moved = factorized.to_device("meta")
    assert moved.bases.device.type == "meta" and all(p.device.type == "meta" for p in moved.hallucinators.parameters())
    assert factorized.bases.device.type == "cpu" and all(p.is_cpu for p in factorized.hallucinators.parameters())
    assert moved.epoch_images(0, 3, "meta").shape == (8, 3, 8, 8)


def test_train_student_moves_the_images_once_per_run():
    calls: list[str] = []

    class Spy(ll.DistilledSet):
        resident = False

        def to_device(self, device):
            calls.append("to_device")
            out = copy.copy(self)
            out.images, out.resident = self.images.clone(), True
            return out

        def epoch_images(self, seed, epoch, device=None):
            calls.append("resident" if self.resident else "caller's set")
            return super().epoch_images(seed, epoch, device)

    distilled, _ = _toy_sets()
    spy = Spy(distilled.images, distilled.labels, distilled.classes, distilled.sources, distilled.manifest)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    ll.train_student(spy, "hard", ll.EvalProtocol.helio(patches_per_side=2), student_model=student, device="cpu",
                     progress=False, epochs=3, batch_size=4)
    assert calls == ["to_device"] + ["resident"] * 3


def test_mixed_targets_come_back_on_the_images_device():
    """A loader's CPU class indices with device images: the mixed targets follow the images (as documented), so the
    loss against device logits does not fail. The meta device stands in for CUDA here."""
    aug = Augmenter(ll.AugmentConfig(shuffle_patches=False, crop_scale=None, flip=False, mix="none"), 10)
    images = torch.rand(4, 3, 8, 8, device="meta")
    for targets in (torch.tensor([0, 1, 2, 3]), torch.full((4, 10), 0.1)):
        views, mixed = aug.apply(images, targets, {})
        assert views.device.type == mixed.device.type == "meta" and mixed.shape == (4, 10)
