"""What a model expects as input, as one typed value: :class:`InputSpec` (mean, std, image size).

Every labeller, teacher, observer and student carries one (timm keeps ``pretrained_cfg`` on its models, open_clip
``preprocess_cfg``; this is the same idea). Consumers read that one field through :func:`input_spec_of`; a model
without one is an error that says how to give it, never a silent ImageNet default. Images travel between
lightlabel's parts as float pixels in [0, 1]; each model turns them into its own input with
:meth:`InputSpec.prepare`, so the normalisation is written once, here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is only needed once tensors are passed in; importing this module stays light
    import torch
    from torch import nn

__all__ = ["CIFAR10_DD_STD", "CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_MEAN", "IMAGENET_STD", "InputSpec", "input_spec_of",
           "with_input_spec"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
#: the CIFAR-10 std that the distillation codebases use (DD-Ranking, SRe2L, and the dataset-condensation line before
#: them): (0.2023, 0.1994, 0.2010). It is not CIFAR-10's pixel std; using the true one instead changes about 17 % of
#: the shipped CIFAR-10 adapter's argmaxes on CutMix views of real CIFAR-10 normalised their way.
CIFAR10_DD_STD: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"`{name}` must be 3 numbers (one per RGB channel), got {value!r}")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be 3 numbers (one per RGB channel), got {value!r}") from e
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class InputSpec:
    """The input a model expects: per-channel normalisation of [0, 1] RGB pixels and, optionally, a fixed size.

    Args:
        mean: 3 floats, subtracted per channel from pixels in [0, 1].
        std: 3 floats > 0, dividing per channel.
        image_size: ``(H, W)`` pixels the model needs (an int means square), or ``None`` for any size
            (fully convolutional models).

    Raises:
        ValueError: not 3 finite numbers, a std <= 0, or a non-positive size.

    Example:
        >>> spec = InputSpec.imagenet(32)
        >>> import torch
        >>> x = torch.rand(2, 3, 32, 32)
        >>> torch.allclose(spec.denormalize(spec.normalize(x)), x, atol=1e-6)
        True
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        std = _triple(self.std, "std")
        if min(std) <= 0:
            raise ValueError(f"`std` must be > 0 in every channel, got {self.std!r}")
        object.__setattr__(self, "std", std)
        size = self.image_size
        if size is not None:
            if isinstance(size, int) and not isinstance(size, bool):
                size = (size, size)
            if (isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
                raise ValueError(f"`image_size` must be a positive int, (H, W) ints or None, got {self.image_size!r}")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))

    # ------------------------------------------------------------------ presets and (de)serialisation
    @classmethod
    def imagenet(cls, image_size: int | tuple[int, int] | None = None) -> InputSpec:
        """ImageNet statistics (torchvision's, and akamaster's CIFAR-10 ResNets)."""
        return cls(IMAGENET_MEAN, IMAGENET_STD, image_size)

    @classmethod
    def cifar10(cls, image_size: int | tuple[int, int] | None = 32) -> InputSpec:
        """CIFAR-10 training-set statistics."""
        return cls(CIFAR10_MEAN, CIFAR10_STD, image_size)

    @classmethod
    def cifar10_dd(cls, image_size: int | tuple[int, int] | None = 32) -> InputSpec:
        """The CIFAR-10 statistics of the distillation codebases (DD-Ranking, SRe2L): mean (0.4914, 0.4822, 0.4465),
        std (0.2023, 0.1994, 0.2010) (:data:`CIFAR10_DD_STD`)."""
        return cls(CIFAR10_MEAN, CIFAR10_DD_STD, image_size)

    @classmethod
    def from_transform(cls, transform: Any) -> InputSpec:
        """The input a torchvision transform produces: its ``Normalize`` statistics and its output size.

        Reads ``transforms.Compose``/``v2.Compose`` pipelines (nested ones too), v1 and v2 alike: ``Normalize``
        gives mean and std (several in a row compose into one: the input they produce together), and the last
        resize or crop (``Resize`` with an int or (h, w), ``CenterCrop``, ``RandomCrop``, ``RandomResizedCrop``)
        gives the size. ``Resize(int)`` sets the shorter side: after a crop of known size it gives the resized
        size (``max_size`` included, as torchvision computes it); on images of unknown size it gives none.

        Args:
            transform: a torchvision transform, a ``Compose`` of them, or a list.

        Returns:
            The :class:`InputSpec` (``image_size`` ``None`` when the size cannot be read).

        Raises:
            ValueError: the transform has no ``Normalize`` (the host feeds [0, 1] pixels: use
                ``InputSpec((0, 0, 0), (1, 1, 1), size)``).

        Example:
            >>> import torch
            >>> from torchvision.transforms import v2
            >>> InputSpec.from_transform(v2.Compose([v2.RandomResizedCrop(224), v2.ToImage(),
            ...                                      v2.ToDtype(torch.float32, scale=True),
            ...                                      v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]))
            InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), image_size=(224, 224))
        """
        mean = std = size = None
        for t in _flatten_transforms(transform):
            name = type(t).__name__
            if name == "Normalize":
                m, sd = tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
                if mean is not None and len(m) == len(mean) and len(sd) == len(std):
                    # a second Normalize acts on the first one's output: (x - m1 - m2 s1) / (s1 s2), per channel
                    m, sd = tuple(a + b * s for a, b, s in zip(mean, m, std)), tuple(s * b for s, b in zip(std, sd))
                mean, std = m, sd
            elif name in ("CenterCrop", "RandomCrop", "RandomResizedCrop"):
                size = _size_pair(t.size)
            elif name == "Resize":
                size = _resized(size, t.size, getattr(t, "max_size", None))
        if mean is None:
            raise ValueError(f"`transform` has no Normalize ({type(transform).__name__}); for [0, 1] pixels use "
                             f"InputSpec((0, 0, 0), (1, 1, 1), image_size)")
        return cls(mean, std, size)

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """From the command line: ``"imagenet"``, ``"cifar10"``, ``"cifar10_dd"`` (:meth:`cifar10_dd`) or
        ``"m1,m2,m3/s1,s2,s3"``, each optionally followed by ``"@<size>"``.

        Raises:
            ValueError: anything else (the message lists the forms).
        """
        body, _, size_text = str(text).partition("@")
        try:
            size = int(size_text) if size_text else None
            if body in ("imagenet", "cifar10", "cifar10_dd"):
                return getattr(cls, body)(size)
            mean, std = body.split("/")
            return cls(tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(",")), size)
        except ValueError as e:
            raise ValueError(f"input spec {text!r}: expected 'imagenet', 'cifar10', 'cifar10_dd' or "
                             f"'m1,m2,m3/s1,s2,s3', each optionally followed by '@<size>' ({e})") from e

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std),
                "image_size": None if self.image_size is None else list(self.image_size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        size = data.get("image_size")
        return cls(tuple(data["mean"]), tuple(data["std"]), None if size is None else tuple(size))

    # ------------------------------------------------------------------ tensors
    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` as ``(1, 3, 1, 1)`` tensors on ``like``'s device and dtype, made once per (device, dtype):
        building them per call would be a blocking host-to-device copy in every labelling step on CUDA."""
        return _constants(self.mean, self.std, like.device, like.dtype)

    def _affine_from(self, source: InputSpec, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gain, offset)`` such that ``x * gain + offset`` maps ``source``-normalised images to this spec's."""
        gain = tuple(a / b for a, b in zip(source.std, self.std))
        offset = tuple((a - b) / c for a, b, c in zip(source.mean, self.mean, self.std))
        return _constants(offset, gain, like.device, like.dtype)[::-1]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(images - mean) / std`` for float pixels in [0, 1].

        Shape: ``(B, 3, H, W)`` or ``(3, H, W)`` -> the same.

        Raises:
            TypeError: an integer tensor (raw 0-255 pixels: divide by 255 first).
        """
        _require_float(images, "float pixels in [0, 1]")
        m, s = self._stats(images)
        return (images - (m if images.ndim == 4 else m[0])) / (s if images.ndim == 4 else s[0])

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: back to pixel values (not clamped). Shape as :meth:`normalize`.

        Raises:
            TypeError: an integer tensor (normalised images are float).
        """
        _require_float(images, "normalised float images")
        m, s = self._stats(images)
        return images * (s if images.ndim == 4 else s[0]) + (m if images.ndim == 4 else m[0])

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Resize ``(B, 3, H, W)`` to :attr:`image_size` (bilinear, antialiased) when it is set and differs."""
        if self.image_size is None or tuple(images.shape[-2:]) == self.image_size:
            return images
        import torch.nn.functional as F

        return F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)

    def prepare(self, images: torch.Tensor, *, source: InputSpec | None = None) -> torch.Tensor:
        """The model's input from ``(B, 3, H, W)`` float pixels in [0, 1]: :meth:`resize`, then :meth:`normalize`.

        With ``source``, the images are normalised with that spec instead of being [0, 1] pixels, and are converted
        in one affine map per channel (denormalise and normalise folded together), then resized. Resizing commutes
        with a per-channel affine map, so the order does not change the result beyond rounding.

        Raises:
            TypeError: an integer tensor.
        """
        _require_float(images, "float pixels in [0, 1]" if source is None else "float images")
        if source is None:
            return self.normalize(self.resize(images))
        if (source.mean, source.std) == (self.mean, self.std):
            return self.resize(images)
        gain, offset = self._affine_from(source, images)
        return self.resize(images * gain + offset)

    def __str__(self) -> str:
        size = "any size" if self.image_size is None else f"{self.image_size[0]}x{self.image_size[1]}"
        return (f"mean {tuple(round(v, 4) for v in self.mean)}, std {tuple(round(v, 4) for v in self.std)}, "
                f"{size}")


_CONSTANTS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _require_float(images: torch.Tensor, what: str) -> None:
    if not images.is_floating_point():
        raise TypeError(f"images must be {what}, got dtype {images.dtype} (raw 0-255 pixels: use images.float() / 255)")


def finite_range(images: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a non-empty tensor as floats (one host sync); ``ValueError`` on NaN or Inf values. The one
    value check of the labellers' inputs (the projector's, the teacher module's host batch and ``to_pixels``)."""
    import torch

    lo, hi = (float(v) for v in torch.aminmax(images.detach().float()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("`images` contain NaN or Inf values")
    return lo, hi


def _constants(a: tuple[float, ...], b: tuple[float, ...], device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two per-channel constants as ``(1, 3, 1, 1)`` tensors, cached per (values, device, dtype)."""
    key = (a, b, device, dtype)
    out = _CONSTANTS.get(key)
    if out is None:
        import torch

        with torch.inference_mode(False):  # normal tensors, usable in autograd later, even if made in inference mode
            out = (torch.tensor(a, dtype=dtype, device=device).view(1, 3, 1, 1),
                   torch.tensor(b, dtype=dtype, device=device).view(1, 3, 1, 1))
        _CONSTANTS[key] = out
    return out


def _flatten_transforms(transform: Any) -> list[Any]:
    if isinstance(transform, (list, tuple)):
        return [t for item in transform for t in _flatten_transforms(item)]
    inner = getattr(transform, "transforms", None)
    return _flatten_transforms(list(inner)) if isinstance(inner, (list, tuple)) else [transform]


def _resized(size: tuple[int, int] | None, target: Any, max_size: int | None) -> tuple[int, int] | None:
    """The (h, w) that ``Resize(target, max_size=max_size)`` makes of (h, w) ``size`` (``None``: unknown)."""
    if not (isinstance(target, int) or (isinstance(target, (list, tuple)) and len(target) == 1)):
        return _size_pair(target) if target is not None else size
    if size is None:
        return None
    short_new = int(target if isinstance(target, int) else target[0])
    h, w = size
    short, long = min(h, w), max(h, w)
    long_new = int(short_new * long / short)
    if max_size is not None and long_new > max_size:
        short_new, long_new = int(max_size * short_new / long_new), max_size
    return (short_new, long_new) if h <= w else (long_new, short_new)


def _size_pair(size: Any) -> tuple[int, int] | None:
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (list, tuple)) and len(size) == 1:
        return (int(size[0]), int(size[0]))
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    return None


def with_input_spec(module: nn.Module, spec: InputSpec) -> nn.Module:
    """Attach ``spec`` to ``module`` as ``module.input_spec`` and return the module (for plain torchvision or timm
    teachers, whose normalisation lightlabel cannot know).

    Raises:
        TypeError: ``spec`` is not an :class:`InputSpec`.
    """
    if not isinstance(spec, InputSpec):
        raise TypeError(f"`spec` must be an InputSpec, got {type(spec).__name__}")
    module.input_spec = spec
    return module


def input_spec_of(module: Any, role: str = "teacher") -> InputSpec:
    """The :class:`InputSpec` a model carries (``module.input_spec``).

    Raises:
        ValueError: the model carries none. The message says how to give one; nothing is guessed.
    """
    spec = getattr(module, "input_spec", None)
    if isinstance(spec, InputSpec):
        return spec
    raise ValueError(
        f"the {role} ({type(module).__name__}) carries no input normalisation: attach one with "
        f"`lightlabel.with_input_spec({role}, lightlabel.InputSpec(mean=..., std=..., image_size=...))`, or load it "
        f"with `lightlabel.load_teacher(path, input_spec=...)` (e.g. InputSpec.imagenet(32) for the CIFAR-10 ResNets)"
    )
