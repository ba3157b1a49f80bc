"""The random-subset baseline: IPC real training images per class, chosen by seed, stored like a distilled set.

The field now asks how much of a distilled set's score is the images and how much the labels ("Rethinking Dataset
Distillation: Hard Truths about Soft Labels", CVPR 2026; DD-Ranking's Label-Robust and Augmentation-Robust Scores):
a random subset evaluated the same way is the baseline. :func:`random_subset` builds one as a
:class:`~lightlabel.DistilledSet` (whole images, one per picture: ``patches_per_image = 1``), so it goes wherever a
distilled set goes (:func:`~lightlabel.train_student`, ``save``/``load``, stored labels), and its manifest records how
it was drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..configs import int_arg
from ..data import as_dataset, class_names_and_targets
from ..sets import DistilledSet
from ..utils.hashing import bytes_digest
from ..utils.seeding import generator
from .distill import _as_float, _source_id

__all__ = ["random_subset"]


def random_subset(train_set: Dataset, ipc: int, *, seed: int = 0, image_size: int | None = None,
                  class_names: Sequence[str] | None = None) -> DistilledSet:
    """``ipc`` real images per class drawn uniformly without replacement, as a :class:`~lightlabel.DistilledSet`.

    Class ``c`` draws from a generator seeded by ``(seed, "random-subset", c)`` alone, so a class's images do not depend
    on the other classes, and the same ``(train_set, ipc, seed)`` always gives the same set (DD-Ranking draws a fresh
    subset per evaluation round; here the seed is that round).

    Args:
        train_set: a map-style dataset of ``(image, label)`` (uint8 ``(3, H, W)`` tensors, float ones in [0, 1], or
            PIL images) with ``classes``/``targets`` as torchvision's ImageFolder has them, or an ImageFolder path.
        ipc: images per class, ``>= 1``; every class must have at least that many.
        seed: the draw.
        image_size: resize the shorter side to this and center-crop (default: the images' own size; they must then
            share one size).
        class_names: class names in label order (default: ``train_set.classes``).

    Returns:
        The subset: ``(N, 3, S, S)`` uint8 images, ``N = ipc * C``, in class order; ``sources`` hold each image's id
        in ``train_set``; the manifest records ``method="random"``, ``ipc``, ``seed`` and ``patches_per_image=1``.
        Its :attr:`~lightlabel.DistilledSet.fingerprint` is the sha256 of the images.

    Raises:
        ValueError: ``ipc`` or ``image_size`` not an int >= 1, ``seed`` not an int >= 0, a class with fewer than
            ``ipc`` images, no class names, labels outside ``class_names``
            (:func:`lightlabel.data.class_names_and_targets`), or images of different sizes without ``image_size``.

    Shape:
        ``images``: ``(ipc * C, 3, S, S)`` uint8; ``labels``: ``(ipc * C,)`` int64.

    Example:
        >>> import torch
        >>> from lightlabel.data import TensorImageDataset
        >>> data = TensorImageDataset(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                           ["cat", "dog"])
        >>> subset = random_subset(data, 2, seed=0)
        >>> len(subset), subset.manifest["method"], subset.labels.tolist()
        (4, 'random', [0, 0, 1, 1])
    """
    int_arg(ipc, "ipc", 1)
    int_arg(seed, "seed", 0)
    int_arg(image_size, "image_size", 1, optional=True)
    dataset = as_dataset(train_set)
    classes, targets = class_names_and_targets(dataset, class_names)
    resize = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]) if image_size else None
    images, labels, sources = [], [], []
    for c, name in enumerate(classes):
        pool = torch.nonzero(targets == c).flatten()
        if len(pool) < ipc:
            raise ValueError(f"class {name!r} has {len(pool)} images, fewer than `ipc` = {ipc}")
        chosen = pool[torch.randperm(len(pool), generator=generator(seed, "random-subset", c))[:ipc]].sort().values
        for i in chosen.tolist():
            image = (_as_float(dataset[i][0]) * 255).round().clamp(0, 255).to(torch.uint8)
            images.append(resize(image) if resize is not None else image)
            labels.append(c)
            sources.append([_source_id(dataset, i)])
    sizes = {tuple(im.shape) for im in images}
    if len(sizes) > 1:
        raise ValueError(f"images of different sizes {sorted(sizes)[:3]}; pass `image_size`")
    digest = bytes_digest("\n".join(s[0] for s in sources).encode())
    manifest = {"method": "random", "ipc": ipc, "seed": seed, "patches_per_image": 1, "image_size": images[0].shape[-1],
                "source_ids_sha256": digest}
    return DistilledSet(torch.stack(images), torch.tensor(labels), classes, sources, manifest)
