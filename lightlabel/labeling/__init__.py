"""Labels for a student's views: augmentation, label sources, online relabelling, losses, stored labels.

Builds on :mod:`lightlabel.core` (the projector, input specs); the training recipes in :mod:`lightlabel.recipes`
build on this layer.
"""

from .augment import Augmenter, epoch_views, shuffle_patches
from .losses import SoftLabelLoss, soft_label_loss
from .relabel import OnlineRelabeler
from .sources import HardLabels, LabelSource, ModelLabels, RunInfo, as_label_source
from .stored import StoredSoftLabels, store_soft_labels
from .teachers import TeacherEnsemble, load_teachers

__all__ = [
    "Augmenter",
    "HardLabels",
    "LabelSource",
    "ModelLabels",
    "OnlineRelabeler",
    "RunInfo",
    "SoftLabelLoss",
    "StoredSoftLabels",
    "TeacherEnsemble",
    "as_label_source",
    "epoch_views",
    "load_teachers",
    "shuffle_patches",
    "soft_label_loss",
    "store_soft_labels",
]
