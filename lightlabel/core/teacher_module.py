"""A labeller as the teacher module that third-party distillation loops expect.

RDED, SRe2L, FKD's label generator and DD-Ranking all take a teacher as an ``nn.Module``: they put it in ``eval()``,
move it with ``.cuda()``, often wrap it in ``DataParallel``, and call it on their own batch, already
augmented and normalised with their own statistics, at their own resolution. :class:`TeacherModule` gives a
projector (or any labeller carrying an :class:`~lightlabel.InputSpec`) exactly that shape: it converts the host's
batch to the labeller's input (one affine map per channel, then a resize), labels it without gradients under bf16
autocast on CUDA, and returns float32 logits or probabilities at a chosen temperature and scale.

Everything it holds is a parameter or a buffer, so ``.to()`` and ``DataParallel`` replicas see all of it. Under DDP,
each process moves its own copy to its device and does not wrap it: its forward runs under ``no_grad``, so there is no
gradient to synchronise. It draws no random numbers.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..classes import check_class_order, logit_class_names
from ..configs import described, int_arg, number_arg
from ..inputs import InputSpec, finite_range, input_spec_of
from .fastpath import fast_labeller, float32_logits_view, labelling_autocast

__all__ = ["OUTPUTS", "TeacherModule", "calibrate_scale"]

#: what a teacher module returns
OUTPUTS: tuple[str, ...] = ("logits", "probs")


class TeacherModule(nn.Module):
    """A frozen labeller that maps a host loop's batch to ``(B, C)`` float32 logits or probabilities.

    Args:
        labeller: a :class:`~lightlabel.Projector` (merged for speed: see :meth:`Projector.as_teacher`), a teacher, or
            a :class:`~lightlabel.TeacherEnsemble`; it must carry an ``input_spec``.
        input_spec: the host's normalisation and resolution (e.g. ``InputSpec.from_transform(host_transform)``). With
            an ``image_size``, a batch of another size is refused (a sign of a wrong spec); without one (warned),
            any size is resized to the labeller's.
        output: ``"logits"`` (``scale * z / temperature``) or ``"probs"`` (``softmax(scale * z / temperature)``).
        temperature: divides the logits (> 0). Loops that apply their own temperature (RDED's KL at T = 20, SRe2L's
            at T = 3, DD-Ranking's at 1.2) want ``1``.
        scale: multiplies the logits (> 0); :func:`calibrate_scale` measures one that matches a reference teacher.
        to_pixels: for a host input that is not an affine normalisation (DD-Ranking's ``use_zca=True``), a callable
            mapping the host batch back to ``[0, 1]`` RGB pixels (e.g. the inverse ZCA transform); it replaces the
            ``input_spec`` conversion, whose ``image_size`` still applies. Pass an ``nn.Module`` that holds its
            tensors (a whitening matrix) as buffers, or a bound method of one (kornia's
            ``zca.inverse_transform``): the module becomes a submodule, so ``.to()`` and ``DataParallel`` move
            them; a plain function's captured tensors stay where they are. Its output is checked to lie in
            [0, 1] (with 0.25 of slack; on every CPU call, on the first call elsewhere): a hook that whitens
            instead of unwhitening raises.
        autocast: bf16 autocast on CUDA (the head stays float32 regardless).
        class_names: the host's classes in its label order (e.g. its dataset's ``classes``); a labeller whose
            ``class_names`` or ``classes`` are the same names in a different order is refused
            (:func:`~lightlabel.classes.check_class_order`). ``None``: not checked.

    Shape:
        - Input: ``(B, 3, H, W)`` float, normalised as ``input_spec`` says.
        - Output: ``(B, C)`` float32; logits, or probabilities summing to 1 per row.

    Raises:
        ValueError: a labeller without an input spec or in another class order than ``class_names``, an unknown
            ``output``, a non-positive temperature or scale; at
            call time a batch that is not ``(B, 3, H, W)`` float or not of ``input_spec``'s size, non-finite
            values, raw 0-255 pixels (above 20), or ``to_pixels`` output outside [0, 1].
        TypeError: ``input_spec`` is not an :class:`~lightlabel.InputSpec`; ``to_pixels`` is not callable.

    The labeller is put in eval mode and its weights are shared, not copied (a teacher's classifier is computed in
    float32 through a weight-sharing view: :func:`~lightlabel.core.fastpath.float32_logits_view`); its parameters
    keep their ``requires_grad`` (the forward
    runs under ``no_grad``, so no gradient reaches them either way), so a projector can be unmerged and fitted
    further after serving as a teacher.

    Example:
        >>> import torch, lightlabel as ll
        >>> teacher = ll.load_teacher("lightlabel:cifar10-resnet20-epoch3")
        >>> module = ll.TeacherModule(teacher, input_spec=ll.InputSpec.cifar10_dd(), output="probs")
        >>> probs = module(torch.zeros(2, 3, 32, 32))
        >>> probs.shape, bool(torch.allclose(probs.sum(1), torch.ones(2)))
        (torch.Size([2, 10]), True)
    """

    def __init__(self, labeller: nn.Module, *, input_spec: InputSpec, output: str = "logits",
                 temperature: float = 1.0, scale: float = 1.0, to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 autocast: bool = True, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        check_class_order(logit_class_names(labeller), class_names, what="the labeller")
        if not isinstance(input_spec, InputSpec):
            raise TypeError(f"`input_spec` must be an InputSpec (the host loop's normalisation), got "
                            f"{type(input_spec).__name__}")
        if output not in OUTPUTS:
            raise ValueError(f"`output` must be one of {list(OUTPUTS)}, got {output!r}")
        number_arg(temperature, "temperature", 0, open_low=True)
        number_arg(scale, "scale", 0, open_low=True)
        if to_pixels is not None and not callable(to_pixels):
            raise TypeError(f"`to_pixels` must be a callable (host batch -> [0, 1] pixels) or None, got "
                            f"{type(to_pixels).__name__}")
        if input_spec.image_size is None:
            warnings.warn("the host's input_spec has no image size, so a batch of a wrong size cannot be told from a "
                          "right one: every batch is resized to the labeller's. Give the size (InputSpec(mean, std, "
                          "S)) to have wrong batches refused", stacklevel=3)
        self.labeller = float32_logits_view(labeller.eval())  # a teacher's logits not rounded to bf16; shared weights
        self.labeller_spec = input_spec_of(labeller, "labeller")
        self.input_spec, self.output, self.to_pixels, self.autocast = input_spec, output, to_pixels, bool(autocast)
        # a bound method of a module (kornia's zca.inverse_transform): its module is a submodule, so .to() and
        # DataParallel replicas move its tensors, and each replica calls the method on its own copy
        owner = getattr(to_pixels, "__self__", None)
        self.to_pixels_owner = owner if isinstance(owner, nn.Module) and not isinstance(to_pixels, nn.Module) else None
        # to_pixels' output range is checked on every CPU call and on the first accelerator call (a host sync). The
        # flag lives in a dict: DataParallel replicas copy __dict__ shallowly, so they share it with this module and
        # the first replica's check counts for all of them and for later steps
        self._pixels_state = {"checked": False}
        self.temperature, self.scale = float(temperature), float(scale)
        self.bf16_weights = False  # set by optimized(): label under bf16 autocast on any device
        # the host batch is checked here, in the host's terms; the projector's own check would judge the converted
        # batch by its normalisation (a flat grey batch would warn "not normalised" after a correct conversion)
        self._labeller_kwargs = {"check": False} if "check" in inspect.signature(labeller.forward).parameters else {}
        # host-normalised -> labeller-normalised is one affine map per channel: x * gain + offset
        host_std, host_mean = torch.tensor(input_spec.std), torch.tensor(input_spec.mean)
        own_std, own_mean = torch.tensor(self.labeller_spec.std), torch.tensor(self.labeller_spec.mean)
        self.register_buffer("gain", (host_std / own_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("offset", ((host_mean - own_mean) / own_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("own_mean", own_mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("own_std", own_std.view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> TeacherModule:
        """The module's flag follows ``mode``; the labeller always stays in eval mode (frozen statistics)."""
        self.training = mode
        return self

    def convert(self, images: torch.Tensor) -> torch.Tensor:
        """The host batch as the labeller's input: ``(B, 3, H, W)`` -> ``(B, 3, h, w)`` at the labeller's size."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4 \
                or images.shape[1] != 3:
            raise ValueError(f"a teacher module takes (B, 3, H, W) float images, got "
                             f"{described(images)}")
        size = self.input_spec.image_size
        if size is not None and tuple(images.shape[-2:]) != size:
            raise ValueError(f"the batch is {images.shape[-2]}x{images.shape[-1]} but the host's input_spec says "
                             f"{size[0]}x{size[1]}: pass the host's real input spec (InputSpec.from_transform)")
        if self.to_pixels is not None:
            fn = (getattr(self.to_pixels_owner, self.to_pixels.__name__) if self.to_pixels_owner is not None
                  else self.to_pixels)
            pixels = fn(images).float()
            if images.device.type == "cpu" or not self._pixels_state["checked"]:
                self._check_pixels(pixels)
            x = (pixels - self.own_mean) / self.own_std
        else:
            x = images.float() * self.gain + self.offset
        target = self.labeller_spec.image_size
        if target is not None and tuple(x.shape[-2:]) != target:
            x = F.interpolate(x, size=target, mode="bilinear", antialias=True, align_corners=False)
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Label a host batch: ``(B, 3, H, W)`` float in the host's normalisation -> ``(B, C)`` float32 logits or
        probabilities (``output``), without gradients. Raises ``ValueError`` on a batch of another shape or size
        (see the class)."""
        with torch.no_grad():
            x = self.convert(images)
            # one host sync, on CPU batches only, as the projector does; with to_pixels, convert() checked the
            # pixels (non-finite host values reach them), so the batch is not scanned twice
            if images.device.type == "cpu" and self.to_pixels is None:
                self._check_values(images)
            with labelling_autocast(x.device, autocast=self.autocast, bf16_weights=self.bf16_weights):
                z = self.labeller(x, **self._labeller_kwargs)
            z = z.float()
            if z.ndim != 2 or z.shape[0] != images.shape[0]:
                raise ValueError(f"the labeller returned shape {tuple(z.shape)}, expected ({images.shape[0]}, C)")
            if self.scale != 1.0 or self.temperature != 1.0:
                z = z * (self.scale / self.temperature)
            return z.softmax(-1) if self.output == "probs" else z

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        """``to_pixels`` must give [0, 1] pixels (0.25 of slack for rounding and resampling): whitened values, from a
        hook that applies the host's transform instead of undoing it, would be labelled silently wrong."""
        if pixels.numel():
            lo, hi = finite_range(pixels)
            if not (lo >= -0.25 and hi <= 1.25):
                raise ValueError(f"`to_pixels` returned values in [{lo:.3g}, {hi:.3g}], not [0, 1] pixels: it must undo "
                                 f"the host's transform (e.g. the inverse whitening, zca.inverse_transform, not the "
                                 f"whitening itself)")
        self._pixels_state["checked"] = True

    def _check_values(self, images: torch.Tensor) -> None:
        """Non-finite values, or values above 20, which no normalisation of [0, 1] pixels with a std above 0.05
        gives: raw 0-255 pixels (a host batch without ``to_pixels``)."""
        if not images.numel():
            return
        _, hi = finite_range(images)
        if hi > 20:
            raise ValueError(f"`images` have values up to {hi:g}: raw 0-255 pixels? The host batch must be "
                             f"normalised as `input_spec` says ({self.input_spec})")

    def optimized(self) -> TeacherModule:
        """A copy on the fast inference path for CUDA: its own copy of the labeller, merged (a projector; LoRA and
        BatchNorm folded, one-token pool) or BatchNorm-folded (a teacher, each member of an ensemble), with the
        convolution and linear weights stored in bf16 (:func:`~lightlabel.core.fastpath.cast_autocast_weights`):
        under bf16 autocast a frozen labeller's float32 weights are cast again on every call, 124 casts per RN50
        projector call. Heads and classifiers stay float32. Same options, same labels as this module under CUDA
        autocast (bitwise on a ResNet tower: the stored tensors are those autocast made).

        The copy always labels under bf16 autocast, on CPU too (slower there without native bf16 support). This
        module and its labeller are not changed.

        Returns:
            A new :class:`TeacherModule` on the same device.
        """
        labeller = fast_labeller(self.labeller, weight_dtype=torch.bfloat16)
        with warnings.catch_warnings():  # a missing image size was warned about when this module was made
            warnings.simplefilter("ignore")
            module = TeacherModule(labeller, input_spec=self.input_spec, output=self.output,
                                   temperature=self.temperature, scale=self.scale, to_pixels=self.to_pixels)
        module.bf16_weights = True
        return module.to(self.gain.device)

    def extra_repr(self) -> str:
        return (f"input={self.input_spec}, output={self.output!r}, temperature={self.temperature:g}, "
                f"scale={self.scale:g}{', to_pixels=' + getattr(self.to_pixels, '__name__', 'fn') if self.to_pixels else ''}")


@torch.no_grad()
def calibrate_scale(labeller: nn.Module, reference: nn.Module, images: torch.Tensor, *, temperature: float = 1.0,
                    batch_size: int = 256) -> dict[str, float]:
    """The factor ``s`` on a labeller's logits that best matches a reference teacher's softmax at ``temperature``:
    ``argmin_s mean KL(softmax(z_ref / T) || softmax(s * z / T))`` over ``images`` (a 1-D convex problem, solved by
    Newton steps on ``log s``).

    A CLIP projector's logits are a scaled cosine (scale 100 for OpenAI weights) and come out flatter than a
    classifier trained with cross-entropy; host loops tuned their temperature for the latter.

    Args:
        labeller, reference: modules carrying an ``input_spec``, both mapping their inputs to ``(B, C)`` logits.
        images: ``(N, 3, H, W)`` float pixels in [0, 1] (views like the ones the loop will label).
        temperature: the host loop's softmax temperature.

    Both modules run in eval mode without gradients; each submodule's train/eval flag is restored afterwards.

    Returns:
        ``{"scale": s, "kl_before": KL at s = 1, "kl_after": KL at s, "std_ratio": mean per-view logit std of the
        reference over the labeller's}``.

    Raises:
        ValueError: ``images`` is not a non-empty ``(N, 3, H, W)`` float tensor; ``temperature`` or ``batch_size`` is
            not positive; either module carries no input spec; the two return different class counts.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4 \
            or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"`images` must be a non-empty (N, 3, H, W) float tensor of [0, 1] pixels, got "
                         f"{described(images)}")
    number_arg(temperature, "temperature", 0, open_low=True)
    int_arg(batch_size, "batch_size", 1)
    ours, theirs = [], []
    spec_a, spec_b = input_spec_of(labeller, "labeller"), input_spec_of(reference, "reference")
    modes = {m: m.training for module in (labeller, reference) for m in module.modules()}
    try:  # in eval mode (a reference in train mode would label with batch statistics and overwrite its running ones)
        labeller.eval(), reference.eval()
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = images[start:start + batch_size]
                ours.append(labeller(spec_a.prepare(x)).float())
                theirs.append(reference(spec_b.prepare(x)).float())
    finally:
        for m, mode in modes.items():
            m.training = mode
    z, ref = torch.cat(ours) / temperature, torch.cat(theirs) / temperature
    if z.shape != ref.shape:
        raise ValueError(f"the labeller returned {tuple(z.shape)} logits and the reference {tuple(ref.shape)}: they "
                         "must label the same classes")
    p = ref.log_softmax(-1)

    def kl(s: torch.Tensor) -> torch.Tensor:
        return (p.exp() * (p - (s * z).log_softmax(-1))).sum(-1).mean()

    log_s = torch.zeros((), dtype=torch.float64)
    for _ in range(50):  # Newton on log s with a finite-difference curvature; the problem is smooth and 1-D
        h = 1e-3
        f0, f1, f2 = (float(kl(torch.exp(log_s + d).float())) for d in (-h, 0.0, h))
        grad, curv = (f2 - f0) / (2 * h), (f2 - 2 * f1 + f0) / h**2
        step = -grad / curv if curv > 1e-12 else -0.5 * grad
        log_s = log_s + max(-1.0, min(1.0, step))
        if abs(step) < 1e-6:
            break
    s = float(torch.exp(log_s))
    return {"scale": s, "kl_before": float(kl(torch.tensor(1.0))), "kl_after": float(kl(torch.tensor(s))),
            "std_ratio": float(ref.std(-1).mean() / z.std(-1).mean())}
