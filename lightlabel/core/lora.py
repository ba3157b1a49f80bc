"""Low-rank adaptation (LoRA) of the weights of a frozen image tower.

Each adapted weight ``W`` (any shape ``[out, ...]``: a Linear ``[out, in]``, a Conv2d ``[out, in/groups, kh, kw]``,
or the packed ``in_proj_weight`` of an attention layer) becomes

    W' = W + (alpha / r) * reshape(B @ A, W.shape),     A: [r, W[0].numel()],  B: [out, r]

(HeLlO Eq. 4; LoRA, Hu et al. 2021). ``A`` is Kaiming-uniform initialised and ``B`` is zero, so a fresh adapter
is an exact no-op. The update is attached with :mod:`torch.nn.utils.parametrize` rather than by wrapping
modules, because open_clip's ``AttentionPool2d`` passes ``q_proj.weight`` etc. straight to
``F.multi_head_attention_forward``: a wrapper module would be bypassed, a parametrised weight is not.

:func:`merge_lora` folds the update into the weights (plain tensors again: fastest, ``torch.compile``-friendly);
:func:`unmerge_lora` re-attaches it, recovering ``W = W' - delta`` through :meth:`LoRAWeight.right_inverse`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..configs import LORA_TARGETS

__all__ = ["LORA_TARGETS", "LoRAWeight", "attach_lora", "find_lora_targets", "merge_lora", "unmerge_lora"]


class LoRAWeight(nn.Module):
    """The low-rank update of one weight, used as a parametrization ``W -> W + scaling * B @ A``.

    Args:
        weight_shape: shape of the adapted weight, ``(out, ...)``.
        rank: LoRA rank ``r`` (>= 1).
        alpha: LoRA alpha; ``scaling = alpha / rank``.

    Shape:
        - ``lora_A``: ``(r, prod(weight_shape[1:]))``, float32, Kaiming-uniform.
        - ``lora_B``: ``(weight_shape[0], r)``, float32, zeros.

    Source: HeLlO Eq. 4; peft's LoRA layer (A Kaiming, B = 0, ``scaling = alpha / r``).
    """

    def __init__(self, weight_shape: Sequence[int], rank: int, alpha: float) -> None:
        super().__init__()
        self.weight_shape = tuple(int(s) for s in weight_shape)
        out_features = self.weight_shape[0]
        in_features = math.prod(self.weight_shape[1:])
        self.rank = int(rank)
        self.scaling = float(alpha) / float(rank)
        self.lora_A = nn.Parameter(torch.empty(self.rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, self.rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def delta(self) -> torch.Tensor:
        """The update ``scaling * reshape(B @ A)``, shape ``weight_shape``, float32."""
        return (self.lora_B @ self.lora_A).reshape(self.weight_shape) * self.scaling

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().to(weight.dtype)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        # Called by register_parametrization on the current weight: recovers the base weight of a merged layer.
        return weight - self.delta().to(weight.dtype)

    def extra_repr(self) -> str:
        return f"shape={self.weight_shape}, rank={self.rank}, scaling={self.scaling:g}"


def _owner(root: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    module_path, _, param = dotted.rpartition(".")
    return (root.get_submodule(module_path) if module_path else root), param


def find_lora_targets(module: nn.Module, targets: Iterable[str]) -> list[str]:
    """Names of the weights of ``module`` that LoRA adapts, in module order, each once.

    Args:
        module: the image tower (e.g. open_clip's ``ModifiedResNet`` or ``VisionTransformer``).
        targets: kinds from :data:`LORA_TARGETS`:
            ``"conv"`` every ``nn.Conv2d`` weight (the paper's choice);
            ``"linear"`` every ``nn.Linear`` weight (includes the attention-pool projections);
            ``"attnpool"`` the q/k/v/c projections of open_clip's ``AttentionPool2d``;
            ``"attn"`` ``in_proj_weight`` and ``out_proj.weight`` of every ``nn.MultiheadAttention``.

    Returns:
        Dotted parameter names relative to ``module``, e.g. ``"layer1.0.conv1.weight"``.

    Raises:
        ValueError: an unknown kind.
    """
    kinds = set(targets)
    unknown = kinds - set(LORA_TARGETS)
    if unknown:
        raise ValueError(f"unknown LoRA target kind(s) {sorted(unknown)}; valid kinds: {list(LORA_TARGETS)}")
    names: list[str] = []
    for mod_name, mod in module.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if "conv" in kinds and isinstance(mod, nn.Conv2d):
            names.append(f"{prefix}weight")
        if "linear" in kinds and isinstance(mod, nn.Linear):
            names.append(f"{prefix}weight")
        if "attnpool" in kinds and type(mod).__name__ == "AttentionPool2d":
            names += [f"{prefix}{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "c_proj")]
        if "attn" in kinds and isinstance(mod, nn.MultiheadAttention):
            if mod.in_proj_weight is None:
                names += [f"{prefix}{p}_proj_weight" for p in ("q", "k", "v")]
            else:
                names.append(f"{prefix}in_proj_weight")
            names.append(f"{prefix}out_proj.weight")
    return list(dict.fromkeys(names))


def attach_lora(root: nn.Module, name: str, lora: LoRAWeight) -> None:
    """Register ``lora`` as the parametrization of the weight ``name`` of ``root``."""
    owner, param = _owner(root, name)
    parametrize.register_parametrization(owner, param, lora)
    owner.parametrizations[param].original.requires_grad_(False)


def merge_lora(root: nn.Module, names: Sequence[str]) -> None:
    """Fold the LoRA update into each weight in ``names`` (they become plain parameters ``W + delta``).

    Raises:
        ValueError: a merged weight is not finite (the adapter is left attached).
    """
    for name in names:
        owner, param = _owner(root, name)
        merged = getattr(owner, param)
        if not torch.isfinite(merged).all():
            raise ValueError(f"merging the LoRA update into {name!r} gave non-finite values; adapter left unmerged")
    for name in names:
        owner, param = _owner(root, name)
        # parametrize keeps the weight as a property of a class made for the module; copy.deepcopy shares that class
        # between a module and its copy, and removing the parametrisation deletes the property from the class. Give
        # the module a class of its own first, so merging a copy never breaks the original (and vice versa).
        cls = type(owner)
        owner.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        parametrize.remove_parametrizations(owner, param, leave_parametrized=True)
        getattr(owner, param).requires_grad_(False)


def unmerge_lora(root: nn.Module, names: Sequence[str], loras: Sequence[LoRAWeight]) -> None:
    """Re-attach each LoRA update to its merged weight; the base weight becomes ``W' - delta``."""
    for name, lora in zip(names, loras):
        attach_lora(root, name, lora)
