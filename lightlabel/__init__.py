"""lightlabel: online soft labels from a frozen CLIP model plus a few-MB adapter (HeLlO).

Public API::

    Projector          frozen open_clip image tower + LoRA + text-initialised low-rank head
    OnlineRelabeler    augment a batch on its device (CutMix/Mixup), then label it online
    SoftLabelLoss      MSE on logits + ce_weight * CE (HeLlO Alg. 1 line 14); soft_label_loss is its function
    TeacherEnsemble    mean logits of several teachers (vmapped when architectures match)
    fit_adapter        fit an adapter to weak teachers in one call (HeLlO Eq. 5)
    train_teachers     train one teacher and keep early checkpoints ("weak teachers")
    load_teacher(s)    teacher checkpoints (ours, or plain state dicts such as the CIFAR ResNets)
    distill_images     RDED patch selection + stitching + Eq. 7 refinement -> DistilledSet
    train_student      the evaluation protocol: a student on distilled images with projector/teacher/stored/hard labels
    store_soft_labels  the SRe2L-style baseline: every augmented view labelled once and stored (StoredSoftLabels)
    AdapterError       every damaged/mismatched adapter file raises this (a ValueError)
    read_adapter       read and verify an adapter file's header and tensors
    storage_report     stored soft labels vs teacher vs adapter, in bytes
"""

from .adapter_io import AdapterConfig, AdapterInfo, read_adapter
from .distill import DistilledSet, distill_images
from .errors import AdapterError
from .fit import fit_adapter
from .losses import SoftLabelLoss, soft_label_loss
from .models import load_teacher
from .projector import Projector
from .relabel import OnlineRelabeler
from .storage import StorageReport, storage_report
from .stored import StoredSoftLabels, store_soft_labels
from .student import StudentResult, train_student
from .teachers import TeacherEnsemble, load_teachers, train_teachers
from .templates import HELIO_TEMPLATES, OPENAI_IMAGENET_TEMPLATES
from .version import __version__

__all__ = [
    "HELIO_TEMPLATES",
    "OPENAI_IMAGENET_TEMPLATES",
    "AdapterConfig",
    "AdapterError",
    "AdapterInfo",
    "DistilledSet",
    "OnlineRelabeler",
    "Projector",
    "SoftLabelLoss",
    "StorageReport",
    "StoredSoftLabels",
    "StudentResult",
    "TeacherEnsemble",
    "__version__",
    "distill_images",
    "fit_adapter",
    "load_teacher",
    "load_teachers",
    "read_adapter",
    "soft_label_loss",
    "storage_report",
    "store_soft_labels",
    "train_student",
    "train_teachers",
]
