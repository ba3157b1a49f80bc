"""Teachers as labellers: the ensemble of weak teachers whose mean logits the adapter is fitted to.

The ensemble label is the mean of the teachers' logits (HeLlO Eq. 1 and Eq. 5, ``Y' = mean_k f_k(X)``). When all
teachers share one architecture, their weights are stacked once and run as one batched call with
``torch.func.functional_call`` under ``torch.vmap``, instead of a Python loop over the teachers. An ensemble
carries the one :class:`~lightlabel.InputSpec` its members share; members that disagree are an error.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from ..core.fastpath import fast_teacher, float32_classifier
from ..core.teacher_module import TeacherModule
from ..inputs import InputSpec
from ..models import load_teacher

__all__ = ["TeacherEnsemble", "load_teachers"]


def _signature(module: nn.Module) -> tuple:
    """What must agree for teachers to share one skeleton: the class, the module tree as printed (strides, paddings,
    pooling: settings that leave the tensor shapes alike) and every tensor's name, shape and dtype."""
    return (type(module), repr(module)) + tuple((k, tuple(v.shape), v.dtype) for k, v in module.state_dict().items())


def _num_outputs(module: nn.Module) -> int | None:
    """The width of ``module``'s classifier: its last ``nn.Linear``'s ``out_features`` (None without one)."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


class TeacherEnsemble(nn.Module):
    """Mean logits of several frozen teachers, in eval mode.

    Teachers of one architecture (identical parameter names and shapes) are stored stacked, once
    (``torch.func.stack_module_state``), and run either as one ``torch.vmap`` call or as a loop over slices of the
    stacked weights. Others are kept as a ``ModuleList`` and looped.

    Args:
        teachers: one or more ``nn.Module`` mapping ``(B, 3, H, W)`` to ``(B, C)`` logits (same ``C``).
        input_spec: the ensemble's input (:class:`~lightlabel.InputSpec`). Default: the one its members carry
            (``teacher.input_spec``, e.g. from :func:`lightlabel.load_teacher`); members that carry none leave the
            ensemble without one, and using it as a labeller then raises.
        vectorize: ``True``: one ``torch.vmap`` call over the stacked teachers (requires one architecture);
            ``False`` (default): a loop over slices of the stacked weights, the path measured faster on CPU and on
            CUDA alike (one vmap call was 0.70 x the loop's speed on an H100 for 9 ResNet-18 at 64 px under bf16).
            ``"auto"`` (0.2's default, which always looped) is a deprecated alias of ``False``.

    Shape:
        - Input: ``(B, 3, H, W)``.
        - Output: ``(B, C)`` mean logits, the teachers' dtype.

    Raises:
        ValueError: no teachers, ``vectorize=True`` with differing architectures, members (or ``input_spec``)
            that disagree about the input (the specs are listed), members that carry different ``classes`` lists,
            or members whose classifiers (last ``nn.Linear``) have different widths.

    Source: HeLlO Eq. 1 and Eq. 5 (multi-weak-teacher soft labels).
    """

    def __init__(self, teachers: Sequence[nn.Module], *, input_spec: InputSpec | None = None,
                 vectorize: bool = False) -> None:
        super().__init__()
        teachers = list(teachers)
        if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
            raise ValueError(f"`teachers` must be a non-empty list of nn.Module, got {teachers!r}"[:200])
        specs = {getattr(t, "input_spec", None) for t in teachers} | ({input_spec} if input_spec is not None else set())
        specs.discard(None)
        if len(specs) > 1:
            raise ValueError(f"the teachers expect different inputs: {sorted(str(s) for s in specs)}; an ensemble "
                             "labels one view, so its members must share one InputSpec")
        if specs:
            self.input_spec = specs.pop()
        classes = [getattr(t, "classes", None) for t in teachers]
        known = {tuple(c) for c in classes if c is not None}
        if len(known) > 1:
            raise ValueError(f"`teachers` name their classes differently ({len(known)} class lists: "
                             f"{sorted(known)!r}"[:400] + "); an ensemble averages logit columns, so every member "
                             "must order the same classes the same way (reorder a teacher's classifier first)")
        self.classes = classes[0] if known and all(c is not None for c in classes) else None
        widths = {type(t).__name__ + f" #{i}": _num_outputs(t) for i, t in enumerate(teachers)}
        if len(set(widths.values()) - {None}) > 1:
            raise ValueError(f"`teachers` have classifiers of different widths ({widths}); an ensemble averages "
                             "their (B, C) logits, so every member must output the same C")
        if vectorize == "auto":
            warnings.warn("TeacherEnsemble(vectorize='auto') is deprecated: it always looped; pass vectorize=False "
                          "(the default) or True", DeprecationWarning, stacklevel=2)
            vectorize = False
        if not isinstance(vectorize, bool):
            raise ValueError(f"`vectorize` must be True or False, got {vectorize!r}")
        for t in teachers:
            t.eval().requires_grad_(False)
        stackable = len({_signature(t) for t in teachers}) == 1
        if vectorize is True and not stackable:
            raise ValueError("`vectorize=True` needs teachers of one architecture with identical parameter shapes")
        self.num_teachers = len(teachers)
        self.vectorize = vectorize
        self.stacked = stackable
        if stackable:
            params, buffers = stack_module_state(teachers)
            self._names = (list(params), list(buffers))
            for i, v in enumerate(params.values()):
                self.register_buffer(f"_p{i}", v.detach())
            for i, v in enumerate(buffers.values()):
                self.register_buffer(f"_b{i}", v)
            self._skeleton = [copy.deepcopy(teachers[0]).to("meta")]  # a list: not registered as a submodule
        else:
            self.teachers = nn.ModuleList(teachers)

    @property
    def vectorized(self) -> bool:
        """Whether a forward runs as one vmap call (``vectorize=True`` on teachers of one architecture)."""
        return self.stacked and self.vectorize is True

    def train(self, mode: bool = True) -> TeacherEnsemble:
        """Teachers always stay in eval mode."""
        super().train(False)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.stacked:
            return torch.stack([t(images) for t in self.teachers]).mean(0)
        params, buffers = self._stacked()
        skeleton = self._skeleton[0]

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(skeleton, (p, b), (x,))

        if self.vectorize is True:
            return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, images).mean(0)
        outs = [one({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in buffers.items()}, images)
                for i in range(self.num_teachers)]
        return torch.stack(outs).mean(0)

    def _stacked(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The stacked parameters and buffers by name, each ``(num_teachers, ...)``."""
        return ({n: getattr(self, f"_p{i}") for i, n in enumerate(self._names[0])},
                {n: getattr(self, f"_b{i}") for i, n in enumerate(self._names[1])})

    def classifier_owners(self) -> list[nn.Module]:
        """The modules whose last ``nn.Linear`` is a classifier: each member (the shared skeleton when stacked).
        :func:`~lightlabel.core.fastpath.float32_logits_view` computes those in float32."""
        return list(self._skeleton) if self.stacked else list(self.teachers)

    def members(self) -> list[nn.Module]:
        """The teachers as standalone modules, in order (rebuilt from the stacked weights when stacked; the same
        modules otherwise), frozen and in eval mode."""
        if not self.stacked:
            return list(self.teachers)
        params, buffers = self._stacked()
        out = []
        for i in range(self.num_teachers):
            state = {n: v[i] for n, v in (*params.items(), *buffers.items())}
            member = copy.deepcopy(self._skeleton[0]).to_empty(device=next(iter(state.values())).device)
            with torch.no_grad():  # every tensor, non-persistent buffers too (a state dict would skip them)
                for name, tensor in [*member.named_parameters(), *member.named_buffers()]:
                    tensor.copy_(state[name])
            out.append(member.eval().requires_grad_(False))
        return out

    def fast(self, *, weight_dtype: torch.dtype | None = None) -> TeacherEnsemble:
        """An inference copy on the projector's fast path (:func:`~lightlabel.core.fastpath.fast_teacher` for every
        member: BatchNorm folded, each member's classifier in float32 under autocast); labels equal this ensemble's
        to float rounding. With ``vectorize=True`` the members stay stacked (vmap needs one architecture) and only
        the classifier goes to float32. ``weight_dtype``: for a copy that labels under autocast to this dtype, the
        members' convolution and linear weights are stored in it
        (:func:`~lightlabel.core.fastpath.cast_autocast_weights`); not with ``vectorize=True``: under CPU autocast the
        convolutions inside ``vmap`` kept a float32 input, which bf16 weights would not match."""
        if self.vectorize is not True:
            return TeacherEnsemble([fast_teacher(m, weight_dtype=weight_dtype) for m in self.members()],
                                   input_spec=getattr(self, "input_spec", None))
        fast = copy.deepcopy(self)
        fast._skeleton = [float32_classifier(copy.deepcopy(self._skeleton[0]))]
        return fast

    def as_teacher(self, input_spec: InputSpec, *, output: str = "logits", temperature: float = 1.0,
                   scale: float = 1.0, to_pixels=None, class_names: Sequence[str] | None = None) -> TeacherModule:
        """This ensemble as a host loop's teacher module (see :meth:`lightlabel.Projector.as_teacher` and
        :class:`~lightlabel.TeacherModule`): the host's batch in, the mean logits (or probabilities) out, no gradient.

        Raises:
            ValueError: the ensemble carries no input spec (load its members with one), classes in a different order
                than ``class_names``, or bad options.
        """
        return TeacherModule(self, input_spec=input_spec, output=output, temperature=temperature, scale=scale,
                             to_pixels=to_pixels, class_names=class_names)

    def extra_repr(self) -> str:
        return f"num_teachers={self.num_teachers}, stacked={self.stacked}, vectorize={self.vectorize!r}"


def load_teachers(teachers: Sequence[nn.Module | str | os.PathLike], *, input_spec: InputSpec | None = None,
                  device: torch.device | str = "cpu", vectorize: bool = False) -> TeacherEnsemble:
    """An ensemble from checkpoint paths and/or modules (see :func:`lightlabel.load_teacher`).

    Args:
        teachers: paths and/or modules.
        input_spec: for plain state dicts, which record no input (see :func:`lightlabel.load_teacher`).
        device: where the ensemble goes.
        vectorize: see :class:`TeacherEnsemble`.

    Raises:
        ValueError: an empty list, teachers with different numbers of classes or inputs, or a plain state dict
            without ``input_spec``.
    """
    if isinstance(teachers, (str, os.PathLike, nn.Module)):
        teachers = [teachers]
    modules = [t if isinstance(t, nn.Module) else load_teacher(t, input_spec=input_spec) for t in teachers]
    if not modules:
        raise ValueError("`teachers` is empty")
    return TeacherEnsemble(modules, input_spec=input_spec, vectorize=vectorize).to(device)

