"""The image-to-label projector: a frozen open_clip image tower with LoRA plus a text-initialised low-rank head.

    logits = exp(logit_scale) * normalize(E_I(x; W + B A)) @ W_h^T + bias

(HeLlO Sec. 3.2-3.3; ``W_h`` is described in :mod:`lightlabel.head`). Only the adapter (LoRA factors, head
factors, logit scale, bias) is trainable and stored; the base stays frozen and in eval mode.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import open_clip
import safetensors.torch
import torch
from torch import nn
from torchvision.transforms import v2

from ..classes import class_order_message
from ..configs import AdapterConfig
from ..errors import AdapterError
from ..inputs import InputSpec, finite_range
from ..io.adapter_format import (
    ADAPTER_FILENAME,
    STORAGE_DTYPES,
    AdapterInfo,
    encode_adapter,
    read_adapter,
)
from ..io.hub import model_card, push_folder, resolve_adapter, write_model_card
from ..storage import StorageReport, storage_report
from ..utils.files import atomic_write_bytes
from .base import (
    PACKAGED,
    BaseModel,
    is_portable,
    load_base,
    packaged_checkpoint,
    quiet_random_init,
    text_check,
    text_features,
)
from .fastpath import fold_batchnorm, set_input_size, unfold_batchnorm, use_one_token_pool
from .head import TextHead
from .lora import LoRAWeight, attach_lora, find_lora_targets, merge_lora, unmerge_lora
from .templates import resolve_templates

__all__ = ["Projector", "adapter_layout_nbytes"]

logger = logging.getLogger(__name__)

_TEXT_CHECK_TOL = 2e-3
#: Companion file of a folder adapter whose head came from precomputed text embeddings.
TEXT_EMBEDDINGS_FILENAME = "text_embeddings.safetensors"


def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"`class_names` must be a sequence of str, got {type(class_names).__name__}")
    names = tuple(class_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"`class_names` must be a non-empty sequence of non-empty str, got {list(names)[:5]}...")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"`class_names` contains duplicates: {dupes}")
    return names


class Projector(nn.Module):
    """Frozen open_clip image tower + LoRA + text-initialised low-rank head: labels images online.

    Args:
        base: open_clip model name, e.g. ``"RN50-quickgelu"`` or ``"ViT-B-32"``, or a ``local-dir:``/``hf-hub:``
            identifier (see ``open_clip.list_models()``).
        pretrained: open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"``), a local checkpoint path, or
            ``None`` (random weights; tests only).
        class_names: class names in label-index order, length ``C``.
        config: the adapter's ranks, alphas, LoRA targets and head mode (:class:`~lightlabel.AdapterConfig`;
            default: the paper's image rank 8 on every conv, head rank 64, ``"renorm"``).
        templates: prompt templates: ``None``/``"helio"`` (the 7 of HeLlO supp. A.3), ``"openai"`` (80), or a
            list of format strings with one ``{}``. Ignored when ``text_embeddings`` is given.
        text_embeddings: optional precomputed class text embeddings ``[C, d]`` (any norm) instead of running the
            text tower.
        device: device for the text tower pass and the returned module (default CPU).
        cache_dir: open_clip's download cache for the base weights.
        progress: show a progress bar while encoding the class prompts.

    Shape:
        - Input: ``(B, 3, H, W)`` float images normalised with :attr:`input_spec`, ``(H, W)`` =
          :attr:`image_size`; other sizes are refused (:meth:`as_teacher` converts a host loop's batches).
        - Output: ``(B, C)`` float32 logits.

    Raises:
        TypeError: ``config`` is not an :class:`~lightlabel.AdapterConfig`.
        ValueError: bad class names, templates, embeddings shape, or unknown base/tag.
        RuntimeError: open_clip could not load the base weights.

    Source: HeLlO Sec. 3.2-3.3, Eq. 2-5, Alg. 1 lines 4-5.

    Example:
        With CLIP itself (downloads its weights once): ``Projector(base="RN50-quickgelu", pretrained="openai",
        class_names=["cat", "dog"], config=AdapterConfig(image_rank=8, head_rank=64))``. Offline, on the proxy base
        shipped in the package:

        >>> import torch
        >>> projector = Projector(base="lightlabel-proxy-rn", pretrained="lightlabel:packaged",
        ...                       class_names=["tench", "goldfish"], text_embeddings=torch.randn(2, 512))
        >>> pixels = torch.rand(4, 3, 64, 64)  # RGB in [0, 1] at the base's size
        >>> projector(projector.input_spec.prepare(pixels)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        *,
        base: str,
        pretrained: str | None,
        class_names: Sequence[str],
        config: AdapterConfig | None = None,
        templates: str | Sequence[str] | None = None,
        text_embeddings: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        cache_dir: str | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__()
        config = AdapterConfig() if config is None else config
        if not isinstance(config, AdapterConfig):
            raise TypeError(f"`config` must be an AdapterConfig, got {type(config).__name__}")
        names = _check_class_names(class_names)
        loaded = load_base(base, pretrained, cache_dir=cache_dir)
        device = torch.device(device) if device is not None else torch.device("cpu")
        if text_embeddings is not None:
            if not isinstance(text_embeddings, torch.Tensor) or not text_embeddings.is_floating_point():
                raise TypeError("`text_embeddings` must be a floating-point torch.Tensor of shape [C, d]")
            if tuple(text_embeddings.shape) != (len(names), loaded.embed_dim):
                raise ValueError(
                    f"`text_embeddings` must have shape [C, d] = [{len(names)}, {loaded.embed_dim}] "
                    f"(classes, base embed dim), got {list(text_embeddings.shape)}"
                )
            if not torch.isfinite(text_embeddings).all() or (text_embeddings.norm(dim=-1) == 0).any():
                raise ValueError("`text_embeddings` must be finite with non-zero rows")
            text = text_embeddings.detach().float().cpu()
            self.templates: tuple[str, ...] | None = None
        else:
            self.templates = resolve_templates(templates)
            text = text_features(loaded, names, self.templates, device=device, progress=progress)
        self._setup(loaded, config, names, text)
        self.to(device)

    def _setup(self, loaded: BaseModel, config: AdapterConfig, names: tuple[str, ...], text: torch.Tensor) -> None:
        self.config = config
        self.base_model, self.base_pretrained, self.base_fingerprint = loaded.name, loaded.pretrained, loaded.fingerprint
        self.image_size, self.mean, self.std = loaded.image_size, loaded.mean, loaded.std
        self.class_names: tuple[str, ...] = names
        self.fit_info: dict[str, Any] = {}
        self.visual = loaded.model.visual  # the text tower is dropped: its only output is the text head
        self.visual.eval().requires_grad_(False)
        if config.label_size is not None:  # label at another resolution: resample the positional embedding once
            self.image_size = (config.label_size, config.label_size)
            set_input_size(self.visual, self.image_size)
        self.folded_norms = nn.ModuleDict()  # BatchNorms folded into their convolutions while merged
        self.lora_weights = tuple(find_lora_targets(self.visual, config.targets))
        if not self.lora_weights:
            raise ValueError(f"no weights of {type(self.visual).__name__} match LoRA targets {list(config.targets)}")
        self.image_lora = nn.ModuleList()
        for name in self.lora_weights:
            lora = LoRAWeight(self._weight(name).shape, config.image_rank, config.image_alpha)
            attach_lora(self.visual, name, lora)
            self.image_lora.append(lora)
        self.head = TextHead(text, rank=config.head_rank, alpha=config.head_alpha, logit_scale=loaded.logit_scale,
                             mode=config.head_mode)
        self._text_check = text_check(text)
        self._merged = False

    def _weight(self, name: str) -> torch.Tensor:
        module_path, _, param = name.rpartition(".")
        return getattr(self.visual.get_submodule(module_path) if module_path else self.visual, param)

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return len(self.class_names)

    @property
    def merged(self) -> bool:
        """Whether the LoRA updates are folded into the weights (see :meth:`merge`)."""
        return self._merged

    @property
    def device(self) -> torch.device:
        """The device the adapter (and so the whole module) is on."""
        return self.head.bias.device

    @property
    def input_spec(self) -> InputSpec:
        """What the image tower expects: the base's mean, std and image size (:class:`~lightlabel.InputSpec`)."""
        return InputSpec(self.mean, self.std, self.image_size)

    @property
    def preprocess(self) -> v2.Compose:
        """torchvision v2 transform for PIL images or uint8 tensors: resize, center-crop, to float [0, 1], normalise."""
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(min(self.image_size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(self.image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
        ])

    # ------------------------------------------------------------------ inputs
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Deprecated: ``projector.input_spec.normalize(images)`` (the input spec owns the normalisation)."""
        warnings.warn("Projector.normalize() is deprecated: use projector.input_spec.normalize(images)",
                      DeprecationWarning, stacklevel=2)
        return self.input_spec.normalize(images)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Deprecated: ``projector.input_spec.denormalize(images)``."""
        warnings.warn("Projector.denormalize() is deprecated: use projector.input_spec.denormalize(images)",
                      DeprecationWarning, stacklevel=2)
        return self.input_spec.denormalize(images)

    def check_images(self, images: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
        """Deprecated: :meth:`forward` checks its input itself (``check=``)."""
        warnings.warn("Projector.check_images() is deprecated: forward() checks its input (check=True)",
                      DeprecationWarning, stacklevel=2)
        return self._check_images(images, check_values=check_values)

    def _check_images(self, images: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
        """Validate a batch for the image tower (the checks :meth:`forward` documents).

        Args:
            images: ``(B, 3, H, W)`` float tensor, normalised with :attr:`mean`/:attr:`std`.
            check_values: also check the values (one host sync): non-finite pixels are an error, values above 20
                (raw 0-255 pixels) are an error, a batch entirely within [0, 1] warns (probably not normalised).

        Returns:
            The batch, unchanged.

        Raises:
            TypeError: not a tensor, an integer dtype (e.g. uint8 pixels), or float64 on float32 weights.
            ValueError: not 4-D, not 3 channels, another size than :attr:`image_size` (the message names
                :meth:`as_teacher`, which converts a host loop's batches), or bad values (see ``check_values``).
        """
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"`images` must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(
                f"`images` must be a float tensor normalised with mean={self.mean}, std={self.std}; got dtype "
                f"{images.dtype} (raw pixels? use projector.input_spec.normalize(images.float() / 255))"
            )
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must have shape (B, 3, H, W), got {tuple(images.shape)}")
        weights = self.head.text_weight.dtype
        if images.dtype == torch.float64 and weights != torch.float64:
            raise TypeError(f"`images` are torch.float64 but the projector's weights are {weights}: pass "
                            f"images.float() (labellers in lightlabel.labeling cast for you)")
        h, w = images.shape[-2:]
        if (h, w) != self.image_size:
            eh, ew = self.image_size
            raise ValueError(
                f"`images` are {h}x{w} but this projector labels {eh}x{ew} images normalised with mean={self.mean}, "
                f"std={self.std}; it never resizes or renormalises foreign input. To label another loop's batches, "
                f"wrap it: `projector.as_teacher(InputSpec(mean, std, image_size))` converts both")
        if check_values and images.numel():
            lo, hi = finite_range(images)
            if hi > 20:
                raise ValueError(
                    f"`images` have values up to {hi:g}: they look like raw 0-255 pixels, not normalised images "
                    f"(use projector.input_spec.normalize(images / 255))"
                )
            if lo >= 0 and hi <= 1 and images.shape[0] > 1:
                warnings.warn(
                    "`images` are all within [0, 1]: are they normalised? Use projector.input_spec.normalize(images)",
                    stacklevel=3,
                )
        return images

    # ------------------------------------------------------------------ forward
    def encode_image(self, images: torch.Tensor, *, check: bool | None = None) -> torch.Tensor:
        """Image features ``E_I(x)`` of the adapted tower, ``(B, 3, H, W) -> (B, d)`` (the tower's dtype).

        Used by the Eq. 7 image refinement. ``check`` as in :meth:`forward`.
        """
        check = images.device.type == "cpu" if check is None else check
        return self.visual(self._check_images(images, check_values=check))

    def forward(self, images: torch.Tensor, *, check: bool | None = None) -> torch.Tensor:
        """Logits for a batch of normalised images.

        Args:
            images: ``(B, 3, H, W)`` float, normalised with :attr:`mean`/:attr:`std`: float32 (fp16/bf16 under
                autocast; float64 only on float64 weights).
            check: validate the pixel values (on an accelerator this costs a host-device sync per call). ``None``
                (default): on CPU tensors only, so the labelling step stays free of syncs on CUDA (the relabeler
                checks its outputs every few calls instead). Shape, size and dtype are always validated.

        Returns:
            ``(B, C)`` float32 logits.

        Raises:
            TypeError: not a tensor, an integer dtype (e.g. uint8 pixels), or float64 on float32 weights.
            ValueError: not 4-D, not 3 channels, another size than :attr:`image_size` (the message names
                :meth:`as_teacher`, which converts a host loop's batches); with ``check``: NaN or Inf values, or
                values above 20 (raw 0-255 pixels). A batch entirely within [0, 1] warns (probably not normalised).
        """
        return self.head(self.encode_image(images, check=check))

    # ------------------------------------------------------------------ training / merging
    def train(self, mode: bool = True) -> Projector:
        """Set the adapter's training mode. The base always stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.visual.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The adapter tensors (LoRA factors, head factors, logit scale, bias); nothing of the base."""
        return [p for lora in self.image_lora for p in (lora.lora_A, lora.lora_B)] + [
            self.head.lora_A, self.head.lora_B, self.head.logit_scale, self.head.bias
        ]

    def merge(self) -> Projector:
        """The inference path: fold the LoRA updates into the image-tower weights, fold each BatchNorm into its
        convolution, compute the attention pool's query from the one token it keeps, and precompute the head
        (:mod:`lightlabel.core.fastpath`).

        Outputs equal the unmerged ones up to float rounding (1e-5 relative in float32). Gradients no longer
        reach the adapter while merged; call :meth:`unmerge` before fitting further. Idempotent.

        Raises:
            ValueError: the merged weights would not be finite (nothing is changed).
        """
        if not self._merged:
            merge_lora(self.visual, self.lora_weights)
            fold_batchnorm(self.visual, self.folded_norms)
            use_one_token_pool(self.visual, True)
            self.head.merge()
            self._merged = True
        return self

    def compile(self, **kwargs: Any) -> Projector:
        """Merge, then compile the image tower in place with ``torch.compile`` (``nn.Module.compile``).

        Args:
            **kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``, ``backend="eager"``).

        Returns:
            ``self``. The first call of each input shape compiles (seconds to minutes); later calls are faster on
            CUDA. Unmerging afterwards triggers a recompilation.
        """
        self.merge()
        self.visual.compile(**kwargs)
        return self

    def unmerge(self) -> Projector:
        """Undo :meth:`merge`: re-attach the LoRA updates (base weights recovered as ``W' - delta``). Idempotent."""
        if self._merged:
            use_one_token_pool(self.visual, False)
            unfold_batchnorm(self.visual, self.folded_norms)
            self.visual.eval()
            unmerge_lora(self.visual, self.lora_weights, list(self.image_lora))
            self.head.unmerge()
            self._merged = False
        return self

    # ------------------------------------------------------------------ adapter state
    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The adapter tensors under their file keys (float32, detached, on the module's device)."""
        state = {}
        for name, lora in zip(self.lora_weights, self.image_lora):
            state[f"image.{name}.lora_A"] = lora.lora_A.detach()
            state[f"image.{name}.lora_B"] = lora.lora_B.detach()
        state["head.lora_A"] = self.head.lora_A.detach()
        state["head.lora_B"] = self.head.lora_B.detach()
        state["head.logit_scale"] = self.head.logit_scale.detach()
        state["head.bias"] = self.head.bias.detach()
        return state

    @torch.no_grad()
    def load_adapter_state(self, tensors: dict[str, torch.Tensor], source: str = "<adapter>") -> None:
        """Copy adapter tensors in, strictly: the exact key set and shapes are required.

        Raises:
            AdapterError: missing, unexpected or wrongly shaped tensors, or tensors holding NaN or Inf (the module is
                left unchanged).
        """
        own = self.adapter_state()
        missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise AdapterError(f"{source}: adapter tensors do not match the projector: missing {missing[:5]}"
                               f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}")
        for key, t in own.items():
            if tuple(tensors[key].shape) != tuple(t.shape):
                raise AdapterError(f"{source}: tensor {key!r} has shape {list(tensors[key].shape)}, "
                                   f"expected {list(t.shape)}")
            if not bool(torch.isfinite(tensors[key]).all()):
                raise AdapterError(f"{source}: tensor {key!r} holds NaN or Inf values")
        was_merged = self._merged
        self.unmerge()
        for key, t in own.items():
            t.copy_(tensors[key].to(t))
        if was_merged:
            self.merge()

    def info(self, storage_dtype: str = "fp32") -> AdapterInfo:
        """The adapter header this projector would write."""
        return AdapterInfo(
            config=self.config, base_model=self.base_model, base_pretrained=self.base_pretrained,
            base_fingerprint=self.base_fingerprint, image_size=self.image_size, mean=self.mean, std=self.std,
            class_names=self.class_names, templates=self.templates, text_check=self._text_check,
            lora_weights=self.lora_weights, storage_dtype=storage_dtype, fit_info=dict(self.fit_info),
        )

    def to_bytes(self, dtype: str = "fp32") -> bytes:
        """The adapter file's bytes (see :mod:`lightlabel.adapter_io`) with factors stored in ``dtype``."""
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"`dtype` must be one of {list(STORAGE_DTYPES)}, got {dtype!r}")
        return encode_adapter(self.adapter_state(), self.info(dtype))

    @property
    def adapter_nbytes(self) -> int:
        """Size in bytes of the float32 adapter file (tensors + header); the storage this labeller costs."""
        return len(self.to_bytes("fp32"))

    def extra_bytes(self) -> int:
        """Deprecated: :attr:`adapter_nbytes` (what a projector's labels cost besides the images)."""
        warnings.warn("Projector.extra_bytes() is deprecated: use adapter_nbytes", DeprecationWarning, stacklevel=2)
        return self.adapter_nbytes

    def num_adapter_parameters(self) -> int:
        """Number of adapter parameters (LoRA factors, head factors, scale, bias)."""
        return sum(p.numel() for p in self.trainable_parameters())

    def storage_report(self, *, ipc: int, epochs: int, label_bytes: int = 2, teacher: str | nn.Module | int = "resnet18",
                       dtype: str = "fp32") -> StorageReport:
        """Deprecated: ``ll.storage_report(num_classes=p.num_classes, ipc=..., epochs=..., adapter_nbytes=len(
        p.to_bytes(dtype)))``; byte accounting lives in :mod:`lightlabel.storage`."""
        warnings.warn("Projector.storage_report() is deprecated: use lightlabel.storage_report(num_classes=..., "
                      "adapter_nbytes=projector.adapter_nbytes, ...)", DeprecationWarning, stacklevel=2)
        return storage_report(num_classes=self.num_classes, ipc=ipc, epochs=epochs, label_bytes=label_bytes,
                              teacher=teacher, adapter_nbytes=len(self.to_bytes(dtype)), adapter_note=f"this adapter, {dtype}")

    def save_pretrained(self, path: str | os.PathLike, *, dtype: str = "fp32", **card_kwargs: Any) -> Path:
        """Write the adapter (and, for a folder, a model card) atomically: temp file + rename, so a crash leaves
        any previous version intact.

        Args:
            path: a ``.safetensors`` file (the adapter only), or a folder: ``<folder>/adapter.safetensors`` plus the
                model card ``<folder>/README.md`` (see :func:`lightlabel.io.hub.model_card`), plus
                ``<folder>/text_embeddings.safetensors`` when the head was built from precomputed text embeddings
                (bases without a usable text tower, such as the offline proxy base).
            dtype: storage dtype of the LoRA factors: ``"fp32"`` (exact), ``"fp16"`` or ``"int8"``.
            **card_kwargs: for the model card: ``ipc``, ``epochs``, ``license``, ``dataset``, ``repo_id``.

        Returns:
            The path of the adapter file.

        Raises:
            ValueError: an unknown ``dtype`` (nothing is written).
        """
        path = Path(path)
        data = self.to_bytes(dtype)
        if path.suffix == ".safetensors":
            atomic_write_bytes(path, data)
            return path
        file = path / ADAPTER_FILENAME
        atomic_write_bytes(file, data)
        if self.templates is None:  # from_pretrained(folder) then needs nothing else
            atomic_write_bytes(path / TEXT_EMBEDDINGS_FILENAME, safetensors.torch.save(
                {"text_embeddings": self.head.text_weight.detach().cpu().contiguous()}))
        card = model_card(self.info(dtype), adapter_nbytes=len(data), num_parameters=self.num_adapter_parameters(),
                          **card_kwargs)
        write_model_card(card, path)
        logger.debug("adapter and model card written to %s", path)
        return file

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                    commit_message: str | None = None, revision: str | None = None, dtype: str = "fp32",
                    **card_kwargs: Any) -> Any:
        """Upload the adapter, its companions and its model card to the Hugging Face Hub in one commit.

        Repo naming convention: ``<org>/lightlabel-<base>-<dataset>-r<rank>`` (:func:`lightlabel.io.hub.repo_name`).

        Returns:
            huggingface_hub's ``CommitInfo``.

        Raises:
            RuntimeError: offline mode. HubError (a RuntimeError): the Hub could not be reached, refused the token or
            the write, in one line. ValueError: a malformed ``repo_id``, or a base recorded as a local file path
            (a Hub adapter must name its base portably: an open_clip tag, an ``hf-hub:`` id or the packaged proxy).
        """
        if not is_portable(self.base_model, self.base_pretrained):
            raise ValueError(f"the base is recorded as the local file {self.base_pretrained!r}, which nobody else has; "
                             f"build the projector from an open_clip tag (e.g. pretrained='openai'), an 'hf-hub:' "
                             f"base or the packaged proxy before pushing")
        with tempfile.TemporaryDirectory(prefix="lightlabel-push-") as tmp:
            self.save_pretrained(tmp, dtype=dtype, repo_id=repo_id, **card_kwargs)
            return push_folder(tmp, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message or f"Upload lightlabel adapter ({self.num_classes} classes)")

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        pretrained: str | None = None,
        class_names: Sequence[str] | None = None,
        text_embeddings: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> Projector:
        """Load an adapter and the base model its header names, and check that they match.

        Args:
            path_or_repo_id: a Hub repo id (``"org/name"``), a local folder holding ``adapter.safetensors``, or a
                local ``.safetensors`` file. An existing local path always wins; a missing local path is an error,
                never a Hub request.
            revision, cache_dir, local_files_only, token: Hub download options (``hf_hub_download``). Only the
                adapter file is downloaded; with ``HF_HUB_OFFLINE=1`` or ``local_files_only`` only the cache is read.
                ``cache_dir`` is also open_clip's cache for the base weights.
            pretrained: where to find the base weights on this machine, overriding the tag or path recorded in
                the adapter (the fingerprint must still match).
            class_names: the class order your dataset uses; it must equal the adapter's (use :meth:`remap` to
                reorder the head instead).
            text_embeddings: ``[C, d]`` embeddings, required for adapters built from precomputed embeddings
                (read from ``text_embeddings.safetensors`` beside the adapter when present).
            device: device for the module.

        Raises:
            FileNotFoundError: no adapter at a local path, or not in the cache while offline (the message says
                how to get it).
            HubError: the Hub could not be reached, refused the token, or answered an HTTP error (one line).
            AdapterError: a damaged file, another base (fingerprint), another class list or order, text
                embeddings that do not reproduce the adapter's ``text_check``, or wrong tensor shapes.
        """
        file = resolve_adapter(path_or_repo_id, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token)
        info, tensors = read_adapter(file)
        if info.templates is None and text_embeddings is None:
            try:
                companion = resolve_adapter(path_or_repo_id, revision=revision, cache_dir=cache_dir,
                                            local_files_only=local_files_only, token=token,
                                            filename=TEXT_EMBEDDINGS_FILENAME)
                text_embeddings = safetensors.torch.load_file(str(companion))["text_embeddings"]
            except (FileNotFoundError, KeyError):
                pass  # _from_info explains that the embeddings are needed
        return cls._from_info(info, tensors, str(file), pretrained=pretrained, class_names=class_names,
                              text_embeddings=text_embeddings, device=device,
                              cache_dir=None if cache_dir is None else str(cache_dir), progress=progress)

    @classmethod
    def _from_info(cls, info: AdapterInfo, tensors: dict[str, torch.Tensor], source: str, *, pretrained, class_names,
                   text_embeddings, device, cache_dir, progress) -> Projector:
        if class_names is not None and tuple(class_names) != info.class_names:
            raise AdapterError(_class_mismatch(source, info.class_names, tuple(class_names)))
        if info.templates is None and text_embeddings is None:
            raise AdapterError(f"{source}: this adapter's head was built from precomputed text embeddings; "
                               "pass the same `text_embeddings` [C, d] to from_pretrained")
        if pretrained is None:
            pretrained = _resolve_recorded_base(info, source)
        projector = cls(
            base=info.base_model, pretrained=pretrained,
            class_names=info.class_names, config=info.config, templates=info.templates,
            text_embeddings=text_embeddings if info.templates is None else None, device="cpu", cache_dir=cache_dir,
            progress=progress,
        )
        if projector.base_fingerprint != info.base_fingerprint:
            raise AdapterError(
                f"{source}: adapter was fitted on base {info.base_model!r} (pretrained={info.base_pretrained!r}) "
                f"with fingerprint {info.base_fingerprint[:16]}..., but the loaded base has fingerprint "
                f"{projector.base_fingerprint[:16]}...: different weights, labels would be wrong"
            )
        if projector.lora_weights != info.lora_weights:
            raise AdapterError(f"{source}: adapted weights differ: adapter has {len(info.lora_weights)} "
                               f"({list(info.lora_weights[:3])}...), base gives {len(projector.lora_weights)}")
        if projector.image_size != info.image_size:
            raise AdapterError(f"{source}: image size {projector.image_size} differs from the adapter's {info.image_size}")
        worst = max(abs(a - b) for ra, rb in zip(projector._text_check, info.text_check) for a, b in zip(ra, rb))
        if worst > _TEXT_CHECK_TOL:
            raise AdapterError(
                f"{source}: the text head does not reproduce the adapter's text_check (max difference {worst:.4f} "
                f"> {_TEXT_CHECK_TOL}): another text tower, other text embeddings, or another class order"
            )
        projector.load_adapter_state(tensors, source)
        projector.fit_info = dict(info.fit_info)
        projector._text_check = info.text_check
        return projector.to(device if device is not None else "cpu")

    def as_teacher(self, input_spec: InputSpec, *, output: str = "logits", temperature: float = 1.0,
                   scale: float = 1.0, to_pixels: Any = None, class_names: Sequence[str] | None = None) -> nn.Module:
        """This projector as the teacher module a third-party loop expects (RDED, SRe2L, FKD, DD-Ranking).

        Merges this projector (the fast path, in place: call :meth:`unmerge` before fitting it further) and wraps it
        in a :class:`~lightlabel.TeacherModule`: ``(B, 3, H, W)`` batches in the host's normalisation and resolution
        -> ``(B, C)`` float32 logits or probabilities, without gradients, safe under ``DataParallel``. Under DDP,
        move it to each process's device and do not wrap it: no gradient flows through it, so there is nothing to
        synchronise.

        Args:
            input_spec: the host loop's input (``InputSpec.from_transform(its_transform)``, or a preset such as
                ``InputSpec.cifar10_dd()`` for the CIFAR statistics DD-Ranking and SRe2L use).
            output, temperature, scale, to_pixels, class_names: see :class:`~lightlabel.TeacherModule`
                (``class_names``, the host's classes, refuses a projector that orders them otherwise).

        Returns:
            The teacher module (it shares this projector).

        Raises:
            TypeError, ValueError: see :class:`~lightlabel.TeacherModule`.

        Example:
            >>> projector = Projector.packaged(["cat", "dog", "frog", "horse", "ship", "truck", "airplane",
            ...                                 "automobile", "bird", "deer"])
            >>> teacher = projector.as_teacher(InputSpec.cifar10_dd())
            >>> teacher(torch.randn(4, 3, 32, 32)).shape  # a batch in the host's normalisation, at 32 px
            torch.Size([4, 10])
        """
        from .teacher_module import TeacherModule

        return TeacherModule(self.merge(), input_spec=input_spec, output=output, temperature=temperature,
                             scale=scale, to_pixels=to_pixels, class_names=class_names)

    @classmethod
    def packaged(cls, class_names: Sequence[str], *, config: AdapterConfig | None = None,
                 device: torch.device | str | None = None) -> Projector:
        """A projector on the offline proxy base that ships inside the package: no download, no network.

        The base is ``lightlabel-proxy-rn`` (an open_clip ModifiedResNet at 64 px trained on 202 Tiny-ImageNet
        classes to match real CLIP ViT-B/32 text embeddings). It has no text tower of its own, so its head comes
        from the real CLIP text embeddings shipped with it, and ``class_names`` must be ImageNet WordNet ids
        (e.g. Imagenette's folder names, which become readable ImageNet names) or the CIFAR-10 class names (each
        the mean embedding of related ImageNet classes). It is a small proxy of CLIP for offline work, not CLIP.
        The adapter records its base as ``pretrained="lightlabel:packaged"``, which resolves on every install.

        Args:
            class_names: ImageNet WordNet ids or the 10 CIFAR-10 class names, in label-index order.
            config: the adapter's ranks and targets (default :class:`~lightlabel.AdapterConfig`).
            device: device of the returned module (default CPU).

        Returns:
            An unfitted projector (zero-shot labels: HeLlO Proposition 1); fit it with
            :func:`~lightlabel.fit_adapter` (``base="lightlabel-proxy-rn", pretrained="lightlabel:packaged"``).

        Raises:
            TypeError: ``class_names`` is a bare string or not a sequence.
            ValueError: an empty list, duplicates, or other class names (the message says to pass a CLIP base
                instead).
            FileNotFoundError: the packaged weights are missing (a broken install).

        Shape:
            - Input: ``(B, 3, 64, 64)`` float, normalised with :attr:`input_spec` (CLIP's statistics).
            - Output: ``(B, C)`` float32 logits.

        Example:
            >>> projector = Projector.packaged(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
            ...                                 "horse", "ship", "truck"])
            >>> projector.base_model, projector.base_pretrained, projector.image_size
            ('lightlabel-proxy-rn', 'lightlabel:packaged', (64, 64))
        """
        from .proxy import PROXY_BASE, PROXY_CHECKPOINT, proxy_head

        if not PROXY_CHECKPOINT.is_file():
            raise FileNotFoundError(f"the packaged proxy base {PROXY_CHECKPOINT} is missing: reinstall lightlabel-torch")
        names, text = proxy_head(_check_class_names(class_names))
        return cls(base=PROXY_BASE, pretrained=PACKAGED, class_names=names, text_embeddings=text, config=config,
                   device=device)

    # ------------------------------------------------------------------ classes
    def check_class_names(self, class_names: Sequence[str]) -> None:
        """Raise :class:`~lightlabel.AdapterError` unless ``class_names`` equals this projector's class order."""
        if tuple(class_names) != self.class_names:
            raise AdapterError(_class_mismatch("projector", self.class_names, tuple(class_names)))

    @torch.no_grad()
    def remap(self, class_names: Sequence[str]) -> Projector:
        """Reorder (or subset) the head to ``class_names``; label ``i`` then means ``class_names[i]``. In place.

        Raises:
            ValueError: a name the projector does not know (listed), or duplicates.
        """
        names = _check_class_names(class_names)
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise ValueError(f"`class_names` has names this projector does not know: {unknown[:10]} "
                             f"(known: {list(self.class_names)[:10]}...)")
        index = torch.tensor([self.class_names.index(n) for n in names], device=self.device)
        self.head.remap(index)
        self._text_check = tuple(self._text_check[i] for i in index.tolist())
        self.class_names = names
        return self

    def extra_repr(self) -> str:
        return (f"base={self.base_model!r}, pretrained={self.base_pretrained!r}, classes={self.num_classes}, "
                f"lora_weights={len(self.lora_weights)}, image_rank={self.config.image_rank}, "
                f"head_rank={self.config.head_rank}, merged={self._merged}")


def adapter_layout_nbytes(base: str = "RN50-quickgelu", num_classes: int = 1000,
                          config: AdapterConfig | None = None, dtype_bytes: int = 4) -> int:
    """Tensor bytes of an adapter's layout on an open_clip base, without building or downloading it (the base is
    built on the meta device): LoRA factors on every targeted weight, the head's factors, its scale and bias.

    Args:
        base: open_clip model name. num_classes: ``C``.
        config: the adapter (default: HeLlO's ImageNet-1k adapter, image rank 8 on every conv, head rank 128).
        dtype_bytes: bytes per factor element (4 fp32, 2 fp16); the scale and bias are always fp32.

    Raises:
        ValueError: an unknown base name.
    """
    config = config or AdapterConfig(image_rank=8, head_rank=128)
    if open_clip.get_model_config(base) is None:
        raise ValueError(f"`base` {base!r} is not an open_clip model config. Available: {open_clip.list_models()}")
    with torch.device("meta"), quiet_random_init():
        model = open_clip.create_model(base, pretrained=None, device="meta")
    factors = 0
    for name in find_lora_targets(model.visual, config.targets):
        path, _, attr = name.rpartition(".")
        weight = getattr(model.visual.get_submodule(path) if path else model.visual, attr)
        factors += config.image_rank * (weight.shape[0] + weight[0].numel())
    dim = model.visual.output_dim
    factors += config.head_rank * (dim + num_classes)
    return factors * dtype_bytes + 4 * (1 + num_classes)


def _resolve_recorded_base(info: AdapterInfo, source: str) -> str | None:
    """The ``pretrained`` to load for a header. A recorded local path that does not exist here (an adapter written
    by lightlabel 0.1, or on another machine) is resolved by fingerprint to the packaged weights when they match;
    otherwise the error names the base to supply."""
    recorded = info.base_pretrained
    if recorded is None or is_portable(info.base_model, recorded) or os.path.isfile(recorded):
        return recorded
    packaged = packaged_checkpoint(info.base_model)
    if packaged is not None and load_base(info.base_model, str(packaged)).fingerprint == info.base_fingerprint:
        logger.info("%s: base recorded as %s, resolved by fingerprint to the packaged weights", source, recorded)
        return PACKAGED
    raise AdapterError(
        f"{source}: the adapter's base {info.base_model!r} was recorded as the local file {recorded!r}, which does not "
        f"exist here; pass its weights with `Projector.from_pretrained(..., pretrained=PATH)` (the base fingerprint "
        f"{info.base_fingerprint[:16]}... is checked)")


def _class_mismatch(source: str, expected: tuple[str, ...], found: tuple[str, ...]) -> str:
    reorder = class_order_message(expected, found, what=source)
    if reorder is not None:
        return reorder
    missing = [n for n in expected if n not in found][:5]
    extra = [n for n in found if n not in expected][:5]
    return (f"{source}: class names differ: adapter has {len(expected)} classes, given {len(found)}; "
            f"missing {missing}, unknown {extra}")
