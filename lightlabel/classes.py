"""Class names and indices: ImageNet-1k classes by WordNet id, for subsets such as Imagenette or ImageNet-100.

Distillation codebases and torchvision number classes by sorted folder name (for ImageNet, the WordNet id); a
projector needs readable names for its text head, and a 1000-class teacher needs the ImageNet-1k index of each
subset class. These helpers read the class order shipped in the package (``assets/imagenet1k_wnids.txt``, the
standard sorted order, the same as ``open_clip.IMAGENET_CLASSNAMES``). Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

__all__ = ["check_class_order", "class_order_message", "imagenet_class_indices", "imagenet_class_names", "imagenet_wnids",
           "logit_class_names"]

WNIDS = Path(__file__).resolve().parent / "assets" / "imagenet1k_wnids.txt"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order: line ``i`` is class ``i``.

    Example:
        >>> imagenet_wnids()[:2]
        ('n01440764', 'n01443537')
    """
    return tuple(WNIDS.read_text().split())


def imagenet_class_indices(wnids: Sequence[str]) -> list[int]:
    """The ImageNet-1k index of each WordNet id, in the given order (e.g. to take a 1000-class teacher's logits
    for a subset: ``logits[:, imagenet_class_indices(subset_wnids)]``).

    Raises:
        ValueError: an id that is not an ImageNet-1k class (the first few are listed).
        TypeError: a single string instead of a sequence of ids.

    Example:
        >>> imagenet_class_indices(["n01440764", "n02102040"])  # tench, English springer (Imagenette)
        [0, 217]
    """
    if isinstance(wnids, str):
        raise TypeError(f"`wnids` must be a sequence of WordNet ids, got the string {wnids!r} (use [{wnids!r}])")
    order = {w: i for i, w in enumerate(imagenet_wnids())}
    missing = [w for w in wnids if w not in order]
    if missing:
        raise ValueError(f"not ImageNet-1k WordNet ids: {list(missing)[:5]} (expected ids such as 'n01440764')")
    return [order[w] for w in wnids]


def imagenet_class_names(wnids: Sequence[str]) -> list[str]:
    """Readable class names (``open_clip.IMAGENET_CLASSNAMES``, the names CLIP's ImageNet prompts use) of WordNet
    ids, in the given order: the ``class_names`` to build a projector for a subset whose folders are WordNet ids.

    Raises:
        ValueError: an id that is not an ImageNet-1k class.
        TypeError: a single string instead of a sequence of ids.

    Example:
        >>> imagenet_class_names(["n01440764", "n02102040"])
        ['tench', 'English Springer Spaniel']
    """
    from open_clip import IMAGENET_CLASSNAMES

    return [IMAGENET_CLASSNAMES[i] for i in imagenet_class_indices(wnids)]


def logit_class_names(model: object) -> tuple[str, ...] | None:
    """The names a labeller gives its logit columns, in column order: a projector's ``class_names``, a teacher's or
    ensemble's ``classes`` (recorded in lightlabel checkpoints, set by :func:`lightlabel.load_teacher` for
    pretrained models); ``None`` when the model names none."""
    names = getattr(model, "class_names", None) or getattr(model, "classes", None)
    if not names or isinstance(names, str) or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)


def check_class_order(label_names: Sequence[str] | None, class_names: Sequence[str] | None, *, what: str) -> None:
    """Refuse labels whose columns name the images' classes in a different order: each image would be taught another
    class's label, silently. Nothing is checked when either side names no classes, or when they name different
    classes (a teacher may call ImageNet classes by name and the images by WordNet id, in the same order).

    Args:
        label_names: the labeller's column names (:func:`logit_class_names`). class_names: the images' classes, in
            label-index order. what: the labeller, in the message (``"the projector"``, ``"the observer"``).

    Raises:
        ValueError: the same names in a different order (:func:`class_order_message` says which and how to reorder).

    Example:
        >>> check_class_order(("cat", "dog"), ["cat", "dog"], what="the teacher")  # same order: nothing raised
    """
    message = class_order_message(label_names, class_names, what=what)
    if message is not None:
        raise ValueError(message)


def class_order_message(label_names: Sequence[str] | None, class_names: Sequence[str] | None, *,
                        what: str) -> str | None:
    """The error for labels whose columns are the images' classes in a different order, naming the first positions
    that differ and how to reorder (``projector.remap``, :func:`lightlabel.pretrained.restrict_classes` with the
    indices for a teacher); ``None`` when the two agree, either is missing, or they name different classes."""
    if not label_names or not class_names:
        return None
    ours, theirs = tuple(label_names), tuple(class_names)
    if ours == theirs or len(ours) != len(theirs) or set(ours) != set(theirs):
        return None
    moved = [(i, theirs[i], ours[i]) for i in range(len(ours)) if ours[i] != theirs[i]]
    where = {n: i for i, n in enumerate(ours)}
    return (
        f"the labels of {what} name the images' {len(ours)} classes in a different order ({len(moved)} of "
        f"{len(ours)} positions differ, e.g. " + "; ".join(f"{i}: images {d!r}, labels {m!r}" for i, d, m in moved[:3])
        + "); they would be silently wrong. Reorder the labeller: projector.remap(class_names) for a projector, "
        f"lightlabel.pretrained.restrict_classes(teacher, {[where[n] for n in theirs][:10]}"
        f"{'...' if len(theirs) > 10 else ''}) for a teacher")
