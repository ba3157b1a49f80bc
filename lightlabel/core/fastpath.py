"""The merged projector's inference path: BatchNorm folded into the convolutions, a one-token attention pool, and
the positional embedding resampled for another labelling size.

Each rewrite computes the same function as the module it replaces (to float rounding), so the fast path changes
speed, not labels:

- :func:`fold_batchnorm`: an eval-mode ``BatchNorm2d`` after a convolution is an affine map per channel, so
  ``bn(conv(x)) = conv'(x)`` with ``W' = W * g`` and ``b' = beta - mean * g``, ``g = gamma / sqrt(var + eps)``
  (Ioffe & Szegedy 2015). The pairs are found by open_clip's and torchvision's naming (``convN`` then ``bnN`` in one
  module; a ``Sequential`` whose convolution is followed by its norm), which is how their ``forward`` calls them.
- :class:`OneTokenAttentionPool2d`: open_clip's ``AttentionPool2d`` attends from all ``HW + 1`` tokens and keeps the
  first; only the first token's query is needed. Same maths, ``1 / (HW + 1)`` of the query and output projections.
- :func:`cast_autocast_weights`: under bf16 autocast every convolution and linear layer casts its float32 weight
  and bias to bf16 on every call (autocast caches casts only for weights that require grad; a frozen labeller's do
  not), one extra kernel per tensor. Stored in bf16 once, they are the tensors autocast would have made, so the
  labels are bitwise the same and the casts are gone.
- :func:`set_input_size`: the attention pool's (and a ViT's) positional embedding is fixed to the training grid;
  resampled (bicubic, timm's ``resample_abs_pos_embed``) it serves another input size. Lower resolution is HeLlO's
  cheapest lever on labelling cost: RN50 at 128 px costs 2.00 GMAC per image against 6.11 at 224 px.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d
from torch import nn

__all__ = ["Float32Linear", "OneTokenAttentionPool2d", "autocast_weight_names", "cast_autocast_weights",
           "conv_bn_pairs", "fast_labeller", "fast_teacher", "float32_logits_view", "fold_batchnorm", "labelling_autocast", "set_input_size",
           "unfold_batchnorm", "use_one_token_pool"]


def conv_bn_pairs(root: nn.Module) -> list[tuple[str, str]]:
    """``(conv path, norm path)`` of every ``Conv2d`` directly followed by its ``BatchNorm2d`` in ``forward``, found by
    naming: siblings ``convN``/``bnN``, or consecutive children of a ``Sequential``.

    Returns:
        Dotted module paths relative to ``root``, in module order.
    """
    pairs = []
    for path, module in root.named_modules():
        prefix = f"{path}." if path else ""
        children = dict(module.named_children())
        if isinstance(module, nn.Sequential):
            names = list(children)
            pairs += [(prefix + a, prefix + b) for a, b in zip(names, names[1:])
                      if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d)]
            continue
        for name, child in children.items():
            if isinstance(child, nn.Conv2d) and name.startswith("conv"):
                bn = children.get("bn" + name.removeprefix("conv"))
                if isinstance(bn, nn.BatchNorm2d) and bn.num_features == child.out_channels:
                    pairs.append((prefix + name, prefix + "bn" + name.removeprefix("conv")))
    return pairs


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


@torch.no_grad()
def fold_batchnorm(root: nn.Module, store: nn.ModuleDict) -> None:
    """Fold every eval-mode conv + BatchNorm pair of ``root`` into the convolution, in place.

    Each norm is replaced by ``nn.Identity`` and kept in ``store`` (under its path with ``.`` as ``__``), so that
    :func:`unfold_batchnorm` can restore it; ``store`` is a registered ``ModuleDict``, so the kept norms move with
    ``.to()`` and replicate under ``DataParallel``. Parametrised (LoRA) convolution weights are skipped (merge them
    first), and so are norms with a zero scale in some channel, which unfolding could not invert.

    Raises:
        RuntimeError: a norm in training mode (its statistics are not yet fixed).

    Source: Ioffe & Szegedy 2015 (the eval-mode BatchNorm transform is affine per channel).
    """
    for conv_path, bn_path in conv_bn_pairs(root):
        conv, bn = root.get_submodule(conv_path), root.get_submodule(bn_path)
        if bn.training or not bn.track_running_stats or "parametrizations" in conv._modules:
            if bn.training:
                raise RuntimeError(f"cannot fold {bn_path}: BatchNorm is in training mode")
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        if scale.abs().min() < 1e-12:  # a dead channel (e.g. open_clip's zero-initialised bn3): unfolding could not
            continue                   # divide the scale back out, so this pair stays as it is
        shift = bn.bias - bn.running_mean * scale
        bias = conv.bias * scale + shift if conv.bias is not None else shift
        had_bias = conv.bias is not None
        conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
        store[bn_path.replace(".", "__")] = bn
        store[bn_path.replace(".", "__")].had_bias = had_bias  # plain bool: replicated like any attribute
        _set(root, bn_path, nn.Identity())


@torch.no_grad()
def unfold_batchnorm(root: nn.Module, store: nn.ModuleDict) -> None:
    """Undo :func:`fold_batchnorm`: divide the scale back out of each folded convolution and put its norm back
    (the weights come back to within float rounding of the originals). Empties ``store``."""
    for key in list(store.keys()):
        bn = store[key]
        bn_path = key.replace("__", ".")
        conv = root.get_submodule(_conv_of(root, bn_path))
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight = nn.Parameter(conv.weight / scale.reshape(-1, 1, 1, 1), requires_grad=False)
        if bn.had_bias:
            shift = bn.bias - bn.running_mean * scale
            conv.bias = nn.Parameter((conv.bias - shift) / scale, requires_grad=False)
        else:
            conv.bias = None
        del bn.had_bias
        _set(root, bn_path, bn)
        del store[key]


def _conv_of(root: nn.Module, bn_path: str) -> str:
    """The path of the convolution whose norm was folded at ``bn_path`` (that norm is an ``nn.Identity`` now)."""
    parent, _, name = bn_path.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    prefix = f"{parent}." if parent else ""
    if isinstance(owner, nn.Sequential):
        names = list(dict(owner.named_children()))
        return prefix + names[names.index(name) - 1]
    return prefix + "conv" + name.removeprefix("bn")


class OneTokenAttentionPool2d(AttentionPool2d):
    """open_clip's ``AttentionPool2d`` computing only the output it keeps: the query of the mean token.

    Shape:
        ``(B, C, H, W)`` features -> ``(B, output_dim)``; ``(H, W)`` must match the positional embedding's grid.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=self.training, need_weights=False)
        return out[0]


def use_one_token_pool(root: nn.Module, enabled: bool) -> None:
    """Switch every open_clip ``AttentionPool2d`` in ``root`` to (or back from) :class:`OneTokenAttentionPool2d`.

    The module keeps its parameters and its place; only its class (hence its ``forward``) changes.
    """
    for module in root.modules():
        if isinstance(module, AttentionPool2d):
            module.__class__ = OneTokenAttentionPool2d if enabled else AttentionPool2d


@torch.no_grad()
def set_input_size(visual: nn.Module, size: tuple[int, int]) -> None:
    """Resample the positional embedding of an open_clip image tower for input ``size`` ``(H, W)``, in place.

    ModifiedResNet: the attention pool's ``HW + 1`` embeddings, grid ``size / 32``. VisionTransformer: the
    ``grid + 1`` embeddings, grid ``size / patch``; ``image_size`` and ``grid_size`` follow. Bicubic resampling of the
    grid part (timm's ``resample_abs_pos_embed``); the first (pooled or class) token is kept. At the tower's own
    size nothing changes.

    Raises:
        ValueError: a size the tower's stride does not divide, or a tower without a positional embedding.
    """
    from timm.layers import resample_abs_pos_embed

    h, w = size
    pool = getattr(visual, "attnpool", None)
    if isinstance(pool, AttentionPool2d):
        stride, owner, name = 32, pool, "positional_embedding"
    elif hasattr(visual, "positional_embedding") and hasattr(visual, "grid_size"):
        stride, owner, name = visual.image_size[0] // visual.grid_size[0], visual, "positional_embedding"
    else:
        raise ValueError(f"{type(visual).__name__} has no positional embedding to resample for another size")
    if h % stride or w % stride:
        raise ValueError(f"the labelling size must be a multiple of the tower's stride {stride}, got {h}x{w}")
    pos = getattr(owner, name)
    old = int(math.isqrt(pos.shape[0] - 1))
    grid = (h // stride, w // stride)
    if grid == (old, old):
        return
    new = resample_abs_pos_embed(pos[None].float(), list(grid), [old, old], num_prefix_tokens=1)[0]
    setattr(owner, name, nn.Parameter(new.to(pos.dtype), requires_grad=pos.requires_grad))
    if owner is visual:
        visual.grid_size, visual.image_size = grid, (h, w)


def autocast_weight_names(root: nn.Module) -> list[str]:
    """Names (as in ``root.named_parameters()``) of the parameters that autocast casts to its low-precision dtype on
    every call of a frozen model: the weight and bias of every convolution and ``nn.Linear`` (not
    :class:`Float32Linear`, which computes in float32), and the positional embedding of every open_clip
    ``AttentionPool2d`` (its forward casts it to the activations' dtype). Norm layers, heads and every other tensor
    keep their dtype, and so does the packed input projection of ``nn.MultiheadAttention``: with it in the
    activations' dtype, torch switches to its fused attention kernel, whose logits differ in the last bf16 bits."""
    names = []
    for path, module in root.named_modules():
        prefix = f"{path}." if path else ""
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or (
                isinstance(module, nn.Linear) and not isinstance(module, Float32Linear)):
            own = ("weight", "bias")
        elif isinstance(module, AttentionPool2d):
            own = ("positional_embedding",)
        else:
            continue
        names += [prefix + n for n, p in module.named_parameters(recurse=False) if n in own and p.is_floating_point()]
    return names


@torch.no_grad()
def cast_autocast_weights(root: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Store the tensors of :func:`autocast_weight_names` in ``dtype``, in place, for a frozen model that runs under
    ``torch.autocast(dtype=dtype)``.

    Autocast would cast each of them to ``dtype`` on every call (one kernel per tensor: 119 of the 124 casts of a
    merged RN50 projector's forward); stored cast, they are the very tensors it would make, so the outputs under that
    autocast are bitwise unchanged. Without autocast the model then fails on float32 input: use it under autocast
    only.

    Returns:
        ``root``.
    """
    params = dict(root.named_parameters())
    for name in autocast_weight_names(root):
        p = params[name]
        if p.dtype != dtype:
            owner, _, attr = name.rpartition(".")
            setattr(root.get_submodule(owner) if owner else root, attr,
                    nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad))
    return root


class Float32Linear(nn.Linear):
    """``nn.Linear`` computed in float32 whatever the caller's autocast: a classifier's logits under bf16 autocast
    would be rounded to bf16 (steps of 0.03-0.25 at typical logit sizes). Same parameters and state-dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        if not torch.amp.is_autocast_available(x.device.type):  # e.g. the meta device: no autocast to leave
            return F.linear(x.float(), self.weight.float(), bias)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(x.float(), self.weight.float(), bias)


def float32_classifier(model: nn.Module) -> nn.Module:
    """``model`` with its last ``nn.Linear`` (the classifier) computed in float32 under autocast, in place."""
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    if linears:
        linears[-1].__class__ = Float32Linear
    return model


def float32_logits_view(model: nn.Module) -> nn.Module:
    """``model`` with its classifier (the last ``nn.Linear``; every member's in a teacher ensemble) computed in
    float32 under autocast, as a structural copy that shares every parameter and buffer: no memory, and the model
    itself is not changed.

    Under bf16 autocast a teacher's logits are otherwise rounded to bf16 (steps of 0.03-0.25 at typical logit
    sizes), and the soft-label targets and online labels with them: the teacher's side of the float32 head the
    projector has (HeLlO Eq. 4's head computes in float32 here). A projector is returned as it is (its head is
    float32 already), and so is a model that cannot be copied (e.g. a compiled one).

    Shape:
        The same as ``model``'s: ``(B, 3, H, W) -> (B, C)``; float32 under autocast.
    """
    if hasattr(model, "merge") and hasattr(model, "visual"):  # a Projector
        return model
    try:
        view = copy.deepcopy(model, {id(t): t for t in (*model.parameters(), *model.buffers())})
    except Exception:  # noqa: BLE001 - an uncopyable module labels as it is
        return model
    owners = getattr(view, "classifier_owners", None)  # a TeacherEnsemble: each member's classifier
    for owner in owners() if callable(owners) else [view]:
        float32_classifier(owner)
    return view


def fast_teacher(model: nn.Module, *, weight_dtype: torch.dtype | None = None) -> nn.Module:
    """An inference copy of a teacher on the same path as the merged projector: eval-mode BatchNorm folded into
    the convolutions (``torch.fx``'s ``fuse``, which follows the real dataflow; a model it cannot trace keeps its
    norms) and the last ``nn.Linear`` (the classifier) computed in float32 under autocast. The copy keeps the
    model's ``input_spec`` and ``classes``; the model itself is not changed.

    Args:
        model: the teacher.
        weight_dtype: for a copy that labels under autocast to this dtype, its convolution and linear weights are
            stored in it (:func:`cast_autocast_weights`; the classifier stays float32).

    Returns:
        The copy (a ``torch.fx.GraphModule`` when tracing worked), in eval mode, frozen.
    """
    import copy
    import logging

    from torch.fx.experimental.optimization import fuse

    source = copy.deepcopy(model).eval()
    for m in source.modules():  # a float32_logits_view's classifier: torch.fx traces plain nn.Linear as a leaf only
        if type(m) is Float32Linear:
            m.__class__ = nn.Linear
    try:
        fast = fuse(source, inplace=True)
    except Exception as e:  # data-dependent control flow, unsupported ops: label with the unfused copy
        logging.getLogger(__name__).debug("no BatchNorm folding for %s (%s)", type(model).__name__, e)
        fast = source
    float32_classifier(fast)
    if weight_dtype is not None:
        cast_autocast_weights(fast, weight_dtype)
    for attr in ("input_spec", "classes"):
        if hasattr(model, attr):
            setattr(fast, attr, getattr(model, attr))
    return fast.eval().requires_grad_(False)


def fast_labeller(labeller: nn.Module, *, weight_dtype: torch.dtype | None = None) -> nn.Module:
    """An inference copy of any labeller on the fast path; the labeller itself is not changed.

    A :class:`~lightlabel.Projector` is merged (LoRA and BatchNorm folded, one-token pool, head precomputed), a
    :class:`~lightlabel.TeacherEnsemble` goes through its ``fast()``, any other teacher through :func:`fast_teacher`.
    ``weight_dtype``: for a copy that labels under autocast to this dtype, its convolution and linear weights are
    stored in it (:func:`cast_autocast_weights`; heads and classifiers stay float32).
    """
    if hasattr(labeller, "merge") and hasattr(labeller, "visual"):  # a Projector (core.projector imports this module)
        fast = copy.deepcopy(labeller).merge()
        if weight_dtype is not None:
            cast_autocast_weights(fast.visual, weight_dtype)
        return fast
    if hasattr(labeller, "fast") and hasattr(labeller, "members"):  # a TeacherEnsemble (lightlabel.labeling)
        return labeller.fast(weight_dtype=weight_dtype)
    return fast_teacher(labeller, weight_dtype=weight_dtype)


def labelling_autocast(device: torch.device, *, autocast: bool, bf16_weights: bool) -> contextlib.AbstractContextManager:
    """The autocast a labeller runs under: bf16 on CUDA when ``autocast``, and on any device when its weights are
    stored in bf16 (:func:`cast_autocast_weights`, which needs it); no context elsewhere (some devices, e.g.
    ``meta``, have no autocast at all)."""
    if bf16_weights or (autocast and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
