"""Factorised distilled images (HaBa, Liu et al., NeurIPS 2022), labelled online: lighter images as well as labels.

A factorised set is a few **bases** per class and a few small **hallucinator** networks shared by all classes; every
(basis, hallucinator) pair is a training image (HaBa Eq. 1), so the images multiply while the storage adds up. A
hallucinator is an encoder, a per-position affine ``sigma * f + mu`` and a decoder (Eq. 2): an unpadded 3x3
convolution with ReLU to ``c''`` channels, the affine at every position, and a 3x3 transposed convolution back to
the image, so the spatial sizes follow the image size. The hallucinators start as the identity map plus a little
noise of their own (``FactorizeConfig.hallucinator_init="identity"``), so every training image starts as its
RDED-selected basis; the decoder replicate-pads its features so the image's outer pixel ring is not lost
(:class:`HallucinatorBank`).

:func:`factorize_images` learns bases and hallucinators with ``lambda_DD * L_DD + lambda_cos * L_cos`` (Eq. 6), where
``L_DD`` is **distribution matching** (DM: the mean embeddings of real and hallucinated images of each class under a
randomly initialised ConvNet, redrawn every step) in place of HaBa's trajectory matching, which costs hundreds of
CPU-hours in expert trajectories here; and ``L_cos`` (Eq. 5) is the cosine between two hallucinated views of one
basis in the features of an adversary that itself minimises ``lambda_con * InfoNCE + lambda_task * CE`` (Eq. 3-4).
The bases start from RDED-selected images (:func:`distill_images`).

HaBa's own student trains on the basis's hard label for every hallucinated view; here every hallucinated, augmented
view gets its own online soft label (:func:`train_student` accepts a :class:`FactorizedSet`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..configs import DistillConfig, FactorizeConfig, config_from
from ..core.base import fingerprint
from ..data import as_dataset, dataset_classes, dataset_targets
from ..inputs import InputSpec, input_spec_of
from ..sets.distilled import DistilledSet
from ..sets.factorized import FactorizedSet, FactorizedSetError
from ..sets.hallucinators import HallucinatorBank, epoch_hallucinators
from ..utils.hashing import tensor_digest
from ..utils.seeding import generator
from .distill import distill_images
from .haba_objective import contrastive_loss, conv_net, dm_loss, range_loss
from .loop import Accumulator, resolve_device, run_resumable

__all__ = ["FactorizedSet", "FactorizedSetError", "HallucinatorBank", "conv_net", "dm_loss", "epoch_hallucinators",
           "factorize_images", "range_loss"]

logger = logging.getLogger(__name__)

def factorize_images(
    train_set: Dataset | str | os.PathLike,
    observer: nn.Module,
    config: FactorizeConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> FactorizedSet:
    """Learn a factorised distilled set: bases per class and shared hallucinators (HaBa), with DM as ``L_DD``.

    Args:
        train_set: the real training set (``(image, label)`` pairs or an ImageFolder path), images of one size.
        observer: a teacher carrying an ``input_spec``; it selects the initial bases (RDED, :func:`distill_images`).
        config: the settings (:class:`~lightlabel.FactorizeConfig`); ``overrides`` replace its fields.
        out_dir: if given, the state is saved there every 50 iterations (``factorize-state.pt``) and a re-run resumes
            exactly; the finished set is written to ``out_dir/factorized.safetensors``.
        device: default CUDA when available.
        progress: a progress bar; the losses of every iteration are logged and kept in the manifest (``history``).

    Returns:
        The :class:`FactorizedSet`.

    Raises:
        ValueError: bad settings, an observer without an input spec, fewer than 2 classes.

    Source: HaBa (Liu et al., NeurIPS 2022) Sec. 3, Eq. 1-6; DM (Zhao & Bilen, WACV 2023) in place of Eq. 7.
    """
    cfg = config_from(FactorizeConfig, config, overrides)
    device = resolve_device(device)
    dataset = as_dataset(train_set)
    classes = dataset_classes(dataset)
    if classes is None or len(classes) < 2:
        raise ValueError(f"`train_set` needs a `classes` attribute with at least 2 classes, got {classes}")
    input_spec_of(observer, "observer")
    init = distill_images(dataset, observer, DistillConfig(
        ipc=cfg.bases_per_class, patches_per_image=1, candidates_per_class=cfg.candidates_per_class,
        crops_per_image=cfg.crops_per_image, refine_steps=0, seed=cfg.seed), device=device, progress=False)
    run = _HabaRun(dataset, init, cfg, device)
    history = Accumulator()
    chunk = 50  # iterations per unit of the runner: resumable every 50 iterations

    def step(unit: int) -> dict[str, Any]:
        start = unit * chunk
        records = [run.iteration(it) for it in range(start, min(start + chunk, cfg.iterations))]
        history.items.extend(records)
        mean = {k: sum(r[k] for r in records) / len(records) for k in records[0]}
        logger.info("factorize iterations %d-%d/%d: %s", start + 1, start + len(records), cfg.iterations,
                    ", ".join(f"{k} {v:.4g}" for k, v in mean.items()))
        return mean

    settings = {"config": cfg.to_dict(), "observer": fingerprint(observer), "classes": classes,
                "samples": len(dataset), "init": tensor_digest(init.images)}
    run_resumable(units=math.ceil(cfg.iterations / chunk), step=step, state={"params": run, "history": history},
               path=None if out_dir is None else Path(out_dir) / "factorize-state.pt", settings=settings,
                  what="factorize_images", seed=cfg.seed, device=device, progress=progress, unit="chunk")
    manifest = {"bases_per_class": cfg.bases_per_class, "config": cfg.to_dict(), "observer": fingerprint(observer),
                "init": "RDED selection (distill_images)", "objective": "dm", "history": history.items[-10:],
                "iterations_done": len(history.items)}
    result = FactorizedSet((run.bases.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu(), run.labels.cpu(),
                           classes, run.bank.cpu(), manifest)
    if out_dir is not None:
        result.save(Path(out_dir) / "factorized.safetensors")
    return result


class _HabaRun:
    """One HaBa build: the bases, the hallucinator bank, the adversary, their optimisers, and one iteration of
    HaBa Eq. 1-6 with distribution matching as L_DD; its ``state_dict`` is what a resumed build restores."""

    def __init__(self, dataset: Dataset, init: DistilledSet, cfg: FactorizeConfig, device: torch.device) -> None:
        self.dataset, self.cfg, self.device = dataset, cfg, device
        self.classes = list(init.classes)
        self.size = size = init.images.shape[-1]
        self.spec = InputSpec.imagenet()  # the DM and adversary networks see ImageNet-normalised images
        self.bases = nn.Parameter(init.images.float().div(255).to(device))
        self.labels = init.labels.to(device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            self.bank = HallucinatorBank(count=cfg.hallucinators, image_size=size, hidden=cfg.hidden_channels,
                                         init=cfg.hallucinator_init).to(device)
            self.adversary = conv_net(len(self.classes), width=cfg.net_width, depth=cfg.net_depth,
                                      image_size=size).to(device)
        self.opt = torch.optim.Adam([{"params": [self.bases], "lr": cfg.bases_lr},
                                     {"params": list(self.bank.parameters())}], lr=cfg.lr)
        self.opt_adv = torch.optim.Adam(self.adversary.parameters(), lr=cfg.adversary_lr)
        targets = torch.tensor(dataset_targets(dataset))
        self.per_class = [(targets == c).nonzero().flatten() for c in range(len(self.classes))]

    def _real_batch(self, c: int, gen: torch.Generator) -> torch.Tensor:
        idx = self.per_class[c][torch.randint(len(self.per_class[c]), (self.cfg.real_per_class,), generator=gen)]
        return torch.stack([_as_float(self.dataset[int(i)][0], self.size) for i in idx]).to(self.device)

    def iteration(self, it: int) -> dict[str, float]:
        """One step of the set (bases and hallucinators), then one of the adversary; all randomness from
        ``(seed, it)``."""
        cfg, device, spec, labels = self.cfg, self.device, self.spec, self.labels
        gen = generator(cfg.seed, it, "factorize")
        chosen = torch.randperm(cfg.hallucinators, generator=gen)[:cfg.hallucinators_per_iteration]
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(2**62, (), generator=gen)))
            net = conv_net(len(self.classes), width=cfg.net_width, depth=cfg.net_depth, image_size=self.size).to(device)
        net.requires_grad_(False)
        n = self.bases.shape[0]
        raw = [self.bank(self.bases.clamp(0, 1), torch.full((n,), int(h), device=device)) for h in chosen]
        views = [x.clamp(0, 1) for x in raw]
        real = [spec.normalize(self._real_batch(c, gen)) for c in range(len(self.classes))]
        syn = [spec.normalize(torch.cat([v[labels == c] for v in views])) for c in range(len(self.classes))]
        loss_dd = dm_loss(net, real, syn)
        record = {"dm": float(loss_dd.detach())}
        loss = cfg.lambda_dd * loss_dd
        if cfg.adversarial:
            za, zb = (self.adversary.features(spec.normalize(v)) for v in views[:2])
            loss_cos = F.cosine_similarity(za, zb, dim=1).mean()  # Eq. 5: the set pushes the two views apart
            loss = loss + cfg.lambda_cos * loss_cos
            record["cos"] = float(loss_cos.detach())
        if cfg.lambda_range > 0:  # clamped pixels pass no gradient: this term pulls them back into [0, 1]
            loss_range = torch.stack([range_loss(x) for x in raw]).mean()
            loss = loss + cfg.lambda_range * loss_range
            record["range"] = float(loss_range.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.bases.clamp_(0, 1)
        if cfg.adversarial:
            record["adversary"] = self._adversary_step(views)
        return record

    def _adversary_step(self, views: list[torch.Tensor]) -> float:
        """HaBa Eq. 4: the adversary pulls the two views together and classifies them."""
        cfg = self.cfg
        za, zb = (self.adversary.features(self.spec.normalize(v.detach())) for v in views[:2])
        loss = cfg.lambda_con * contrastive_loss(za, zb, cfg.temperature) + cfg.lambda_task * 0.5 * sum(
            F.cross_entropy(self.adversary.classifier(z), self.labels) for z in (za, zb))
        self.opt_adv.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_adv.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"bases": self.bases.detach().cpu().clone(),
                "bank": {k: v.cpu() for k, v in self.bank.state_dict().items()},
                "adversary": self.adversary.state_dict(), "opt": self.opt.state_dict(),
                "opt_adv": self.opt_adv.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.bases.copy_(state["bases"])
        self.bank.load_state_dict(state["bank"])
        self.adversary.load_state_dict(state["adversary"])
        self.opt.load_state_dict(state["opt"])
        self.opt_adv.load_state_dict(state["opt_adv"])


def _as_float(image: Any, size: int) -> torch.Tensor:
    from torchvision.transforms import v2

    x = v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)
    if tuple(x.shape[-2:]) != (size, size):
        x = v2.functional.resize(x, [size, size], antialias=True)
    return x
