"""lightlabel: online soft labels from a frozen CLIP model plus a few-MB adapter (HeLlO).

Layers (each imports only from those before it): ``utils``, ``storage``, ``data`` -> ``io`` -> ``core`` ->
``models`` -> ``labeling`` -> ``recipes`` -> ``cli``, ``demo``.

Imports are lazy (PEP 562): ``import lightlabel`` loads nothing heavy, and each public name loads its module
on first use.

Public API (everything a user imports; the submodules are documented for the rest)::

"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

#: The one list of public names: name -> (the module that defines it, one line). ``__all__``, the lazy loader and
#: the module docstring are derived from it, and so is the generated API reference.
_EXPORTS: dict[str, tuple[str, str]] = {
    "Projector": ("core.projector", "frozen open_clip image tower + LoRA + text-initialised low-rank head (packaged(): offline)"),
    "AdapterConfig": ("configs", "its ranks, alphas, LoRA targets, head mode and labelling size"),
    "InputSpec": ("inputs", "what a model expects: mean, std, image size (every labeller and teacher carries one)"),
    "with_input_spec": ("inputs", "attach an InputSpec to a plain torchvision or timm module"),
    "OnlineRelabeler": ("labeling.relabel", "augment a batch on its device, then label the views online"),
    "AugmentConfig": ("configs", "the views (RDED's ShufflePatches + crop + flip + CutMix by default)"),
    "TrainingSet": ("sets.protocol", "the protocol of training images; DistilledSet and FactorizedSet implement it"),
    "LabelSource": ("labeling.sources", "the protocol of label sources; HardLabels, StoredSoftLabels and any model implement it"),
    "HardLabels": ("labeling.sources", "no soft labels: the mixed hard targets"),
    "SoftLabelLoss": ("labeling.losses", "MSE on logits + ce_weight * CE (HeLlO Alg. 1 line 14), KL or soft CE"),
    "soft_label_loss": ("labeling.losses", "the functional form of SoftLabelLoss"),
    "TeacherEnsemble": ("labeling.teachers", "mean logits of several teachers"),
    "TeacherModule": ("core.teacher_module", "any labeller as a host loop's teacher module (projector.as_teacher)"),
    "calibrate_scale": ("core.teacher_module", "the logit scale that matches a reference teacher's softmax"),
    "load_teacher": ("models", "a teacher from a checkpoint or by name (torchvision:, timm:, hf-hub:, lightlabel:)"),
    "load_teachers": ("labeling.teachers", "an ensemble from checkpoints, names and modules"),
    "train_teachers": ("recipes.teachers", "train one teacher and keep early checkpoints (weak teachers)"),
    "TeacherConfig": ("configs", "the settings of train_teachers"),
    "select_teachers": ("recipes.select", "which checkpoints of a trajectory to imitate, by short student runs"),
    "TeacherSelection": ("recipes.select", "the choice of select_teachers and its evidence"),
    "fit_adapter": ("recipes.fit", "fit an adapter to weak teachers in one call (HeLlO Eq. 5)"),
    "FitConfig": ("configs", "the settings of fit_adapter"),
    "distill_images": ("recipes.distill", "RDED patch selection + stitching + Eq. 7 refinement"),
    "DistillConfig": ("configs", "the settings of distill_images"),
    "DistilledSet": ("sets.distilled", "distilled images with provenance; save/load as an ImageFolder"),
    "random_subset": ("recipes.subset", "the random-subset baseline: IPC real images per class by seed, as a DistilledSet"),
    "factorize_images": ("recipes.factorize", "HaBa bases + shared hallucinators (distribution matching)"),
    "FactorizeConfig": ("configs", "the settings of factorize_images"),
    "FactorizedSet": ("sets.factorized", "bases + hallucinators: new images every epoch"),
    "train_student": ("recipes.student", "a student on a distilled or factorised set under an EvalProtocol"),
    "EvalProtocol": ("configs", "the student protocol (rded / helio presets)"),
    "StudentResult": ("recipes.student", "what train_student returns"),
    "label_view_agreement": ("recipes.student", "how often a labeller names a class that is in the view"),
    "store_soft_labels": ("labeling.stored", "the SRe2L-style baseline: every view labelled once and stored"),
    "StoredSoftLabels": ("labeling.stored", "stored soft labels as a label source"),
    "LabelCompression": ("configs", "how stored labels are compressed (LPLD / LPQLD: top-k, int8, pruning)"),
    "AdapterError": ("errors", "every damaged or mismatched adapter file raises this (a ValueError)"),
    "read_adapter": ("io.adapter_format", "read and verify an adapter file's header and tensors"),
    "AdapterInfo": ("io.adapter_format", "an adapter file's header"),
    "list_adapters": ("io.registry", "published adapters with their provenance (one ships in the package, offline)"),
    "storage_report": ("storage", "stored soft labels vs teacher vs adapter, in bytes"),
    "StorageReport": ("storage", "what storage_report returns"),
    "HELIO_TEMPLATES": ("core.templates", "HeLlO's 7 prompt templates"),
    "OPENAI_IMAGENET_TEMPLATES": ("core.templates", "OpenAI's 80 ImageNet prompt templates"),
}

#: documented submodules, reachable as attributes (``lightlabel.models.build_model``)
_SUBMODULES = frozenset({"classes", "cli", "configs", "core", "data", "demo", "errors", "inputs", "io", "labeling",
                         "models", "pretrained", "recipes", "storage", "testing", "utils"})

__all__ = sorted([*_EXPORTS, "__version__"])
__doc__ = (__doc__ or "") + "\n".join(f"    {name:<26}{line}" for name, (_, line) in _EXPORTS.items()) + "\n"


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562): ``import lightlabel`` stays light (no torch), so the command
    line answers ``--help`` and argument errors at once."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    entry = _EXPORTS.get(name)
    if entry is None:
        raise AttributeError(f"module 'lightlabel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{entry[0]}", __name__), name)
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
    from .recipes.distill import distill_images
    from .recipes.factorize import factorize_images
    from .recipes.fit import fit_adapter
    from .recipes.select import TeacherSelection, select_teachers
    from .recipes.student import StudentResult, label_view_agreement, train_student
    from .recipes.subset import random_subset
    from .recipes.teachers import train_teachers
    from .sets.distilled import DistilledSet
    from .sets.factorized import FactorizedSet
    from .sets.protocol import TrainingSet
    from .storage import StorageReport, storage_report
