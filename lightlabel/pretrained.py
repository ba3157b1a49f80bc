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

import logging
import os
import socket
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .classes import imagenet_class_indices, imagenet_wnids
from .inputs import InputSpec

__all__ = ["SCHEMES", "ClassSubset", "imagenet_subset_indices", "is_model_name", "load_pretrained",
           "packaged_teacher_path", "packaged_teachers", "restrict_classes", "restrict_to_subset"]

#: the schemes of a model name (anything else is a local file)
SCHEMES: tuple[str, ...] = ("torchvision", "timm", "hf-hub", "lightlabel")
PACKAGED_TEACHERS = Path(__file__).resolve().parent / "assets" / "demo-teachers"
DOWNLOAD_TIMEOUT_S = 30
#: what the recipes say when a model's classes are not the dataset's
SUBSET_HINT = ("a 1000-class ImageNet model is restricted to a subset automatically when the dataset's folders are "
               "WordNet ids; otherwise pass lightlabel.pretrained.restrict_classes(model, wnids_or_indices)")


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


class ClassSubset(nn.Module):
    """A classifier's logits for some of its classes, in a given order: a 1000-class ImageNet teacher or observer
    (``torchvision:resnet18``, RDED's and SRe2L's) used on a subset such as Imagenette.

    Args:
        model: the classifier, ``(B, 3, H, W) -> (B, K)`` logits; its ``input_spec`` is carried over.
        indices: the ``C`` class indices of ``model`` to keep, in the subset's label order.
        classes: the subset's class names (default: the model's names at ``indices``, when it has ``classes``).

    Raises:
        ValueError: ``indices`` empty, not integers, or outside ``[0, K)`` when ``K`` can be read off the model.

    Shape:
        ``(B, 3, H, W) -> (B, C)``, the model's logits at ``indices`` (the softmax is then over the subset only).
    """

    def __init__(self, model: nn.Module, indices: Sequence[int], classes: Sequence[str] | None = None) -> None:
        super().__init__()
        idx = list(indices)
        if not idx or any(isinstance(i, bool) or not isinstance(i, int) for i in idx):
            raise ValueError(f"`indices` must be a non-empty sequence of class indices, got {indices!r}")
        count = _logits_count(model)
        if count is not None and not all(0 <= i < count for i in idx):
            raise ValueError(f"`indices` must lie in [0, {count}) (the model's classes), got {idx[:8]}")
        self.model = model
        self.register_buffer("indices", torch.tensor(idx, dtype=torch.long), persistent=False)
        own = getattr(model, "classes", None)
        self.classes = list(classes) if classes is not None else ([own[i] for i in idx] if own else None)
        if getattr(model, "input_spec", None) is not None:
            self.input_spec = model.input_spec
        self.source = f"{getattr(model, 'source', type(model).__name__)}[{len(idx)} classes]"

    def forward(self, images: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.model(images, **kwargs).index_select(-1, self.indices)


def restrict_classes(model: nn.Module, classes: Sequence[str | int]) -> ClassSubset:
    """``model`` restricted to a subset of its classes: ImageNet-1k WordNet ids (``"n01440764"``, the folder names
    of ImageNet subsets) or class indices, in the subset's label order.

    Example:
        >>> from torch import nn
        >>> teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 1000))
        >>> restrict_classes(teacher, ["n01440764", "n02102040"])(torch.zeros(4, 3, 2, 2)).shape
        torch.Size([4, 2])

    Raises:
        ValueError: an id that is not an ImageNet-1k WordNet id, or an index out of range.
        TypeError: a single string instead of a sequence.
    """
    if isinstance(classes, str):
        raise TypeError(f"`classes` must be a sequence of WordNet ids or indices, got the string {classes!r}")
    items = list(classes)
    if items and all(isinstance(c, str) for c in items):
        return ClassSubset(model, imagenet_class_indices(items))
    return ClassSubset(model, items)


def imagenet_subset_indices(num_outputs: int, class_names: Sequence[str] | None) -> list[int] | None:
    """The ImageNet-1k indices of ``class_names`` when a ``num_outputs``-class model can label them by restriction:
    the model has the 1000 ImageNet-1k classes and every name is one of their WordNet ids (the folder names of an
    ImageNet subset read as an ``ImageFolder``). ``None`` otherwise."""
    if num_outputs != 1000 or not class_names:
        return None
    wnids = set(imagenet_wnids())
    if not all(isinstance(c, str) and c in wnids for c in class_names):
        return None
    indices = imagenet_class_indices(list(class_names))
    return None if indices == list(range(1000)) else indices


def restrict_to_subset(model: nn.Module, class_names: Sequence[str] | None) -> nn.Module:
    """``model`` as it is, or restricted to ``class_names`` (:class:`ClassSubset`) when it has the 1000 ImageNet-1k
    classes and every name is one of their WordNet ids (:func:`imagenet_subset_indices`): what the recipes do with a
    pretrained ImageNet teacher or observer on an ImageNet subset. Logged at INFO when it restricts."""
    count = _logits_count(model)
    subset = imagenet_subset_indices(count, class_names) if count is not None else None
    if subset is None:
        return model
    logging.getLogger(__name__).info("%s: its 1000 ImageNet-1k logits are restricted to the dataset's %d "
                                     "WordNet-id classes", getattr(model, "source", type(model).__name__), len(subset))
    return ClassSubset(model, subset)
