"""Teachers: the ensemble of weak teachers whose mean logits the adapter is fitted to.

The ensemble label is the mean of the teachers' logits (HeLlO Eq. 1 and Eq. 5, ``Y' = mean_k f_k(X)``). When all
teachers share one architecture, their weights are stacked once and run as one batched call with
``torch.func.functional_call`` under ``torch.vmap``, instead of a Python loop over the teachers.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state
from torch.utils.data import Dataset

from ._loop import (
    ddp,
    epoch_rng,
    evaluate,
    is_main_process,
    load_state,
    make_loader,
    per_rank_batch,
    resolve_device,
    save_state,
    settings_digest,
    world,
)
from ._progress import progress_bar
from .data import (
    TransformedDataset,
    as_dataset,
    dataset_classes,
    eval_transform,
    image_size_of,
    train_transform,
)
from .models import IMAGENET_MEAN, IMAGENET_STD, build_model, load_teacher, save_teacher

__all__ = ["TeacherEnsemble", "load_teachers", "train_teachers"]

logger = logging.getLogger(__name__)


def _signature(module: nn.Module) -> tuple:
    return (type(module),) + tuple((k, tuple(v.shape), v.dtype) for k, v in module.state_dict().items())


class TeacherEnsemble(nn.Module):
    """Mean logits of several frozen teachers, in eval mode.

    Teachers of one architecture (identical parameter names and shapes) are stored stacked, once
    (``torch.func.stack_module_state``), and run either as one ``torch.vmap`` call or as a loop over slices of the
    stacked weights. Others are kept as a ``ModuleList`` and looped.

    Args:
        teachers: one or more ``nn.Module`` mapping ``(B, 3, H, W)`` to ``(B, C)`` logits (same ``C``).
        vectorize: ``"auto"`` (vmap on CUDA, loop on CPU, where measured vmap was slower; see
            ``benchmarks/teacher_ensemble.py``), ``True`` (always vmap; requires one architecture) or ``False``.

    Shape:
        - Input: ``(B, 3, H, W)``.
        - Output: ``(B, C)`` mean logits, the teachers' dtype.

    Raises:
        ValueError: no teachers, or ``vectorize=True`` with differing architectures.

    Source: HeLlO Eq. 1 and Eq. 5 (multi-weak-teacher soft labels).
    """

    def __init__(self, teachers: Sequence[nn.Module], *, vectorize: bool | str = "auto") -> None:
        super().__init__()
        teachers = list(teachers)
        if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
            raise ValueError(f"`teachers` must be a non-empty list of nn.Module, got {teachers!r}"[:200])
        if vectorize not in (True, False, "auto"):
            raise ValueError(f"`vectorize` must be True, False or 'auto', got {vectorize!r}")
        for t in teachers:
            t.eval().requires_grad_(False)
        stackable = len({_signature(t) for t in teachers}) == 1
        if vectorize is True and not stackable:
            raise ValueError("`vectorize=True` needs teachers of one architecture with identical parameter shapes")
        self.num_teachers = len(teachers)
        self.vectorize = vectorize
        self.stacked = stackable
        if stackable:
            params, buffers = stack_module_state(teachers)
            self._names = (list(params), list(buffers))
            for i, v in enumerate(params.values()):
                self.register_buffer(f"_p{i}", v.detach())
            for i, v in enumerate(buffers.values()):
                self.register_buffer(f"_b{i}", v)
            self._skeleton = [copy.deepcopy(teachers[0]).to("meta")]  # a list: not registered as a submodule
        else:
            self.teachers = nn.ModuleList(teachers)

    @property
    def vectorized(self) -> bool:
        """Whether a CUDA forward runs as one vmap call (CPU forwards vmap only with ``vectorize=True``)."""
        return self.stacked and self.vectorize is not False

    def train(self, mode: bool = True) -> TeacherEnsemble:
        """Teachers always stay in eval mode."""
        super().train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.stacked:
            return torch.stack([t(images) for t in self.teachers]).mean(0)
        params = {n: getattr(self, f"_p{i}") for i, n in enumerate(self._names[0])}
        buffers = {n: getattr(self, f"_b{i}") for i, n in enumerate(self._names[1])}
        skeleton = self._skeleton[0]

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(skeleton, (p, b), (x,))

        if self.vectorize is True or (self.vectorize == "auto" and images.is_cuda):
            return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, images).mean(0)
        outs = [one({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in buffers.items()}, images)
                for i in range(self.num_teachers)]
        return torch.stack(outs).mean(0)

    def extra_repr(self) -> str:
        return f"num_teachers={self.num_teachers}, stacked={self.stacked}, vectorize={self.vectorize!r}"


def load_teachers(teachers: Sequence[nn.Module | str | os.PathLike], *, device: torch.device | str = "cpu",
                  vectorize: bool | str = "auto") -> TeacherEnsemble:
    """An ensemble from checkpoint paths and/or modules (see :func:`lightlabel.models.load_teacher`).

    Raises:
        ValueError: an empty list, or teachers with different numbers of classes or input normalisation.
    """
    if isinstance(teachers, (str, os.PathLike, nn.Module)):
        teachers = [teachers]
    modules = [t if isinstance(t, nn.Module) else load_teacher(t) for t in teachers]
    if not modules:
        raise ValueError("`teachers` is empty")
    stats = {(tuple(getattr(m, "mean", IMAGENET_MEAN)), tuple(getattr(m, "std", IMAGENET_STD))) for m in modules}
    if len(stats) > 1:
        raise ValueError(f"teachers expect different input normalisations: {sorted(stats)}")
    ensemble = TeacherEnsemble(modules, vectorize=vectorize).to(device)
    ensemble.mean, ensemble.std = next(iter(stats))
    sizes = {getattr(m, "image_size", None) for m in modules} - {None}
    ensemble.image_size = sizes.pop() if len(sizes) == 1 else None
    classes = [getattr(m, "classes", None) for m in modules]
    ensemble.classes = classes[0] if classes[0] is not None and all(c == classes[0] for c in classes) else None
    return ensemble


def train_teachers(
    train_set: Dataset | str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    arch: str = "resnet18",
    epochs: int = 41,
    save_epochs: Sequence[int] | None = None,
    image_size: int | None = None,
    low_res: bool | None = None,
    batch_size: int = 256,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    step_size: int = 30,
    gamma: float = 0.1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    val_set: Dataset | str | os.PathLike | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    on_error: str = "skip",
    progress: bool = True,
) -> list[Path]:
    """Train one teacher from scratch and keep the checkpoints of early epochs ("weak teachers").

    One training trajectory with the paper's recipe (HeLlO supp. Table 1: SGD lr 0.1, momentum 0.9, weight decay
    1e-4, StepLR step 30, batch 256; standard augmentation, see :func:`lightlabel.data.train_transform`). The
    checkpoints of ``save_epochs`` become the weak teachers of :func:`fit_adapter` (Sec. 3.3; Table 4 right: early
    stages are best for small IPC). Resumable: the state after every epoch is written to
    ``out_dir/trainer-state.pt`` (atomically); calling again with the same settings continues from it, and a
    finished run returns at once. Exactly the same weights as an uninterrupted run (same seed, same device).

    Args:
        train_set: a map-style dataset of ``(PIL image or image tensor, int)`` or an ImageFolder path.
        out_dir: where the checkpoints ``teacher-epoch{NNN}.pt`` and the trainer state go.
        arch: torchvision or timm model name, or ``cifar_resnet20``..``110`` (see :func:`lightlabel.models.build_model`).
        epochs: epochs to train (default 41: the last checkpoint of the paper's earliest teacher window "1-41").
        save_epochs: epochs whose checkpoints are kept (default: 9 evenly spaced in ``[1, epochs]``, the paper's
            model pool of 9).
        image_size: training resolution in pixels (default: the first image's size).
        low_res: 3x3 stem without max-pool (default: ``image_size <= 64``; ResNet-style archs only).
        batch_size, lr, momentum, weight_decay, step_size, gamma: the optimiser recipe above; ``batch_size`` is
            the global batch, split across processes under torch.distributed (``torchrun``).
        mean, std: input normalisation, recorded in the checkpoints.
        val_set: optional held-out data; its top-1 is logged each epoch and stored in the checkpoints.
        seed: seed of the initialisation, data order and augmentation.
        device: default CUDA when available.
        num_workers: DataLoader workers.
        on_error: for ImageFolder paths, ``"skip"`` or ``"raise"`` on unreadable files.
        progress: show progress bars.

    Returns:
        Paths of the saved checkpoints, by epoch.

    Raises:
        ValueError: bad arguments (named), a dataset without ``classes``, or an existing state in ``out_dir``
            from other settings.

    Source: HeLlO Sec. 3.3 and supplementary A.2, Table 1.
    """
    dataset = as_dataset(train_set, on_error=on_error)
    classes = dataset_classes(dataset)
    if classes is None:
        raise ValueError("`train_set` must have a `classes` attribute (class names in label order)")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be an int >= 1, got {epochs!r}")
    if save_epochs is None:
        count = min(9, epochs)
        save_epochs = sorted({round(1 + i * (epochs - 1) / max(count - 1, 1)) for i in range(count)})
    save_epochs = sorted(set(int(e) for e in save_epochs))
    if not save_epochs or save_epochs[0] < 1 or save_epochs[-1] > epochs:
        raise ValueError(f"`save_epochs` must be within [1, {epochs}], got {save_epochs}")
    size = int(image_size or image_size_of(dataset))
    low_res = size <= 64 if low_res is None else bool(low_res)
    device = resolve_device(device)
    out_dir = Path(out_dir)
    settings = dict(arch=arch, epochs=epochs, save_epochs=save_epochs, image_size=size, low_res=low_res,
                    batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, step_size=step_size,
                    gamma=gamma, mean=list(mean), std=list(std), seed=seed, classes=classes, samples=len(dataset))
    paths = {e: out_dir / f"teacher-epoch{e:03d}.pt" for e in save_epochs}

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build_model(arch, len(classes), low_res=low_res, image_size=size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    state_path = out_dir / "trainer-state.pt"
    state = load_state(state_path, settings, "train_teachers")
    start, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = state["epoch"], state["history"]
        logger.info("train_teachers: resuming %s after epoch %d of %d", out_dir, start, epochs)
    train_data = TransformedDataset(dataset, train_transform(size, low_res=low_res), seed=seed)
    per_rank_batch(batch_size)
    net: nn.Module = model
    if world()[1] > 1:  # DDP; BatchNorm statistics stay per process (as in torchvision's reference recipe)
        net = ddp(model, device)
    val_data = TransformedDataset(as_dataset(val_set, on_error=on_error), eval_transform(size)) if val_set is not None else None
    m = torch.tensor(list(mean), device=device).view(1, 3, 1, 1)
    s = torch.tensor(list(std), device=device).view(1, 3, 1, 1)

    for epoch in range(start, epochs):
        t0 = time.time()
        net.train()
        total = correct = seen = 0
        with epoch_rng(seed, epoch, device):
            loader = make_loader(train_data, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                 epoch=epoch, seed=seed, device=device)
            bar = progress_bar(loader, desc=f"teacher epoch {epoch + 1}/{epochs}", disable=not progress or not is_main_process())
            for images, labels in bar:
                images = (images.to(device, non_blocking=True) - m) / s
                labels = labels.to(device, non_blocking=True)
                logits = net(images)
                loss = F.cross_entropy(logits, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                seen += len(labels)
        sched.step()
        record = {"epoch": epoch + 1, "loss": float(total) / seen, "train_top1": float(correct) / seen,
                  "seconds": time.time() - t0}
        if val_data is not None:
            record["val_top1"] = evaluate(model, val_data, device=device, mean=tuple(mean), std=tuple(std))
        history.append(record)
        logger.info("teacher epoch %d/%d: %s", epoch + 1, epochs,
                    ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
        if epoch + 1 in paths and is_main_process():
            save_teacher(model, paths[epoch + 1], arch=arch, classes=classes, low_res=low_res, image_size=size,
                         mean=mean, std=std, epoch=epoch + 1, history=list(history))
        save_state(state_path, {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                "epoch": epoch + 1, "history": history, "settings": settings,
                                "settings_digest": settings_digest(settings)})
    return [paths[e] for e in save_epochs]
