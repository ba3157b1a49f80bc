"""Pretrained teachers, observers and students by name, through the libraries' own caches.

A model source is one string:

- ``torchvision:<name>`` or ``torchvision:<name>:<weights>``: a torchvision classifier with its pretrained weights
  (``<weights>`` is a member of its weights enum such as ``IMAGENET1K_V1``; default ``DEFAULT``, torchvision's
  default). Weights come from torch hub's cache (``torch.hub.get_dir()/checkpoints``), downloaded there on first use.
- ``timm:<name>``: a timm model with pretrained weights (``timm:resnet18.a1_in1k``), through the Hugging Face cache.
- ``hf-hub:<org>/<repo>``: a timm model published on the Hub (``hf-hub:timm/resnet18.a1_in1k``).
- ``lightlabel:<name>``: a teacher shipped inside the package (:func:`packaged_teachers`), offline.
- anything else is a local checkpoint file (:func:`lightlabel.models.load_teacher`).

Every model comes back in eval mode with frozen weights and carries ``input_spec`` (its normalisation and input
size, read from the weights' own metadata: torchvision's transforms, timm's ``pretrained_cfg``) and ``classes``.
Offline with nothing cached, loading raises one :class:`FileNotFoundError` that names the cache folder to fill.
"""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

from torch import nn

from .inputs import InputSpec

__all__ = ["SCHEMES", "is_model_name", "load_pretrained", "packaged_teacher_path", "packaged_teachers"]

#: the schemes of a model name (anything else is a local file)
SCHEMES: tuple[str, ...] = ("torchvision", "timm", "hf-hub", "lightlabel")
PACKAGED_TEACHERS = Path(__file__).resolve().parent / "assets" / "demo-teachers"
DOWNLOAD_TIMEOUT_S = 30


def is_model_name(source: str | os.PathLike) -> bool:
    """Whether ``source`` names a model by scheme (``torchvision:``, ``timm:``, ``hf-hub:``, ``lightlabel:``) rather
    than a local file. An existing local file always counts as a file."""
    text = os.fspath(source)
    scheme, sep, rest = text.partition(":")
    return bool(sep and rest) and scheme in SCHEMES and not Path(text).is_file()


def packaged_teachers() -> dict[str, Path]:
    """The teachers shipped inside the package, by name: ``cifar10-resnet20-epoch1`` ... ``epoch3``, early
    checkpoints of one real CIFAR-10 ResNet-20 trajectory (HeLlO's "weak teachers"; fp16, 0.58 MB each).

    Returns:
        ``{name: checkpoint path}`` (``lightlabel:<name>`` loads one).
    """
    return {f"cifar10-resnet20-epoch{int(p.stem[-3:])}": p
            for p in sorted(PACKAGED_TEACHERS.glob("cifar10-resnet20-epoch*.pt"))}


def packaged_teacher_path(name: str) -> Path:
    """The checkpoint file of the packaged teacher ``name`` (``lightlabel:<name>`` or ``<name>``).

    Raises:
        FileNotFoundError: no such packaged teacher (the shipped names are listed).
    """
    name = name.removeprefix("lightlabel:")
    paths = packaged_teachers()
    if name not in paths:
        raise FileNotFoundError(f"no packaged teacher {name!r}; shipped: {sorted(paths)}")
    return paths[name]


def load_pretrained(source: str, *, num_classes: int | None = None, device: str = "cpu") -> nn.Module:
    """A frozen eval-mode model from a model name (see the module docstring for the schemes).

    Args:
        source: ``torchvision:<name>[:<weights>]``, ``timm:<name>`` or ``hf-hub:<repo>`` (``lightlabel:<name>``
            names a packaged checkpoint file: :func:`packaged_teacher_path`, loaded by ``load_teacher``).
        num_classes: the classes you expect; a model with another number is an error (``None``: no check).
        device: where the module goes.

    Returns:
        The model, with ``input_spec`` (:class:`~lightlabel.InputSpec`) and ``classes`` (names, or ``None``).

    Raises:
        ValueError: an unknown scheme, model or weights name (the message lists valid choices), or a model whose
            number of classes differs from ``num_classes``.
        FileNotFoundError: the weights are not cached and cannot be downloaded (the message names the cache folder
            to fill), or a packaged teacher that is not shipped.

    Shape:
        The model maps ``(B, 3, H, W)`` images normalised with its ``input_spec`` to ``(B, num_classes)`` logits.
    """
    scheme, _, rest = source.partition(":")
    if scheme == "torchvision":
        model = _torchvision(rest)
    elif scheme in ("timm", "hf-hub"):
        model = _timm(rest if scheme == "timm" else source)
    elif scheme == "lightlabel":
        raise ValueError(f"{source}: packaged teachers are checkpoint files, loaded by lightlabel.load_teacher "
                         f"(see packaged_teacher_path)")
    else:
        raise ValueError(f"model source {source!r} has no known scheme; use one of "
                         f"{[s + ':' for s in SCHEMES]} or a local checkpoint file")
    out = _logits_count(model)
    if num_classes is not None and out is not None and out != num_classes:
        raise ValueError(f"{source} has {out} classes but {num_classes} are expected")
    return model.eval().requires_grad_(False).to(device)


def _logits_count(model: nn.Module) -> int | None:
    classes = getattr(model, "classes", None)
    if classes:
        return len(classes)
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1].out_features if heads else None


def _offline(what: str, folder: str | Path, error: BaseException) -> FileNotFoundError:
    return FileNotFoundError(f"{what} is not cached and could not be downloaded ({type(error).__name__}: "
                             f"{textwrap.shorten(str(error).splitlines()[0], 200) if str(error) else ''}); put the "
                             f"weights into {folder} "
                             f"on a machine with network access, or pass a local checkpoint file")


def _torchvision(rest: str) -> nn.Module:
    import torch
    import torchvision

    name, _, weights_name = rest.partition(":")
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = [n for n in names if name[:4] in n][:12] or names[:12]
        raise ValueError(f"torchvision has no classifier {name!r}; e.g. {close} (torchvision.models.list_models())")
    enum = torchvision.models.get_model_weights(name)
    choices = list(enum.__members__)
    if (weights_name or "DEFAULT") not in choices:
        raise ValueError(f"torchvision:{name} has no weights {weights_name!r}; valid: {choices}")
    weights = enum[weights_name or "DEFAULT"]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    cached = (folder / Path(weights.url).name).is_file()
    # torchvision's download (urllib) takes no timeout, so a download gets the process-wide socket default for its
    # duration; a cached file needs no network and leaves it untouched
    previous = socket.getdefaulttimeout()
    if not cached:
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as e:  # URLError, timeouts, HTTP errors: the file is not there and cannot be fetched
        if cached:
            raise  # a cached file that does not load is not a network problem
        raise _offline(f"torchvision:{name}:{weights.name} ({Path(weights.url).name})", folder, e) from None
    finally:
        if not cached:
            socket.setdefaulttimeout(previous)
    t = weights.transforms()
    model.input_spec = InputSpec(tuple(t.mean), tuple(t.std), int(t.crop_size[0]))
    model.classes = list(weights.meta.get("categories") or []) or None
    model.source = f"torchvision:{name}:{weights.name}"
    return model


def _timm(name: str) -> nn.Module:
    import timm
    from huggingface_hub import constants

    if not name.startswith("hf-hub:"):
        arch, _, tag = name.partition(".")
        if not timm.list_models(arch, pretrained=False):
            raise ValueError(f"timm has no model {name!r} (see timm.list_models(pretrained=True))")
        if tag and name not in timm.list_pretrained(name):
            valid = timm.list_pretrained(f"{arch}.*")
            raise ValueError(f"timm has no pretrained tag {tag!r} for {arch!r}; valid: "
                             f"{', '.join(valid) if valid else 'none (timm has no pretrained weights for it)'}")
    try:
        model = timm.create_model(name, pretrained=True)
    except RuntimeError as e:
        if any(k in str(e) for k in ("No pretrained weights", "not exist", "Invalid pretrained tag")):
            raise ValueError(f"timm:{name}: {str(e).splitlines()[0]}") from None
        raise _offline(name, constants.HF_HUB_CACHE, e) from None
    except (OSError, ValueError) as e:  # LocalEntryNotFoundError (offline), connection errors
        raise _offline(name if name.startswith("hf-hub:") else f"timm:{name}", constants.HF_HUB_CACHE, e) from None
    cfg = timm.data.resolve_data_config(model=model)
    model.input_spec = InputSpec(tuple(cfg["mean"]), tuple(cfg["std"]), int(cfg["input_size"][-1]))
    label_names = getattr(model, "pretrained_cfg", {}).get("label_names")
    model.classes = list(label_names) if label_names else None
    model.source = name if name.startswith("hf-hub:") else f"timm:{name}"
    return model
