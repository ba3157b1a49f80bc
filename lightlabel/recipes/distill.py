"""Distilled images: RDED patch selection and stitching, then HeLlO's Eq. 7 refinement on the projector.

Per class (RDED Sec. 4.2-4.3, Alg. 1; HeLlO Sec. 3.4, Eq. 6-7, supplementary A.5):

1. draw ``candidates_per_class`` images uniformly at random; crop each into ``crops_per_image`` random-resized
   patches; score each patch by its realism score ``-CE(observer(patch), y)`` (HeLlO Eq. 6, RDED Eq. 8) and keep
   each image's best patch;
2. keep the class's top ``patches_per_image * ipc`` patches, group them at random (RDED Eq. 9) and stitch each
   group into one image (a ``k x k`` grid for ``patches_per_image = k^2``);
3. optionally (with a projector) refine the stitched images with Adam to minimise
   ``MSE(E_I(p), E_I(up(down(p))))`` on the projector's image tower (Eq. 7), keeping pixels in [0, 1].

Every class draws its randomness from a generator seeded by ``(seed, class index)`` alone, so results do not
depend on which classes ran before (resumption, sharding across ranks).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..classes import check_class_order, logit_class_names
from ..configs import DistillConfig, config_from
from ..core.base import fingerprint
from ..core.projector import Projector
from ..data import as_dataset, class_names_and_targets, image_size_of
from ..inputs import InputSpec, input_spec_of
from ..models import load_teacher
from ..pretrained import SUBSET_HINT, ClassSubset, imagenet_subset_indices
from ..sets.distilled import DistilledSet
from ..utils.memory import peak_memory_bytes, reset_peak_memory
from ..utils.placement import on_device
from ..utils.progress import progress_bar
from ..utils.seeding import derive_seed
from .loop import Accumulator, is_main_process, resolve_device, run_resumable, world

__all__ = ["DistilledSet", "distill_images", "down_up", "refine_images", "stitch_patches"]

#: Measured on CIFAR-10, IPC 10, 32 px, 1 patch per image, seed 0 (ResNet-56 observer, the 10-epoch proxy-base
#: adapter): HeLlO's Eq. 7 at its published settings drove its loss from 1.52 to 0.0006 by moving the encoder's features
#: of the image and of its down/up-sampled copy together, and took the class evidence with them.
EQ7_ONE_PATCH_WARNING = (
    "refining 1-patch images by Eq. 7: no patch was down-sampled when stitching, so there is no information loss to "
    "compensate. Measured on CIFAR-10 IPC 10 (32 px, 300 Adam steps at lr 0.01) it lowered the projector's own top-1 "
    "on the images from 0.74 to 0.32, the observer's from 1.00 to 0.69, and the student's from 46.1 % to 32.1 %. "
    "Pass refine_steps=0 (or no projector) to keep RDED's images as selected."
)

logger = logging.getLogger(__name__)


def stitch_patches(patches: torch.Tensor, patches_per_image: int) -> torch.Tensor:
    """Stitch groups of ``k * k`` patches into ``k x k`` grids, row-major: patch ``i`` of a group goes to row
    ``i // k``, column ``i % k``.

    Shape:
        - patches: ``(N * k * k, C, h, w)``.
        - returns: ``(N, C, k * h, k * w)``.

    Raises:
        ValueError: ``patches_per_image`` is not a perfect square or does not divide the number of patches.

    Source: RDED Eq. 9.
    """
    k = math.isqrt(patches_per_image)
    if k * k != patches_per_image or patches_per_image < 1:
        raise ValueError(f"`patches_per_image` must be a perfect square (1, 4, 9, ...), got {patches_per_image}")
    if patches.shape[0] % patches_per_image:
        raise ValueError(f"{patches.shape[0]} patches do not split into groups of {patches_per_image}")
    return rearrange(patches, "(n g1 g2) c h w -> n c (g1 h) (g2 w)", g1=k, g2=k)


def down_up(images: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Eq. 7's ``p_hat``: bilinear down-sampling by ``factor`` (antialiased), then back up to the input size.

    Shape: ``(B, C, H, W)`` -> ``(B, C, H, W)``; the detail a ``factor``-fold down-sampling removes is gone.

    Source: HeLlO Eq. 7.
    """
    h, w = images.shape[-2:]
    low = F.interpolate(images, size=(max(1, h // factor), max(1, w // factor)), mode="bilinear", antialias=True,
                        align_corners=False)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def _eq7_loss(p: torch.Tensor, projector: Projector, downsample: int) -> torch.Tensor:
    """``MSE(E_I(p), E_I(up(down(p))))`` for a batch ``p`` of [0, 1] images (HeLlO Eq. 7)."""
    a, b = projector.visual(projector.input_spec.prepare(torch.cat([p, down_up(p, downsample)]))).float().chunk(2)
    return F.mse_loss(a, b)


def refine_images(images: torch.Tensor, projector: Projector, *, steps: int = 300, lr: float = 0.01,
                  downsample: int = 2, batch_size: int = 64, progress: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Refine images so they lose little information through the projector's image tower (HeLlO Eq. 7).

    Minimises ``MSE(E_I(p), E_I(up(down(p))))`` over the pixels ``p`` with Adam, where ``down``/``up`` are bilinear
    resizes by ``downsample`` and ``E_I`` is the projector's (adapted, frozen) image tower. Pixels are clamped to
    [0, 1] after every step.

    Args:
        images: ``(N, 3, H, W)`` float in [0, 1].
        projector: its image tower is the encoder; images are resized to its input size and normalised.
        steps: Adam steps (paper: 300). lr: Adam learning rate (paper: 0.01).
        downsample: the down-sampling factor of ``p_hat``.

    Returns:
        ``(refined images (N, 3, H, W) float in [0, 1], mean Eq. 7 loss before each step and after the last)``.

    Source: HeLlO Eq. 7 and supplementary A.5 (after LIC, Sun et al. 2024).
    """
    device = projector.device
    was_training = projector.training
    grads = [p.requires_grad for p in projector.parameters()]
    projector.eval().requires_grad_(False)  # only the pixels are optimised
    refined, curve = [], torch.zeros(steps + 1)
    for start in range(0, images.shape[0], batch_size):
        p = images[start:start + batch_size].detach().to(device).clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=lr)
        for step in progress_bar(range(steps), desc="refine (Eq. 7)", disable=not progress):
            loss = _eq7_loss(p, projector, downsample)
            curve[step] += float(loss.detach()) * p.shape[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                p.clamp_(0, 1)
        with torch.no_grad():
            curve[steps] += float(_eq7_loss(p, projector, downsample)) * p.shape[0]
        refined.append(p.detach().cpu())
    projector.train(was_training)
    for param, flag in zip(projector.parameters(), grads):
        param.requires_grad_(flag)
    return torch.cat(refined), (curve / images.shape[0]).tolist()


def _source_id(dataset: Dataset, index: int) -> str:
    ids = getattr(dataset, "ids", None)
    if ids is not None:
        return str(ids[index])
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return str(samples[index][0])
    return str(index)


def _as_float(image: Any) -> torch.Tensor:
    return v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)


def _describe(observer: nn.Module) -> dict[str, Any]:
    return {"type": type(observer).__name__, "fingerprint": fingerprint(observer),
            "parameters": sum(p.numel() for p in observer.parameters())}


@torch.no_grad()
def _score(observer: nn.Module, patches: torch.Tensor, label: int, spec: InputSpec, batch_size: int,
           device: torch.device) -> torch.Tensor:
    scores = []
    for start in range(0, patches.shape[0], batch_size):
        x = patches[start:start + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = observer(spec.prepare(x)).float()
        target = torch.full((x.shape[0],), label, device=device)
        scores.append(-F.cross_entropy(logits, target, reduction="none").cpu())
    return torch.cat(scores)


def distill_images(
    train_set: Dataset | str | os.PathLike,
    observer: nn.Module | str | os.PathLike,
    config: DistillConfig | None = None,
    *,
    projector: Projector | None = None,
    class_names: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides: Any,
) -> DistilledSet:
    """Build a distilled set: RDED patch selection and stitching, then optional Eq. 7 refinement.

    Args:
        train_set: the original training set (map-style dataset of ``(PIL or image tensor, int)``, or an
            ImageFolder path).
        observer: any classifier ``nn.Module`` carrying an ``input_spec`` (a teacher from
            :func:`lightlabel.load_teacher`, or a :class:`~lightlabel.Projector`) mapping ``(B, 3, h, w)`` inputs
            to ``(B, C)`` logits; or a checkpoint path or pretrained name, loaded by :func:`~lightlabel.load_teacher`
            (``torchvision:resnet18``, RDED's observer for ImageNet subsets: a 1000-class model is restricted to the
            dataset's classes when its folders are WordNet ids, see
            :func:`lightlabel.pretrained.restrict_classes`; ``timm:<name>``; ``hf-hub:<repo>``). When a projector will label the set, it can observe too (HeLlO Sec. 3.4's
            observer/labeller gap); measured on CIFAR-10 IPC 10 with the projector and the ResNet-56 as observers,
            students under projector labels reached 45.8 % and 45.5 % (3 seeds, spread 0.5-0.6): no clear gain.
        config: the settings (:class:`DistillConfig`); ``overrides`` replace its fields (e.g. ``ipc=1``).
        projector: if given, refine the stitched images on its image tower (Eq. 7).
        class_names: class names (default: ``train_set.classes``).
        device: default CUDA when available.
        out_dir: if given, finished classes are saved there (``distill-state.pt``) and a re-run resumes with
            identical results; the complete set is also saved there.
        progress: show progress bars.

    Returns:
        A :class:`DistilledSet` of ``ipc * C`` uint8 images of ``image_size`` pixels. Its manifest records the
        settings, the observer, the seconds per distilled image and the peak memory.

    Raises:
        ValueError: ``ipc * patches_per_image`` more than a class's images, images smaller than a patch, an
            observer with another number of classes, one that names the classes in a different order
            (:func:`lightlabel.classes.check_class_order`) or has no input spec, labels outside ``class_names``
            (:func:`lightlabel.data.class_names_and_targets`), bad settings.
        TypeError: an unknown setting name (the valid ones are listed).

    Source: RDED Sec. 4.2-4.3, Alg. 1, Eq. 8-9; HeLlO Sec. 3.4, Eq. 6-7, supplementary A.5.
    """
    cfg = config_from(DistillConfig, config, overrides)
    if isinstance(observer, (str, os.PathLike)):
        observer = load_teacher(observer)
    if not isinstance(observer, nn.Module):
        raise TypeError(f"`observer` must be an nn.Module, a teacher checkpoint path or a pretrained name, got "
                        f"{type(observer).__name__}")
    device = resolve_device(device)
    job = _Distillation(as_dataset(train_set), observer, cfg, projector, class_names, device)
    rank, world_size = world()
    mine = [c for c in range(len(job.classes)) if c % world_size == rank]
    memory_kind = reset_peak_memory(device)
    results = Accumulator()
    state_path = Path(out_dir) / "distill-state.pt" if out_dir is not None and world_size == 1 else None

    def step(i: int) -> dict[str, Any]:  # one unit of the runner is one class of this rank
        results.items.append(job.one_class(mine[i]))
        return {"class_index": mine[i]}

    run_resumable(units=len(mine), step=step, state={"results": results}, path=state_path, settings=job.settings,
                  what="distill_images", seed=cfg.seed, device=device, progress=progress, unit="class")
    done = {r["class"]: r for r in results.items}
    if world_size > 1:
        import torch.distributed as dist

        gathered: list[dict] = [None] * world_size  # type: ignore[list-item]
        dist.all_gather_object(gathered, {c: done[c] for c in mine})
        done = {c: v for part in gathered for c, v in part.items()}
    result = job.assemble(done, memory_kind)
    if out_dir is not None and is_main_process():
        result.save(Path(out_dir) / "distilled")
    return result


class _Distillation:
    """One distillation's setup (data per class, observer, sizes) and the work of one class (RDED Alg. 1)."""

    def __init__(self, dataset: Dataset, observer: nn.Module, cfg: DistillConfig, projector: Projector | None,
                 class_names: Sequence[str] | None, device: torch.device) -> None:
        self.dataset, self.cfg, self.device, self.projector = dataset, cfg, device, projector
        self.classes, targets = class_names_and_targets(dataset, class_names)
        self.spec = spec = input_spec_of(observer, "observer")
        k = cfg.grid
        size = int(cfg.image_size or (None if isinstance(observer, Projector) or spec.image_size is None
                                      else spec.image_size[0]) or image_size_of(dataset))
        if size % k:
            raise ValueError(f"`image_size` {size} is not divisible by the {k}x{k} grid of patches_per_image="
                             f"{cfg.patches_per_image}")
        self.size, self.patch = size, size // k
        self.refiner = on_device(projector, device) if projector is not None else None
        if projector is not None and cfg.refine_steps > 0 and cfg.patches_per_image == 1:
            warnings.warn(EQ7_ONE_PATCH_WARNING, stacklevel=3)
        self.observer = on_device(observer.eval(), device)  # a copy when it is elsewhere: the caller's never moves
        with torch.no_grad():
            probe = self.observer(spec.prepare(torch.zeros(1, 3, size, size, device=device)))
        if probe.shape[-1] != len(self.classes):
            subset = (imagenet_subset_indices(probe.shape[-1], getattr(dataset, "classes", None))
                      or imagenet_subset_indices(probe.shape[-1], self.classes))
            if subset is None:
                raise ValueError(f"the observer outputs {probe.shape[-1]} classes but the dataset has "
                                 f"{len(self.classes)} ({SUBSET_HINT})")
            logger.info("the observer's 1000 ImageNet-1k logits are restricted to the dataset's %d WordNet-id "
                        "classes", len(subset))
            self.observer = ClassSubset(self.observer, subset)
        check_class_order(logit_class_names(self.observer), self.classes, what="the observer")
        self.needed = cfg.ipc * cfg.patches_per_image
        self.per_class_idx = [(targets == c).nonzero().flatten() for c in range(len(self.classes))]
        short = [(self.classes[c], len(i)) for c, i in enumerate(self.per_class_idx) if len(i) < self.needed]
        if short:
            raise ValueError(f"ipc * patches_per_image = {self.needed} patches per class need that many images, but "
                             f"{len(short)} classes have fewer: {short[:5]}")
        self.crop = v2.RandomResizedCrop(size, scale=cfg.crop_scale, antialias=True)
        self.settings = dict(
            ipc=cfg.ipc, patches_per_image=cfg.patches_per_image, candidates_per_class=cfg.candidates_per_class,
            crops_per_image=cfg.crops_per_image, crop_scale=list(cfg.crop_scale), image_size=size, patch_size=self.patch,
            refine=projector is not None, refine_steps=cfg.refine_steps if projector else 0, refine_lr=cfg.refine_lr,
            seed=cfg.seed, observer_input=spec.to_dict(), observer_fingerprint=fingerprint(observer),
            samples=len(dataset), classes=self.classes)

    def _candidates(self, c: int) -> tuple[list[int], torch.Tensor]:
        """The class's candidate images (drawn from its generator) and ``crops_per_image`` crops of each."""
        cfg, idx = self.cfg, self.per_class_idx[c]
        chosen = idx[torch.randperm(len(idx))[:cfg.candidates_per_class]].tolist()
        crops = []
        for i_img in chosen:
            image = _as_float(self.dataset[i_img][0])
            if min(image.shape[-2:]) < self.patch:
                raise ValueError(f"image {i_img} of class {self.classes[c]!r} is {tuple(image.shape[-2:])} pixels, "
                                 f"smaller than a {self.patch}x{self.patch} patch")
            for _ in range(cfg.crops_per_image):
                crops.append(v2.functional.resized_crop(image, **self.crop.make_params([image]),
                                                        size=[self.size, self.size], antialias=True))
        return chosen, torch.stack(crops)

    def one_class(self, c: int) -> dict[str, Any]:
        """Select, stitch and (with a projector) refine class ``c``'s images, from ``(seed, class)`` alone."""
        cfg = self.cfg
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "class", c))
            chosen, crops = self._candidates(c)
            scores = _score(self.observer, crops, c, self.spec, cfg.batch_size, self.device)
            per_image = scores.view(len(chosen), cfg.crops_per_image)
            best = per_image.argmax(1)  # Eq. 6: each image's most realistic patch
            best_scores = per_image.gather(1, best[:, None]).squeeze(1)
            top = best_scores.argsort(descending=True)[:self.needed]  # the class's top ipc * k^2 patches
            top = top[torch.randperm(len(top))]  # RDED Eq. 9: groups drawn at random
            picked = torch.stack([crops[j * cfg.crops_per_image + int(best[j])] for j in top.tolist()])
            if cfg.grid > 1:
                picked = F.interpolate(picked, size=(self.patch, self.patch), mode="bilinear", antialias=True,
                                       align_corners=False)
            stitched = stitch_patches(picked, cfg.patches_per_image)
        select_s = time.perf_counter() - t0
        refine_curve = None
        if self.refiner is not None and cfg.refine_steps > 0:  # per class: independent of the other classes
            stitched, refine_curve = refine_images(stitched, self.refiner, steps=cfg.refine_steps, lr=cfg.refine_lr)
        ids = [_source_id(self.dataset, chosen[j]) for j in top.tolist()]
        k2 = cfg.patches_per_image
        return {"class": c, "images": (stitched.clamp(0, 1) * 255).round().to(torch.uint8),
                "sources": [ids[i:i + k2] for i in range(0, len(ids), k2)], "scores": best_scores[top].tolist(),
                "select_seconds": select_s, "refine_seconds": time.perf_counter() - t0 - select_s,
                "refine_loss": None if refine_curve is None else [refine_curve[0], refine_curve[-1]]}

    def assemble(self, done: dict[int, dict[str, Any]], memory_kind: str) -> DistilledSet:
        """The distilled set from every class's result, in class order, with its manifest."""
        classes, cfg = self.classes, self.cfg
        select_s = sum(r["select_seconds"] for r in done.values())
        refine_s = sum(r["refine_seconds"] for r in done.values())
        images = torch.cat([done[c]["images"] for c in range(len(classes))])
        n = images.shape[0]
        manifest = {**self.settings, "classes": classes, "observer": _describe(self.observer),
                    "projector": None if self.projector is None else {
                        "base": self.projector.base_model, "fingerprint": self.projector.base_fingerprint},
                    "refine_loss": ({classes[c]: done[c]["refine_loss"] for c in range(len(classes))}
                                    if self.projector else None),
                    "observer_input": self.spec.to_dict(), "seconds_select_per_image": select_s / n,
                    "seconds_refine_per_image": refine_s / n, "peak_memory_bytes": int(peak_memory_bytes(self.device)),
                    "peak_memory_kind": memory_kind, "device": str(self.device)}
        logger.info("distilled %d images (%d classes x IPC %d) in %.1f s select + %.1f s refine", n, len(classes),
                    cfg.ipc, select_s, refine_s)
        return DistilledSet(images, torch.arange(len(classes)).repeat_interleave(cfg.ipc),
                            classes, [src for c in range(len(classes)) for src in done[c]["sources"]], manifest)
