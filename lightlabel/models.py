"""Teacher and student architectures by name, and teacher checkpoints.

Architectures come from torchvision (``torchvision.models.list_models()``) or timm (``timm.list_models()``) by
name, plus the CIFAR ResNets of He et al. 2016 (``cifar_resnet20`` ... ``cifar_resnet110``, option-A identity
shortcuts, 16-32-64 channels) so akamaster's CIFAR-10 ResNets (pytorch_resnet_cifar10) load. ``low_res=True`` gives
ResNet-style models a 3x3 stem without max-pool for inputs of 64 px or less (stride 1 up to 32 px, stride 2
above), as is standard for CIFAR and Tiny-ImageNet.

Checkpoints written by :func:`save_teacher` hold the state dict and everything needed to rebuild the model and
feed it (architecture, classes, low-res flag, input size, normalisation).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .inputs import InputSpec
from .utils.files import atomic_path

__all__ = ["build_model", "load_teacher", "save_teacher"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "lightlabel-teacher"


class _CifarBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin  # option A: subsample and zero-pad channels, no parameters
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            short = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad // 2, self.pad // 2))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32 x 32 inputs (He et al. 2016, Sec. 4.2), option-A shortcuts.

    Shape: ``(B, 3, 32, 32) -> (B, num_classes)``.
    """

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = [_CifarBlock(cin, cout, stride)] + [_CifarBlock(cout, cout, 1) for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


_CIFAR = {f"cifar_resnet{d}": d for d in (20, 32, 44, 56, 110)}


def _low_res_stem(model: nn.Module, stride: int) -> None:
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(model, "maxpool"):
        raise ValueError(f"`low_res` needs a ResNet-style model with `conv1` and `maxpool`; "
                         f"{type(model).__name__} has none")
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride, 1, bias=False)
    model.maxpool = nn.Identity()


def build_model(arch: str, num_classes: int, *, low_res: bool = False, image_size: int | None = None) -> nn.Module:
    """A randomly initialised classifier by name.

    Args:
        arch: a torchvision model name (``"resnet18"``), a timm name (``"resnet18d"``, ``"convnext_atto"``), or
            ``"cifar_resnet20|32|44|56|110"``; a ``torchvision:`` or ``timm:`` prefix is accepted (random weights: a
            student starts from scratch; :func:`load_teacher` loads pretrained weights by the same names).
        num_classes: output classes.
        low_res: replace the stem by a 3x3 convolution without max-pool (ResNet-style models only).
        image_size: input size, used by ``low_res`` to pick the stem stride (1 up to 32 px, else 2).

    Raises:
        ValueError: an unknown name (the message lists close torchvision/timm names) or ``low_res`` on a model
            without a ResNet stem.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}")
    arch = arch.removeprefix("torchvision:").removeprefix("timm:")  # a student's architecture by scheme name
    if arch in _CIFAR:
        return CifarResNet(_CIFAR[arch], num_classes)
    import torchvision

    if arch in torchvision.models.list_models(module=torchvision.models):
        model = torchvision.models.get_model(arch, num_classes=num_classes)
    else:
        import timm

        if not timm.list_models(arch):
            close = sorted(set(torchvision.models.list_models(module=torchvision.models)) | set(_CIFAR))
            close = [n for n in close if arch.split("_")[0][:4] in n][:20] or close[:20]
            raise ValueError(f"`arch` {arch!r} is neither a torchvision, timm nor CIFAR ResNet name; "
                             f"e.g. {close} (or any of timm.list_models())")
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if low_res:
        _low_res_stem(model, 1 if (image_size or 32) <= 32 else 2)
    return model


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata written by save_teacher or {}, state dict without "module." prefixes)`` of a checkpoint file.

    Raises:
        FileNotFoundError: no file. ValueError: not a torch checkpoint, or no state dict in it.
    """
    if not path.is_file():
        from .pretrained import SCHEMES

        hint = (f" (not a model name either: a name starts with one of {[s + ':' for s in SCHEMES]})"
                if ":" in str(path) else "")
        raise FileNotFoundError(f"teacher checkpoint not found: {path}{hint}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable torch checkpoint ({e})") from e
    meta: dict[str, Any] = blob if isinstance(blob, dict) and blob.get("format") == CHECKPOINT_FORMAT else {}
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state dict found (keys: {list(blob)[:8] if isinstance(blob, dict) else type(blob)})")
    return meta, {k.removeprefix("module."): v for k, v in state.items()}


def _cifar_resnet_arch(state: dict[str, torch.Tensor]) -> str | None:
    """``cifar_resnet<6n+2>`` for a CIFAR ResNet state dict (its depth read from the keys), else ``None``."""
    if "layer1.0.conv1.weight" not in state or "linear.weight" not in state:
        return None
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layer1."))
    return f"cifar_resnet{6 * blocks + 2}"


def _checkpoint_input(path: Path, meta: dict[str, Any], input_spec: InputSpec | None) -> InputSpec:
    """The recorded input of a checkpoint, or the one given for a plain state dict (which records none).

    Raises:
        ValueError: a given spec that contradicts the recorded one, or none for a plain state dict.
        TypeError: ``input_spec`` is not an InputSpec.
    """
    if "mean" in meta:
        recorded = InputSpec(tuple(meta["mean"]), tuple(meta["std"]), meta.get("image_size"))
        if input_spec is not None and input_spec != recorded:
            raise ValueError(f"{path}: `input_spec` ({input_spec}) contradicts the checkpoint's recorded input "
                             f"({recorded}); leave it out")
        return recorded
    if input_spec is None:
        raise ValueError(f"{path}: a plain state dict records no input normalisation; pass `input_spec=` "
                         f"(e.g. lightlabel.InputSpec.imagenet(32) for akamaster's CIFAR-10 ResNets)")
    if not isinstance(input_spec, InputSpec):
        raise TypeError(f"`input_spec` must be an InputSpec, got {type(input_spec).__name__}")
    return input_spec


def save_teacher(model: nn.Module, path: str | os.PathLike, *, arch: str, classes: Sequence[str], low_res: bool,
                 input_spec: InputSpec, **extra: Any) -> Path:
    """Write a teacher checkpoint atomically: state dict plus what :func:`load_teacher` needs to rebuild it and
    feed it (architecture, classes, stem, and its :class:`~lightlabel.InputSpec`)."""
    path = Path(path)
    if not isinstance(input_spec, InputSpec) or input_spec.image_size is None:
        raise ValueError(f"`input_spec` must be an InputSpec with an image_size, got {input_spec!r}")
    blob = {"format": CHECKPOINT_FORMAT, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "arch": arch, "classes": list(classes), "low_res": bool(low_res), "image_size": input_spec.image_size[0],
            "mean": list(input_spec.mean), "std": list(input_spec.std), **extra}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_teacher(path: str | os.PathLike, *, input_spec: InputSpec | None = None, arch: str | None = None,
                 num_classes: int | None = None, device: torch.device | str = "cpu") -> nn.Module:
    """Load a teacher checkpoint, or a pretrained model by name, into an eval-mode, frozen module.

    ``path`` may name a pretrained model instead of a file: ``torchvision:resnet18`` (optionally
    ``torchvision:resnet18:IMAGENET1K_V1``), ``timm:<name>``, ``hf-hub:<repo>`` or ``lightlabel:<packaged teacher>``;
    see :func:`lightlabel.pretrained.load_pretrained`, which reads its ``input_spec`` from the weights' metadata.

    Reads checkpoints written by :func:`save_teacher` (everything is recorded) and plain state dicts, including
    ``{"state_dict": ..., "best_prec1": ...}`` files with ``module.`` prefixes (e.g. akamaster's CIFAR ResNets,
    whose depth is read from the keys). Loading is ``weights_only=True`` and strict.

    The returned module carries ``input_spec`` (:class:`~lightlabel.InputSpec`: the recorded normalisation and
    training size, or ``input_spec`` for a plain state dict, which records none) and ``classes`` (or ``None``).

    Args:
        path: the checkpoint file, or a model name (above).
        input_spec: the teacher's input normalisation. Required for plain state dicts (e.g.
            ``InputSpec.imagenet(32)`` for akamaster's CIFAR-10 ResNets); for checkpoints written by
            :func:`save_teacher` it must equal the recorded one when given.
        arch, num_classes: only where the checkpoint cannot tell.
        device: where the module goes.

    Raises:
        FileNotFoundError: no file.
        ValueError: the architecture cannot be determined (pass ``arch``), the weights do not fit it (the
            message lists missing/unexpected keys), a plain state dict without ``input_spec``, or an
            ``input_spec`` that contradicts the recorded one.
    """
    from .pretrained import is_model_name, load_pretrained, packaged_teacher_path

    if is_model_name(path) and os.fspath(path).startswith("lightlabel:"):
        path = packaged_teacher_path(os.fspath(path))
    elif is_model_name(path):
        model = load_pretrained(os.fspath(path), num_classes=num_classes, device=device)
        if input_spec is not None and input_spec != model.input_spec:
            raise ValueError(f"{path}: `input_spec` ({input_spec}) contradicts the weights' own ({model.input_spec}); "
                             "leave it out")
        return model
    path = Path(path)
    meta, state = _read_checkpoint(path)
    arch = arch or meta.get("arch") or _cifar_resnet_arch(state)
    if arch is None:
        raise ValueError(f"{path}: cannot tell the architecture from the checkpoint; pass `arch=`")
    classes = meta.get("classes")
    if num_classes is None:
        head = [v for k, v in state.items() if k.endswith(("fc.weight", "linear.weight", "head.weight",
                                                            "classifier.weight", "head.fc.weight"))]
        num_classes = len(classes) if classes else (int(head[-1].shape[0]) if head else None)
    if num_classes is None:
        raise ValueError(f"{path}: cannot tell the number of classes; pass `num_classes=`")
    model = build_model(arch, num_classes, low_res=meta.get("low_res", False), image_size=meta.get("image_size"))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: weights do not fit {arch!r} with {num_classes} classes: missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    input_spec = _checkpoint_input(path, meta, input_spec)
    model.eval().requires_grad_(False).to(device)
    model.classes = classes
    model.input_spec = input_spec
    return model
