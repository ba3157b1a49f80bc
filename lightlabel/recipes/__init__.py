"""One-call builders on top of the labelling layer: teachers, adapter fitting, distilled images, students.

Every recipe takes its config dataclass (:mod:`lightlabel.configs`) whole, plus field overrides, and runs on the one loop runner of
:mod:`lightlabel.recipes.loop`, which gives it resume, ``(seed, epoch)`` randomness, progress and DDP.
"""

from .distill import DistilledSet, distill_images, refine_images
from .fit import fit_adapter, label_fidelity
from .student import StudentResult, label_view_agreement, train_student
from .subset import random_subset
from .teachers import train_teachers

__all__ = [
    "DistilledSet",
    "StudentResult",
    "distill_images",
    "fit_adapter",
    "label_fidelity",
    "label_view_agreement",
    "random_subset",
    "refine_images",
    "train_student",
    "train_teachers",
]
