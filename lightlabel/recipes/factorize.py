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

import copy
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..configs import DistillConfig, FactorizeConfig, config_from
from ..core.base import fingerprint
from ..data import as_dataset, dataset_classes, dataset_targets
from ..errors import StoredLabelsError
from ..inputs import InputSpec, input_spec_of
from ..utils.files import atomic_write_bytes
from ..utils.hashing import safetensors_header, tensor_digest
from ..utils.placement import module_device, on_device
from ..utils.seeding import generator
from ..version import __version__
from .distill import DistilledSet, distill_images
from .hallucinators import (
    HALLUCINATOR_BORDERS,
    HallucinatorBank,
    contrastive_loss,
    conv_net,
    dm_loss,
    epoch_hallucinators,
    range_loss,
)
from .loop import Accumulator, resolve_device, run_epochs

__all__ = ["FactorizedSet", "FactorizedSetError", "HallucinatorBank", "conv_net", "dm_loss", "epoch_hallucinators",
           "factorize_images", "range_loss"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "lightlabel-factorized"
FORMAT_VERSION = 1


class FactorizedSetError(StoredLabelsError):
    """A factorised-set file is damaged, truncated, edited or of another format version (a :class:`ValueError`)."""


class FactorizedSet(Dataset):
    """Bases and shared hallucinators: a map-style dataset of ``len(bases) * H`` images.

    Item ``i`` is basis ``i // H`` through hallucinator ``i % H``, clamped to [0, 1]: ``(image (3, S, S) float32,
    label)``; nothing is random. Stored as one safetensors file (:meth:`save`): bases as uint8, hallucinators as
    fp16, with a versioned header (classes, settings, provenance) and a sha256 of the tensors; :attr:`storage_nbytes`
    is that file's size.

    Args:
        bases: ``(N, 3, S, S)`` uint8. labels: ``(N,)`` int64. classes: names in index order.
        hallucinators: a :class:`HallucinatorBank` (its weights are rounded to fp16, as stored).
        manifest: settings and provenance.

    Raises:
        ValueError: mismatched shapes or a bank for another image size.
    """

    def __init__(self, bases: torch.Tensor, labels: torch.Tensor, classes: list[str], hallucinators: HallucinatorBank,
                 manifest: dict[str, Any] | None = None) -> None:
        if bases.dtype != torch.uint8 or bases.ndim != 4 or bases.shape[1] != 3:
            raise ValueError(f"`bases` must be uint8 (N, 3, S, S), got {bases.dtype} {tuple(bases.shape)}")
        if labels.shape != (bases.shape[0],):
            raise ValueError(f"`labels` must be ({bases.shape[0]},), got {tuple(labels.shape)}")
        if hallucinators.image_size != bases.shape[-1]:
            raise ValueError(f"hallucinators for {hallucinators.image_size} px, bases of {bases.shape[-1]} px")
        self.bases, self.labels, self.classes = bases, labels.long(), list(classes)
        self.hallucinators = hallucinators.eval().requires_grad_(False)
        with torch.no_grad():
            for p in self.hallucinators.parameters():
                p.copy_(p.half().float())  # exactly what the file holds
        self.manifest = dict(manifest or {})

    # -------------------------------------------------------------------------- dataset
    @property
    def num_hallucinators(self) -> int:
        return self.hallucinators.count

    def __len__(self) -> int:
        return self.bases.shape[0] * self.num_hallucinators

    @torch.no_grad()
    def generate(self, basis: torch.Tensor, hallucinator: torch.Tensor, device: torch.device | str | None = None
                 ) -> torch.Tensor:
        """Images of ``(basis[i], hallucinator[i])`` pairs in one batched call: ``(B, 3, S, S)`` float32 in [0, 1]."""
        device = torch.device(device) if device is not None else self.bases.device
        bank = self.hallucinators.to(device)
        x = self.bases[basis.to(self.bases.device)].to(device).float() / 255
        return bank(x, hallucinator.to(device)).clamp_(0, 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        b, h = divmod(int(index), self.num_hallucinators)
        return self.generate(torch.tensor([b]), torch.tensor([h]))[0], int(self.labels[b])

    # -------------------------------------------------------------------------- the student's view of it
    @property
    def image_size(self) -> int:
        return int(self.bases.shape[-1])

    @property
    def num_epoch_images(self) -> int:
        """Images per student epoch: each basis once (HaBa's sampler)."""
        return int(self.bases.shape[0])

    @property
    def patches_per_side(self) -> int:
        """1: a basis is one whole image (the bases are RDED selections with one patch each)."""
        return 1

    @property
    def hallucinated(self) -> bool:
        return True

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def epoch_images(self, seed: int, epoch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The epoch's images: every basis through the hallucinator :func:`epoch_hallucinators` draws for it.

        Made on ``device`` from the bases, which are copied there on every call when they are elsewhere: a run of
        many epochs moves the bases and hallucinators once, with :meth:`to_device`, and asks that set (as
        :func:`~lightlabel.train_student` does); then only the epoch's ``(N,)`` hallucinator indices travel.
        """
        index = epoch_hallucinators(self.num_epoch_images, self.num_hallucinators, seed, epoch)
        return self.generate(torch.arange(self.num_epoch_images, device=self.bases.device), index, device)

    def to_device(self, device: torch.device | str) -> FactorizedSet:
        """The set with its bases and hallucinators on ``device`` for a run's epochs (see :meth:`epoch_images`).

        ``self`` when both are there already, else a shallow copy holding the bases copied to ``device`` and the
        hallucinators there (a deep copy when they are elsewhere); ``self`` never moves. :attr:`fingerprint`,
        :meth:`save` and :meth:`to_bytes` read CPU tensors: ask the original set for them.

        Args:
            device: where the bases and hallucinators should live.

        Returns:
            A :class:`FactorizedSet` whose bases and hallucinators are on ``device``.
        """
        device = torch.device(device)
        if self.bases.device == device and module_device(self.hallucinators) == device:
            return self
        out = copy.copy(self)
        out.bases = self.bases.to(device)
        out.hallucinators = on_device(self.hallucinators, device)
        return out

    def bases_only(self) -> DistilledSet:
        """The bases alone, as a :class:`DistilledSet` (the control: no hallucinators)."""
        return DistilledSet(self.bases.clone(), self.labels.clone(), self.classes,
                            [[f"basis{i}"] for i in range(len(self.bases))],
                            {"ipc": self.manifest.get("bases_per_class"), "patches_per_image": 1,
                             "factorized_from": self.manifest.get("sha256")})

    # -------------------------------------------------------------------------- file
    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {"bases": self.bases.contiguous(), "labels": self.labels.to(torch.int32).contiguous()}
        for name, p in self.hallucinators.named_parameters():
            out[f"hallucinators.{name}"] = p.detach().half().contiguous()
        return out

    def to_bytes(self) -> bytes:
        tensors = self._tensors()
        body = hashlib.sha256()
        for key in sorted(tensors):
            t = tensors[key]
            body.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
            body.update(t.view(-1).view(torch.uint8).numpy().tobytes())
        meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "lightlabel_version": __version__,
                "classes": json.dumps(self.classes), "hidden_channels": str(self.hallucinators.hidden),
                "hallucinators": str(self.num_hallucinators),
                **({} if self.hallucinators.border == "zero" else
                   {"hallucinator_border": self.hallucinators.border}),
                "manifest": json.dumps({k: v for k, v in self.manifest.items() if k != "sha256"}, sort_keys=True,
                                       default=str),
                "sha256_tensors": body.hexdigest()}
        return _canonical(safetensors.torch.save(tensors, metadata=meta))

    @property
    def storage_nbytes(self) -> int:
        """Bytes of the file :meth:`save` writes (bases uint8, hallucinators fp16, header)."""
        return len(self.to_bytes())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set to one ``.safetensors`` file, atomically (temp file + rename). Returns the path."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FactorizedSet:
        """Read and verify a file written by :meth:`save`.

        Raises:
            FileNotFoundError: no file. FactorizedSetError: not such a file, truncated, a checksum mismatch (flipped
            bits or an edited header), or a newer format version.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"factorised set not found: {path}")
        data = path.read_bytes()
        parsed = safetensors_header(data)
        if parsed is None:
            raise FactorizedSetError(f"{path}: truncated or not a safetensors file")
        try:
            meta = parsed[0].get("__metadata__") or {}
            tensors = safetensors.torch.load(data)
        except Exception as e:
            raise FactorizedSetError(f"{path}: not a readable safetensors file ({e})") from e
        if meta.get("format") != FORMAT_NAME:
            raise FactorizedSetError(f"{path}: not a lightlabel factorised set (format {meta.get('format')!r})")
        if int(meta.get("format_version", -1)) != FORMAT_VERSION:
            raise FactorizedSetError(f"{path}: format version {meta.get('format_version')!r}; this lightlabel reads "
                                     f"{FORMAT_VERSION}")
        try:
            classes, manifest = json.loads(meta["classes"]), json.loads(meta["manifest"])
            count, hidden = int(meta["hallucinators"]), int(meta["hidden_channels"])
            border = meta.get("hallucinator_border", "zero")
            if border not in HALLUCINATOR_BORDERS:
                raise ValueError(f"hallucinator_border {border!r} is none of {list(HALLUCINATOR_BORDERS)}")
            bank = HallucinatorBank(count=count, image_size=int(tensors["bases"].shape[-1]), hidden=hidden,
                                    init="random", border=border)  # its weights are the file's
            bank.load_state_dict({k.removeprefix("hallucinators."): v.float() for k, v in tensors.items()
                                  if k.startswith("hallucinators.")})
            out = cls(tensors["bases"], tensors["labels"].long(), classes, bank, manifest)
        except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as e:
            raise FactorizedSetError(f"{path}: malformed factorised set ({e})") from e
        if out.to_bytes() != data:
            raise FactorizedSetError(f"{path}: tensors or header do not match their checksum: the file is damaged or "
                                     "edited")
        out.manifest["sha256"] = hashlib.sha256(data).hexdigest()
        return out

    def __repr__(self) -> str:
        return (f"FactorizedSet(bases={len(self.bases)}, hallucinators={self.num_hallucinators}, images={len(self)}, "
                f"classes={len(self.classes)}, size={self.image_size})")


def _canonical(data: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted: safetensors writes the metadata in hash order,
    which differs between processes, and a set's file must be the same bytes for the same content (its sha256 is
    its identity). The sorted header has the same length; the padding safetensors adds is kept."""
    header, n = safetensors_header(data)
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(canonical) > n:  # cannot happen for a header safetensors wrote; keep its bytes rather than break offsets
        return data
    return data[:8] + canonical + b" " * (n - len(canonical)) + data[8 + n:]


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
    run_epochs(epochs=math.ceil(cfg.iterations / chunk), step=step, state={"params": run, "history": history},
               path=None if out_dir is None else Path(out_dir) / "factorize-state.pt", settings=settings,
               what="factorize_images", seed=cfg.seed, device=device, progress=progress)
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
