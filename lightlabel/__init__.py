"""lightlabel: online soft labels from a frozen CLIP model plus a few-MB adapter (HeLlO).

Public API (everything a user imports; the submodules below are documented for the rest)::

    Projector            frozen open_clip image tower + LoRA + text-initialised low-rank head
    AdapterConfig        its ranks, alphas, LoRA targets and head mode
    InputSpec            what a model expects: mean, std, image size (every labeller and teacher carries one)
    OnlineRelabeler      augment a batch on its device, then label the views online
    AugmentConfig        the views (RDED's ShufflePatches + crop + flip + CutMix by default)
    LabelSource          the protocol of label sources; HardLabels, StoredSoftLabels and any model implement it
    SoftLabelLoss        MSE on logits + ce_weight * CE (HeLlO Alg. 1 line 14); soft_label_loss is its function
    TeacherEnsemble      mean logits of several teachers (vmapped when architectures match)
    TeacherModule        any labeller as a host loop's teacher module (projector.as_teacher); calibrate_scale
    fit_adapter          fit an adapter to weak teachers in one call (HeLlO Eq. 5); FitConfig
    train_teachers       train one teacher and keep early checkpoints ("weak teachers"); TeacherConfig
    select_teachers      which checkpoints of a trajectory to imitate, by short student runs -> TeacherSelection
    load_teacher(s)      teacher checkpoints (ours, or plain state dicts with an InputSpec)
    distill_images       RDED patch selection + stitching + Eq. 7 refinement -> DistilledSet; DistillConfig
    random_subset        the random-subset baseline: IPC real images per class by seed, as a DistilledSet
    factorize_images     HaBa bases + shared hallucinators (distribution matching) -> FactorizedSet; FactorizeConfig
    train_student        a student on a distilled or factorised set under an EvalProtocol (rded / helio presets)
    label_view_agreement how often a labeller names a class that is in the view
    store_soft_labels    the SRe2L-style baseline: every view labelled once and stored (StoredSoftLabels), or
                         compressed as LPLD / LPQLD do (LabelCompression: top-k, int8, label pruning)
    AdapterError         every damaged/mismatched adapter file raises this (a ValueError)
    read_adapter         read and verify an adapter file's header and tensors
    list_adapters        published adapters with their provenance (one ships in the package, offline)
    storage_report       stored soft labels vs teacher vs adapter, in bytes

Layers (each imports only from those before it): ``utils``, ``storage``, ``data`` -> ``io`` -> ``core`` ->
``models`` -> ``labeling`` -> ``recipes`` -> ``cli``, ``demo``.

Imports are lazy (PEP 562): ``import lightlabel`` loads nothing heavy, and each public name loads its module
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

#: public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "AdapterConfig": "configs",
    "AugmentConfig": "configs",
    "DistillConfig": "configs",
    "EvalProtocol": "configs",
    "FitConfig": "configs",
    "FactorizeConfig": "configs",
    "FactorizedSet": "recipes.factorize",
    "factorize_images": "recipes.factorize",
    "LabelCompression": "configs",
    "TeacherConfig": "configs",
    "Projector": "core.projector",
    "TeacherModule": "core.teacher_module",
    "calibrate_scale": "core.teacher_module",
    "HELIO_TEMPLATES": "core.templates",
    "OPENAI_IMAGENET_TEMPLATES": "core.templates",
    "AdapterError": "errors",
    "InputSpec": "inputs",
    "with_input_spec": "inputs",
    "AdapterInfo": "io.adapter_format",
    "read_adapter": "io.adapter_format",
    "list_adapters": "io.registry",
    "SoftLabelLoss": "labeling.losses",
    "soft_label_loss": "labeling.losses",
    "OnlineRelabeler": "labeling.relabel",
    "HardLabels": "labeling.sources",
    "LabelSource": "labeling.sources",
    "StoredSoftLabels": "labeling.stored",
    "store_soft_labels": "labeling.stored",
    "TeacherEnsemble": "labeling.teachers",
    "load_teachers": "labeling.teachers",
    "load_teacher": "models",
    "DistilledSet": "recipes.distill",
    "distill_images": "recipes.distill",
    "random_subset": "recipes.subset",
    "fit_adapter": "recipes.fit",
    "TeacherSelection": "recipes.select",
    "select_teachers": "recipes.select",
    "StudentResult": "recipes.student",
    "label_view_agreement": "recipes.student",
    "train_student": "recipes.student",
    "train_teachers": "recipes.teachers",
    "StorageReport": "storage",
    "storage_report": "storage",
}

#: documented submodules, reachable as attributes (``lightlabel.models.build_model``)
_SUBMODULES = frozenset({"cli", "configs", "core", "data", "demo", "errors", "inputs", "io", "labeling", "models",
                         "recipes", "storage", "testing", "utils"})

__all__ = [
    "HELIO_TEMPLATES",
    "OPENAI_IMAGENET_TEMPLATES",
    "AdapterConfig",
    "AdapterError",
    "AdapterInfo",
    "AugmentConfig",
    "DistillConfig",
    "DistilledSet",
    "EvalProtocol",
    "FactorizeConfig",
    "FactorizedSet",
    "FitConfig",
    "HardLabels",
    "InputSpec",
    "LabelCompression",
    "LabelSource",
    "OnlineRelabeler",
    "Projector",
    "SoftLabelLoss",
    "StorageReport",
    "StoredSoftLabels",
    "StudentResult",
    "TeacherConfig",
    "TeacherEnsemble",
    "TeacherModule",
    "TeacherSelection",
    "__version__",
    "calibrate_scale",
    "distill_images",
    "factorize_images",
    "fit_adapter",
    "label_view_agreement",
    "list_adapters",
    "load_teacher",
    "load_teachers",
    "random_subset",
    "read_adapter",
    "select_teachers",
    "soft_label_loss",
    "storage_report",
    "store_soft_labels",
    "train_student",
    "train_teachers",
    "with_input_spec",
]


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562): ``import lightlabel`` stays light (no torch), so the command
    line answers ``--help`` and argument errors at once."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightlabel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static tools see the names as ordinary imports
    from .configs import (
        AdapterConfig,
        AugmentConfig,
        DistillConfig,
        EvalProtocol,
        FactorizeConfig,
        FitConfig,
        LabelCompression,
        TeacherConfig,
    )
    from .core.projector import Projector
    from .core.teacher_module import TeacherModule, calibrate_scale
    from .core.templates import HELIO_TEMPLATES, OPENAI_IMAGENET_TEMPLATES
    from .errors import AdapterError
    from .inputs import InputSpec, with_input_spec
    from .io.adapter_format import AdapterInfo, read_adapter
    from .io.registry import list_adapters
    from .labeling.losses import SoftLabelLoss, soft_label_loss
    from .labeling.relabel import OnlineRelabeler
    from .labeling.sources import HardLabels, LabelSource
    from .labeling.stored import StoredSoftLabels, store_soft_labels
    from .labeling.teachers import TeacherEnsemble, load_teachers
    from .models import load_teacher
    from .recipes.distill import DistilledSet, distill_images
    from .recipes.factorize import FactorizedSet, factorize_images
    from .recipes.fit import fit_adapter
    from .recipes.select import TeacherSelection, select_teachers
    from .recipes.student import StudentResult, label_view_agreement, train_student
    from .recipes.subset import random_subset
    from .recipes.teachers import train_teachers
    from .storage import StorageReport, storage_report
