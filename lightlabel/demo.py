"""``lightlabel demo``: the whole method on real images, with real teachers, sized for a CPU.

weak teachers (early checkpoints of a real trajectory) -> adapter (:func:`fit_adapter`) -> distilled images at IPC 10
(:func:`distill_images`, the strong teacher as observer) -> students under the evaluation protocol with projector
labels, online-teacher labels and hard labels -> one table of top-1, extra bytes and seconds per iteration, next to
the stored-label bytes the projector replaces.

The default data is CIFAR-10, because real strong teachers exist for it: the ResNet-20 (``--full``: ResNet-56) of
akamaster's pytorch_resnet_cifar10 (the full teacher and the observer), and the weak teachers shipped in the package
(``assets/demo-teachers``: epochs 1-3 of a CIFAR ResNet-20 trajectory trained once by
lightlabel's release tool ``demo_teachers.py`` in the source repository). Nothing is trained inside the demo but the adapter and the students. Data and the
strong teacher come, in this order, from ``data=`` / ``teacher=``, then ``$LIGHTLABEL_DATA`` or a ``shared/data`` folder
beside the checkout, then a download into the cache folder where there is a network; offline with none of them, the
demo stops at once with one message naming the three.

Every stage writes into the work folder under a fingerprint of its inputs (data files, teachers, base, settings), so
an interrupted demo continues where it stopped, and a run on other data or settings never reuses another's state.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .configs import AdapterConfig, DistillConfig, EvalProtocol, FitConfig, TeacherConfig
from .core.base import cache_root, fingerprint
from .core.projector import Projector
from .core.proxy import CIFAR10_AS_IMAGENET, PROXY_BASE, PROXY_CHECKPOINT, proxy_available, proxy_head
from .data import (
    TensorImageDataset,
    _download_cifar10,
    default_data_root,
    extract_image_folder,
    load_image_folder,
)
from .inputs import InputSpec
from .labeling.stored import images_digest
from .models import load_teacher
from .recipes.distill import distill_images
from .recipes.fit import fit_adapter
from .recipes.student import train_student
from .recipes.teachers import train_teachers
from .storage import soft_label_nbytes, teacher_nbytes
from .utils.files import atomic_write_text
from .utils.hashing import file_digest, json_digest

__all__ = ["DemoSettings", "resolve_data", "run_demo"]

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = list(CIFAR10_AS_IMAGENET)
#: The strong CIFAR-10 teachers: akamaster/pytorch_resnet_cifar10's ResNet-20 (91.7 %) and ResNet-56 (93.6 %),
#: BSD-2-Clause: ``shared/models`` file name and download address.
STRONG_TEACHERS = {
    "resnet20": ("cifar10-resnet20-12fca82f.th",
                 "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet20-12fca82f.th"),
    "resnet56": ("cifar10-resnet56-4bfd9763.th",
                 "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet56-4bfd9763.th"),
}
#: The weak teachers shipped with the package (see assets/README.md).
WEAK_TEACHERS = Path(__file__).resolve().parent / "assets" / "demo-teachers"
TEACHER_INPUT = InputSpec.imagenet(32)  # the CIFAR-10 ResNets' normalisation
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class DemoSettings:
    """The demo's sizes. :meth:`cpu` (the default) runs in under 15 minutes on 2 CPU cores (7.6 min measured on
    2026-12-07); the students keep the anchors' 300 steps and views, with a CIFAR ResNet-20 in place of ResNet-18
    (7x cheaper per step), the strong teacher is the real ResNet-20, and the adapter is fitted on 1,000 images per
    class for 3 epochs. :meth:`full` keeps the paper's sizes, with the real ResNet-56.
    Every stage takes its config whole (see :mod:`lightlabel.configs`).

    Attributes:
        adapter, fit: the adapter and its fitting run. fit_per_class: training images per class to fit on (None: all).
        distill: the distilled set (IPC, patches per image, candidates, crops; no refinement on CPU).
        protocol: the students' evaluation protocol (HeLlO's preset: 300 steps at IPC 10, RDED's views).
        val_per_class: validation images per class (None: the whole split).
        teacher: the strong CIFAR-10 teacher and observer, ``"resnet20"`` or ``"resnet56"`` (see
            :data:`STRONG_TEACHERS`).
        teachers: the trajectory trained only for data that has no shipped teachers (not CIFAR-10).
        stored_epochs: epochs for the stored-label byte count.
    """

    adapter: AdapterConfig = field(default_factory=lambda: AdapterConfig(head_rank=16))
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=3, lr=2e-3, batch_size=128))
    fit_per_class: int | None = 1000
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(
        ipc=10, patches_per_image=1, candidates_per_class=150, crops_per_image=5, refine_steps=0))
    protocol: EvalProtocol = field(default_factory=lambda: EvalProtocol.helio(student="cifar_resnet20",
                                                                              eval_every=300))
    val_per_class: int | None = None
    teacher: str = "resnet20"
    teachers: TeacherConfig = field(default_factory=lambda: TeacherConfig(
        arch="cifar_resnet20", epochs=4, save_epochs=(1, 2, 3, 4), batch_size=128, lr=0.1))
    stored_epochs: int = 300

    @classmethod
    def cpu(cls) -> DemoSettings:
        return cls()

    @classmethod
    def full(cls) -> DemoSettings:
        """The paper's sizes: a ResNet-18 student, 20 fitting epochs on all images, 300 candidates per class.

        No Eq. 7 refinement: the demo's images are 1 patch each, where it has no down-sampling loss to compensate and
        was measured to lower the student (CIFAR-10 IPC 10: 46.1 % to 32.1 %, seed 0)."""
        return cls(fit=FitConfig(epochs=20, lr=5e-4, batch_size=256), fit_per_class=None,
                   distill=DistillConfig(ipc=10, patches_per_image=1, candidates_per_class=300, crops_per_image=5,
                                         refine_steps=0),
                   protocol=EvalProtocol.helio(), adapter=AdapterConfig(head_rank=64), teacher="resnet56")


@dataclass(frozen=True)
class DataSource:
    """Where the demo's images came from: ``(train, val)`` as decoded datasets, plus what the output says."""

    name: str
    origin: str
    train: TensorImageDataset
    val: TensorImageDataset
    fingerprint: str


def _key(*parts: Any) -> str:
    return json_digest(parts)[:12]


def _no_data(reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"no data for the demo ({reason}). Give it one of: (1) `--data DIR` (an ImageFolder root with train/ and "
        f"val/ or test/, or a .tar.gz of one); (2) LIGHTLABEL_DATA or a shared/data folder beside the checkout "
        f"(with cifar10/train.tar.gz and cifar10/test.tar.gz); (3) a network connection, to download CIFAR-10 into "
        f"{cache_root() / 'datasets'}")


def _split_dirs(root: Path) -> tuple[Path, Path]:
    val = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not (root / "train").is_dir() or val is None:
        found = sorted(p.name for p in root.iterdir())[:10] if root.is_dir() else []
        raise _no_data(f"`--data` {root} must hold train/ and val/ (or test/) ImageFolders; found {found}")
    return root / "train", val


def _torchvision_cifar10() -> DataSource:
    sets = [_download_cifar10(split) for split in ("train", "test")]  # offline: one message naming the 3 sources
    return DataSource("CIFAR-10", sets[0].origin, sets[0], sets[1],
                      _key(images_digest(sets[0].images), images_digest(sets[1].images)))


def resolve_data(data: str | os.PathLike | None, work: Path, *, image_size: int = 32, val_per_class: int | None = None,
                 download: bool = True, progress: bool = True) -> DataSource:
    """The demo's data, from the first source that has it: ``data``, then ``$LIGHTLABEL_DATA`` or a ``shared/data``
    folder beside the checkout (CIFAR-10), then a CIFAR-10 download (``download``).

    Raises:
        FileNotFoundError: ``data`` missing, empty or without train/ and val/ (or test/); or no source at all (one
            message naming the three).
    """
    if data is not None:
        path = Path(data)
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
            stat = path.stat()
            root = work / f"data-{_key(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}"
            for split in ("train", "val", "test"):
                try:
                    extract_image_folder(path, root / split, split=split)
                except ValueError:
                    continue  # the archive has no such split
            origin = f"--data archive {path}"
        elif path.is_dir() and any(path.iterdir()):
            root, origin = path, f"--data {path}"
        else:
            raise _no_data(f"`--data` {path} is missing or empty")
        train_dir, val_dir = _split_dirs(root)
        name = path.name.removesuffix(".tar.gz")
    else:
        shared = default_data_root()
        if shared is not None and (shared / "cifar10" / "train.tar.gz").is_file():
            train_dir = extract_image_folder(shared / "cifar10" / "train.tar.gz", work / "cifar10" / "train", split="train")
            val_dir = extract_image_folder(shared / "cifar10" / "test.tar.gz", work / "cifar10" / "test", split="test",
                                           per_class=val_per_class)
            name, origin = "CIFAR-10", f"shared data {shared}"
        elif download:
            return _torchvision_cifar10()
        else:
            raise _no_data("no shared data found and downloads are off")
    train = load_image_folder(train_dir, size=image_size, cache=work / "decoded" / f"train-{image_size}.pt",
                              progress=progress)
    val = load_image_folder(val_dir, size=image_size, cache=work / "decoded" / f"val-{image_size}.pt", progress=progress)
    if train.classes != val.classes:
        raise ValueError(f"train and val class folders differ: {train.classes[:5]} vs {val.classes[:5]}")
    if val_per_class is not None:
        keep = [i for c in range(len(val.classes)) for i in
                [j for j, t in enumerate(val.targets) if t == c][:val_per_class]]
        val = val.subset(keep)
    return DataSource(name, origin, train, val, _key(images_digest(train.images), images_digest(val.images)))


def _strong_teacher(teacher: str | None, name: str, download: bool) -> tuple[torch.nn.Module, str]:
    """The strong CIFAR-10 teacher: ``teacher`` (a path), else ``name`` from the shared models folder, the cache, or
    its download address.

    Raises:
        FileNotFoundError: none of them (the message says where it looked); ValueError: an unknown ``name``.
    """
    if teacher is not None:
        if not Path(teacher).is_file():
            raise FileNotFoundError(f"`--teacher` {teacher} not found")
        return load_teacher(teacher, input_spec=TEACHER_INPUT), teacher
    if name not in STRONG_TEACHERS:
        raise ValueError(f"`teacher` must be one of {sorted(STRONG_TEACHERS)}, got {name!r}")
    file, url = STRONG_TEACHERS[name]
    shared = default_data_root()
    cached = cache_root() / "models" / file
    for path in ([shared.parent / "models" / file] if shared is not None else []) + [cached]:
        if path.is_file():
            return load_teacher(path, input_spec=TEACHER_INPUT), str(path)
    if not download:
        raise FileNotFoundError(f"no CIFAR-10 teacher: pass --teacher, or put {file} in {cached.parent}")
    from torch.hub import download_url_to_file

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        download_url_to_file(url, str(cached), progress=False)
    except Exception as e:
        raise FileNotFoundError(f"no CIFAR-10 teacher: {file} is not in a shared/models folder or {cached.parent}, and "
                                f"downloading it from {url} failed ({type(e).__name__}); pass --teacher PATH") from None
    finally:
        socket.setdefaulttimeout(previous)
    return load_teacher(cached, input_spec=TEACHER_INPUT), f"downloaded from {url}"


def _weak_teachers() -> list[Path]:
    paths = sorted(WEAK_TEACHERS.glob("cifar10-resnet20-epoch*.pt"))
    if not paths:
        raise FileNotFoundError(f"the packaged weak teachers are missing from {WEAK_TEACHERS} (a broken install?)")
    return paths


def _base(base: str | None, pretrained: str | None) -> tuple[str, str | None, str]:
    if base is not None:
        return base, pretrained, f"{base} / {pretrained}"
    if _cached_rn50():
        return "RN50-quickgelu", "openai", "RN50-quickgelu / openai (OpenAI CLIP)"
    if not proxy_available():
        raise FileNotFoundError(f"RN50/openai is not cached and the proxy base {PROXY_CHECKPOINT} is missing")
    return PROXY_BASE, str(PROXY_CHECKPOINT), (
        f"{PROXY_BASE} (OFFLINE PROXY: no CLIP weights here; a small image tower trained on tiny-imagenet-150 to "
        "match real CLIP text embeddings: 43 % zero-shot top-1 on Imagenette, whose classes it never saw)")


def _cached_rn50() -> bool:
    """Whether RN50-quickgelu/openai weights are in the local Hub cache (never touches the network)."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg("RN50-quickgelu", "openai") or {}
    repo = cfg.get("hf_hub", "").strip("/")
    return bool(repo) and any(isinstance(try_to_load_from_cache(repo, n), str)
                              for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))


def run_demo(*, data: str | None = None, work_dir: str | None = None, base: str | None = None,
             pretrained: str | None = None, teacher: str | None = None, weak_teachers: Sequence[str] | None = None,
             full: bool = False, seed: int = 0, device: str | None = None, progress: bool = True,
             settings: DemoSettings | None = None, download: bool = True,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo and print its table; returns the results (also written to ``<work_dir>/results.json``).

    Args:
        data: an ImageFolder root with ``train/`` and ``val/`` (or ``test/``), or a ``.tar.gz`` of one (default: see
            :func:`resolve_data`).
        work_dir: folder for every stage's state (default ``./lightlabel-demo``); a re-run resumes from it.
        base, pretrained: open_clip base (default: RN50-quickgelu/openai if cached, else the packaged proxy base).
        teacher: the strong teacher's checkpoint (default: the real CIFAR-10 ResNet-20, or ResNet-56 with ``full``).
        weak_teachers: weak-teacher checkpoints (default: the packaged ones for CIFAR-10; for other data, a short
            trajectory trained in the work folder, which the output says).
        full: the paper's sizes (:meth:`DemoSettings.full`). settings: explicit sizes (overrides ``full``).
        download: allow the data and teacher downloads of the last resort.

    Raises:
        FileNotFoundError: no data, no teacher (messages say where they were looked for).
        ValueError: classes the base cannot embed, train and val classes that differ.
    """
    started = time.time()
    cfg = settings or (DemoSettings.full() if full else DemoSettings.cpu())
    work = Path(work_dir or "lightlabel-demo")
    timings: dict[str, float] = {}
    t0 = time.time()
    size = 32
    source = resolve_data(data, work, image_size=size, val_per_class=cfg.val_per_class, download=download,
                          progress=progress)
    train, val = source.train, source.val
    timings["data"] = time.time() - t0
    is_cifar = list(train.classes) == CIFAR10_CLASSES
    base, pretrained, base_note = _base(base, pretrained)
    names, text = list(train.classes), None
    if base == PROXY_BASE:
        names, text = proxy_head(train.classes)
    echo(f"lightlabel demo on {source.name} ({source.origin}): {len(train):,} train / {len(val):,} val images, "
         f"{len(names)} classes ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}), {size} px")
    echo(f"base model: {base_note}")

    t0 = time.time()
    strong, strong_note, weak, weak_note = _demo_teachers(cfg, source, work, teacher, weak_teachers, is_cifar, size,
                                                          seed, device, download, progress)
    timings["teachers"] = time.time() - t0
    echo(f"teachers: strong {type(strong).__name__} ({strong_note}); weak: {weak_note}")
    t0 = time.time()
    projector = _demo_fit(cfg, source, work, names, text, weak, is_cifar, base, pretrained, size, seed, device,
                          progress)
    timings["fit"] = time.time() - t0
    t0 = time.time()
    refine = projector if cfg.distill.refine_steps > 0 else None  # HeLlO Eq. 7 on the projector's image tower
    refine_key = None if refine is None else fingerprint(refine)
    distill_dir = work / f"distill-{_key(cfg.distill.to_dict(), source.fingerprint, fingerprint(strong), seed, refine_key)}"
    distilled = distill_images(train, strong, replace(cfg.distill, image_size=size, seed=seed), projector=refine,
                               device=device, out_dir=distill_dir, progress=progress)
    timings["distill"] = time.time() - t0
    protocol = cfg.protocol.replace(augment=replace(cfg.protocol.augment,
                                                    patches_per_side=math.isqrt(cfg.distill.patches_per_image)))
    rows = []
    for kind, labels in (("projector", projector), ("teacher", strong), ("hard", "hard")):
        t0 = time.time()
        key = _key(protocol.to_dict(), images_digest(distilled.images),
                   fingerprint(projector) if kind == "projector" else None, seed)
        out_dir = work / f"student-{kind}-{key}"
        rows.append(train_student(distilled, labels, protocol, val_set=val.with_transform(lambda x: x.float() / 255),
                                  seed=seed, device=device, out_dir=out_dir, progress=progress))
        timings[f"student_{kind}"] = time.time() - t0

    results = _demo_results(cfg, source, names, base, pretrained, strong_note, weak_note, seed, projector, protocol,
                            rows, distilled, timings, time.time() - started, device)
    _print_table(results, protocol, echo)
    echo(f"\nwall time {results['wall_seconds'] / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); work folder "
         f"{work} (a re-run resumes from it); results in {work / 'results.json'}")
    atomic_write_text(work / "results.json", json.dumps(results, indent=1, default=str))
    return results


def _demo_teachers(cfg: DemoSettings, source: DataSource, work: Path, teacher: str | None,
                   weak_teachers: Sequence[str] | None, is_cifar: bool, size: int, seed: int, device: str | None,
                   download: bool, progress: bool) -> tuple[torch.nn.Module, str, list[Path], str]:
    """``(strong teacher, what it is, weak-teacher checkpoints, what they are)``: given, packaged (CIFAR-10), or a
    short trajectory trained on the data (its last epoch the strong teacher when none is given).

    Raises:
        FileNotFoundError: no strong teacher for this data.
    """
    strong, strong_note = (_strong_teacher(teacher, cfg.teacher, download) if teacher is not None or is_cifar
                           else (None, ""))
    if weak_teachers:
        return (*_require(strong, strong_note), [Path(p) for p in weak_teachers],
                f"{len(weak_teachers)} given checkpoints")
    if is_cifar:
        return (*_require(strong, strong_note), _weak_teachers(),
                "epochs 1-3 of a CIFAR ResNet-20 trajectory (packaged)")
    out = work / f"teachers-{_key(cfg.teachers.to_dict(), source.fingerprint, seed)}"
    paths = train_teachers(source.train, replace(cfg.teachers, seed=seed), out_dir=out,
                           input_spec=InputSpec.imagenet(size), device=device, progress=progress)
    weak_note = (f"epochs {', '.join(p.stem[-3:].lstrip('0') for p in paths[:-1])} of a {cfg.teachers.arch} "
                 "trajectory trained here on your data (weak)")
    if strong is None:
        strong, strong_note = load_teacher(paths[-1]), f"the last epoch of that trajectory ({paths[-1].name})"
    return strong, strong_note, paths[:-1], weak_note


def _demo_results(cfg: DemoSettings, source: DataSource, names: list[str], base: str, pretrained: str | None,
                  strong_note: str, weak_note: str, seed: int, projector: Projector, protocol: EvalProtocol,
                  rows: list, distilled: Any, timings: dict[str, float], total: float,
                  device: str | None) -> dict[str, Any]:
    """The demo's results as one JSON-ready record (what ``results.json`` holds)."""
    before, after = projector.fit_info["history"][0], projector.fit_info["history"][-1]
    return {
        "dataset": source.name, "data_origin": source.origin, "classes": names, "base": base, "pretrained": pretrained,
        "teacher": strong_note, "weak_teachers": weak_note, "settings": {
            "adapter": cfg.adapter.to_dict(), "fit": cfg.fit.to_dict(), "fit_per_class": cfg.fit_per_class,
            "distill": cfg.distill.to_dict(), "protocol": protocol.to_dict()},
        "seed": seed, "adapter_bytes": projector.adapter_nbytes, "fit_before": before, "fit_after": after,
        "fit_ok": bool(after.get("agreement", 0) > before.get("agreement", 1) and after.get("top1", 0) >= before.get("top1", 1)),
        "students": [{"labels": r.label_kind, "top1": r.top1, "extra_storage_bytes": r.extra_storage_bytes,
                      "seconds_per_iter": r.seconds_per_iter, "iterations": r.iterations} for r in rows],
        "stored_soft_label_bytes": soft_label_nbytes(num_classes=len(names), ipc=cfg.distill.ipc,
                                                     epochs=cfg.stored_epochs),
        "stored_soft_label_bytes_imagenet1k": soft_label_nbytes(num_classes=1000, ipc=10, epochs=300),
        "teacher_bytes_imagenet1k_resnet18": teacher_nbytes("resnet18", 1000),
        "distilled_bytes": distilled.storage_nbytes, "timings": timings, "wall_seconds": total,
        "device": str(torch.device(device)) if device else ("cuda" if torch.cuda.is_available() else "cpu")}


def _require(strong: torch.nn.Module | None, note: str = "") -> tuple[torch.nn.Module, str]:
    if strong is None:
        raise FileNotFoundError("no strong teacher for this data: pass --teacher")
    return strong, note


def _demo_fit(cfg: DemoSettings, source: DataSource, work: Path, names: list[str], text: torch.Tensor | None,
              weak: list[Path], is_cifar: bool, base: str, pretrained: str | None, size: int, seed: int,
              device: str | None, progress: bool) -> Projector:
    """The adapter fitted to the weak teachers (HeLlO Eq. 5), in a work folder named by its inputs; saved to
    ``<work>/adapter``."""
    train = source.train
    if cfg.fit_per_class is not None:
        train = train.subset([i for c in range(len(train.classes)) for i in
                              [j for j, t in enumerate(train.targets) if t == c][:cfg.fit_per_class]])
    hashes = [file_digest(p)[:16] for p in weak]
    key = _key(cfg.adapter.to_dict(), cfg.fit.to_dict(), cfg.fit_per_class, source.fingerprint, hashes, base,
               pretrained, seed)
    fit_dir = work / f"fit-{key}"
    projector = fit_adapter(train, names, teachers=weak, teacher_input=TEACHER_INPUT if is_cifar else None,
                            base=base, pretrained=pretrained, text_embeddings=text, config=cfg.adapter,
                            fit=replace(cfg.fit, image_size=size, seed=seed), out_dir=fit_dir, device=device,
                            progress=progress)
    projector.save_pretrained(work / "adapter", dataset=source.name)
    return projector


def _print_table(r: dict[str, Any], protocol: EvalProtocol, echo: Callable[[str], None]) -> None:
    before, after = r["fit_before"], r["fit_after"]
    names = {"projector": "projector labels (online)", "teacher": "online teacher labels", "hard": "hard labels"}
    steps = r["students"][0]["iterations"]
    echo("")
    echo(f"held-out labellers: base zero-shot top-1 {before.get('top1', float('nan')):.3f} -> fitted projector "
         f"{after.get('top1', float('nan')):.3f}; agreement with the weak teachers "
         f"{before.get('agreement', float('nan')):.3f} -> {after.get('agreement', float('nan')):.3f}; weak-teacher "
         f"ensemble top-1 {after.get('teacher_top1', float('nan')):.3f}")
    if not r["fit_ok"]:
        echo("ADAPTER FIT CHECK FAILED: fitting must raise the agreement and keep top-1 at or above zero-shot. "
             "This is a bug to chase (please report it with `lightlabel doctor`), not a property of the method.")
    echo(f"\nstudent {protocol.student} on {r['distilled_bytes']:,} bytes of distilled images ({protocol.name} protocol:"
         f" {steps} steps, batch {protocol.batch_size}, RDED's views)")
    echo(f"{'labels':<28} {'top-1':>7} {'extra bytes':>14} {'s / iteration':>14}")
    for s in r["students"]:
        echo(f"{names[s['labels']]:<28} {100 * s['top1']:>6.1f}% {s['extra_storage_bytes']:>14,} "
             f"{s['seconds_per_iter']:>14.3f}")
    echo(f"\nstored fp16 soft labels the projector replaces: {r['stored_soft_label_bytes']:,} bytes here (IPC "
         f"{r['settings']['distill']['ipc']}, {len(r['classes'])} classes, 300 epochs); "
         f"{r['stored_soft_label_bytes_imagenet1k']:,} bytes at ImageNet-1k scale (IPC 10, 300 epochs), where a "
         f"ResNet-18 teacher is {r['teacher_bytes_imagenet1k_resnet18']:,} bytes and HeLlO's RN50 adapter 3.3 MB.")
