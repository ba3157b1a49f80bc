"""What a student run reads from its training images, as one protocol: :class:`TrainingSet`.

A :class:`~lightlabel.DistilledSet` (RDED images, or a random subset) and a :class:`~lightlabel.FactorizedSet`
(HaBa bases and hallucinators, new images every epoch) both implement it, so :func:`lightlabel.train_student`,
stored labels and the label-view diagnostic treat them alike; it is the counterpart of :class:`~lightlabel.LabelSource`,
the protocol of where the labels come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["TrainingSet"]


@runtime_checkable
class TrainingSet(Protocol):
    """The training-image contract of a student run.

    Attributes:
        classes: class names in label order. labels: ``(N,)`` int64 class indices of the stored images.
        manifest: settings and provenance (JSON-ready).

    Properties:
        image_size: side in pixels of an image (square). num_epoch_images: images per student epoch.
        fingerprint: sha256 of what the set stores (ties stored labels and resume states to it).
        hallucinated: whether the images are made anew each epoch (no view ever repeats).
        patches_per_side: ``f``, patches per side of an image (RDED's 2 x 2 mosaics: 2; whole images: 1); the
            protocol's views shuffle and crop on this grid.

    Methods:
        epoch_images(seed, epoch, device): the ``(N, 3, S, S)`` images of that epoch (uint8, or float in [0, 1]).
        to_device(device): the set with its tensors on ``device`` for a whole run (the caller's set never moves).
    """

    classes: Sequence[str]
    labels: torch.Tensor
    manifest: dict[str, Any]

    @property
    def image_size(self) -> int: ...

    @property
    def num_epoch_images(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def hallucinated(self) -> bool: ...

    @property
    def patches_per_side(self) -> int: ...

    def epoch_images(self, seed: int, epoch: int, device: torch.device | str | None = None) -> torch.Tensor: ...

    def to_device(self, device: torch.device | str) -> TrainingSet: ...
