"""Training sets: the images a student trains on, as datasets and files.

- :class:`TrainingSet`: the protocol a student run reads (:mod:`.protocol`).
- :class:`DistilledSet`: stored images, an ImageFolder of PNGs plus a checked manifest (:mod:`.distilled`).
- :class:`FactorizedSet`: HaBa bases and hallucinators in one safetensors file (:mod:`.factorized`), with the
  hallucinator networks in :mod:`.hallucinators`.

The recipes that build them (:func:`lightlabel.distill_images`, :func:`lightlabel.random_subset`,
:func:`lightlabel.factorize_images`) live in :mod:`lightlabel.recipes`.
"""

from .distilled import DistilledSet
from .factorized import FactorizedSet, FactorizedSetError
from .hallucinators import HallucinatorBank, epoch_hallucinators
from .protocol import TrainingSet

__all__ = ["DistilledSet", "FactorizedSet", "FactorizedSetError", "HallucinatorBank", "TrainingSet",
           "epoch_hallucinators"]
