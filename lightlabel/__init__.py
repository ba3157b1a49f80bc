"""lightlabel: online soft labels from a frozen CLIP model plus a few-MB adapter (HeLlO).

Public API::

    Projector          frozen open_clip image tower + LoRA + text-initialised low-rank head
    OnlineRelabeler    augment a batch on its device (CutMix/Mixup), then label it online
    SoftLabelLoss      MSE on logits + ce_weight * CE (HeLlO Alg. 1 line 14); soft_label_loss is its function
    TeacherEnsemble    mean logits of several teachers (vmapped when architectures match)
    AdapterError       every damaged/mismatched adapter file raises this (a ValueError)
    read_adapter       read and verify an adapter file's header and tensors
    storage_report     stored soft labels vs teacher vs adapter, in bytes
"""

from .adapter_io import AdapterConfig, AdapterInfo, read_adapter
from .errors import AdapterError
from .losses import SoftLabelLoss, soft_label_loss
from .projector import Projector
from .relabel import OnlineRelabeler
from .storage import StorageReport, storage_report
from .teachers import TeacherEnsemble
from .templates import HELIO_TEMPLATES, OPENAI_IMAGENET_TEMPLATES
from .version import __version__

__all__ = [
    "HELIO_TEMPLATES",
    "OPENAI_IMAGENET_TEMPLATES",
    "AdapterConfig",
    "AdapterError",
    "AdapterInfo",
    "OnlineRelabeler",
    "Projector",
    "SoftLabelLoss",
    "StorageReport",
    "TeacherEnsemble",
    "__version__",
    "read_adapter",
    "soft_label_loss",
    "storage_report",
]
