"""Loading the frozen base model through open_clip, fingerprinting it, and the cached text head.

The base is whatever ``open_clip.create_model(name, pretrained=...)`` builds: a built-in name with a pretrained
tag (``"RN50-quickgelu"``/``"openai"``), a built-in or registered name with a local checkpoint path, or an
``hf-hub:``/``local-dir:`` identifier. Nothing of the base is ever stored in an adapter; the adapter records the
name, the tag and a fingerprint of the weights, and loading checks the fingerprint.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.files import atomic_write_bytes, cache_root
from ..utils.hashing import json_digest, tensors_digest

__all__ = ["PACKAGED", "BaseModel", "cache_root", "fingerprint", "is_portable", "load_base", "packaged_checkpoint",
           "quiet_random_init", "text_check", "text_features"]

logger = logging.getLogger(__name__)

#: open_clip configs shipped with lightlabel (tiny test bases, the offline proxy base), registered on import.
MODEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)


@dataclass
class BaseModel:
    """A loaded open_clip base.

    Attributes:
        model: the full open_clip model (float32, CPU), image and text towers.
        name: the open_clip model name or schema identifier.
        pretrained: the pretrained tag or checkpoint path, or ``None``; :data:`PACKAGED` for weights that ship in the
            package (never the package's local path).
        fingerprint: sha256 (hex) of the model's state dict, see :func:`fingerprint`.
        image_size: ``(H, W)`` the image tower expects, in pixels.
        mean, std: per-channel normalisation for RGB pixels in [0, 1].
        embed_dim: dimension ``d`` of the image and text embeddings.
        logit_scale: CLIP's learned ``log`` logit scale (``ln 100`` for OpenAI weights).
    """

    model: nn.Module
    name: str
    pretrained: str | None
    fingerprint: str
    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embed_dim: int
    logit_scale: float


def fingerprint(module: nn.Module) -> str:
    """sha256 (hex) of a module's state dict: every entry's name, dtype, shape and bytes, in sorted order.

    Identical weights give an identical fingerprint on every machine; any changed value changes it.
    """
    return tensors_digest(module.state_dict())


#: The ``pretrained`` tag of bases whose weights ship inside lightlabel (the offline proxy base). Adapter headers
#: record it instead of the package's local path, so an adapter names its base the same on every machine.
PACKAGED = "lightlabel:packaged"


class _NoRandomInitNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def quiet_random_init() -> Iterator[None]:
    """Silence open_clip's "No pretrained weights loaded ... Model initialized randomly" where a random build is
    intended (tiny test bases, layouts on the meta device); every other log record passes."""
    noise = _NoRandomInitNotice()
    root = logging.getLogger()
    root.addFilter(noise)
    try:
        yield
    finally:
        root.removeFilter(noise)


def packaged_checkpoint(name: str) -> Path | None:
    """The weights file shipped in the package for base ``name``, or ``None``."""
    from .proxy import PROXY_BASE, PROXY_CHECKPOINT

    return PROXY_CHECKPOINT if name == PROXY_BASE and PROXY_CHECKPOINT.is_file() else None


def is_portable(name: str, pretrained: str | None) -> bool:
    """Whether ``(name, pretrained)`` names a base the same way on every machine: an open_clip tag, an ``hf-hub:``
    identifier, the packaged tag :data:`PACKAGED`, or ``None`` (random weights, tests). A local path is not."""
    if pretrained is None or pretrained == PACKAGED or name.startswith("hf-hub:"):
        return True
    return pretrained in open_clip.list_pretrained_tags_by_model(name) if not name.startswith("local-dir:") else False


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def load_base(name: str, pretrained: str | None = None, *, cache_dir: str | None = None) -> BaseModel:
    """Build an open_clip model (float32, CPU, eval mode) and describe it.

    Args:
        name: open_clip model name (see ``open_clip.list_models()``), or an ``hf-hub:``/``local-dir:`` identifier.
        pretrained: open_clip pretrained tag (see ``open_clip.list_pretrained_tags_by_model(name)``), a path to
            a local checkpoint, :data:`PACKAGED` for weights shipped in lightlabel (the offline proxy base), or
            ``None`` for random weights (tests only; logs a warning).
        cache_dir: open_clip's download cache.

    Raises:
        ValueError: an unknown model name (the message lists the valid ones) or an unknown tag/missing file.
        RuntimeError: open_clip could not load the weights (e.g. offline with nothing cached).
    """
    has_schema = name.startswith(("hf-hub:", "local-dir:"))
    recorded = pretrained
    packaged = packaged_checkpoint(name)
    if pretrained == PACKAGED:
        if packaged is None:
            raise ValueError(f"`pretrained` {PACKAGED!r}: lightlabel ships no weights for base {name!r}")
        pretrained = str(packaged)
    elif packaged is not None and pretrained is not None and os.path.isfile(pretrained) and \
            Path(pretrained).resolve() == packaged.resolve():
        recorded = PACKAGED  # the package's own copy: record it portably, not as this machine's path
    if not has_schema and open_clip.get_model_config(name.replace("/", "-")) is None:
        raise ValueError(f"`base` {name!r} is not an open_clip model config. Available: {open_clip.list_models()}")
    if pretrained is not None and not has_schema:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags and not os.path.isfile(pretrained):
            raise ValueError(
                f"`pretrained` {pretrained!r} is neither a known open_clip tag for {name!r} (available: {tags}) "
                "nor an existing checkpoint file"
            )
    try:
        model = open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir)
    except Exception as e:
        from huggingface_hub import constants

        where = cache_dir or constants.HF_HUB_CACHE
        hint = "" if pretrained is None or os.path.isfile(pretrained) else (
            f". open_clip fetches these weights from the Hugging Face Hub into {where}: run "
            f"`open_clip.create_model({name!r}, pretrained={pretrained!r})` once on a machine with network access and "
            "copy that cache folder here, or pass `pretrained=` a local checkpoint file")
        raise RuntimeError(f"open_clip could not load base {name!r} with pretrained={pretrained!r}: "
                           f"{str(e).rstrip('.')}{hint}") from e
    if pretrained is None and not has_schema:
        logger.warning("base %r built with random weights (pretrained=None): labels are meaningless", name)
    model.eval().requires_grad_(False)
    visual = model.visual
    cfg = open_clip.get_model_preprocess_cfg(model)
    embed_dim = getattr(visual, "output_dim", None)
    if embed_dim is None:
        embed_dim = int(model.text_projection.shape[-1])
    return BaseModel(
        model=model,
        name=name,
        pretrained=recorded,
        fingerprint=fingerprint(model),
        image_size=_pair(cfg.get("size", visual.image_size)),
        mean=tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        embed_dim=int(embed_dim),
        logit_scale=float(model.logit_scale.detach()) if hasattr(model, "logit_scale") else float(torch.log(torch.tensor(100.0))),
    )


def text_features(
    base: BaseModel,
    class_names: Sequence[str],
    templates: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    use_cache: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Prompt-ensembled, L2-normalised text embeddings of the class names: ``[C, d]`` float32 on CPU.

    Each class embedding is the normalised mean of the normalised embeddings of its prompts (open_clip's
    ``build_zero_shot_classifier``; HeLlO Alg. 1 line 4). The result is cached on disk under
    ``cache_root()/text_heads`` keyed by the base fingerprint, class names and templates (RN50's text tower
    needs minutes on CPU for 1000 classes).
    """
    key = json_digest([base.fingerprint, list(class_names), list(templates)])
    path = cache_root() / "text_heads" / f"{key}.safetensors"
    if use_cache and path.is_file():
        try:
            cached = safetensors.torch.load_file(str(path))["text_features"]
            if cached.shape == (len(class_names), base.embed_dim):
                logger.info("text head loaded from cache %s", path)
                return cached
        except Exception as e:  # a damaged cache entry is recomputed, never trusted
            logger.warning("ignoring damaged text-head cache entry %s (%s)", path, e)
    model = base.model.to(device)
    tokenizer = open_clip.get_tokenizer(base.name)
    try:
        with torch.no_grad():
            weight = open_clip.build_zero_shot_classifier(
                model, tokenizer, list(class_names), list(templates),
                num_classes_per_batch=10, device=device, use_tqdm=progress,
            )
    finally:
        base.model.to("cpu")
    feats = weight.t().float().cpu().contiguous()
    if use_cache:
        atomic_write_bytes(path, safetensors.torch.save({"text_features": feats}))
    return feats


def text_check(weight: torch.Tensor, probes: int = 3) -> tuple[tuple[float, ...], ...]:
    """Projections of the normalised class embeddings on ``probes`` fixed random unit vectors, rounded to 1e-4.

    Stored in the adapter; on load, the head's text embeddings must reproduce them within 2e-3, which
    detects another text tower, another embedding file or a shuffled class order without storing ``W_txt``.

    Shape:
        - weight: ``(C, d)``.
        - returns: ``C`` tuples of ``probes`` floats.
    """
    g = torch.Generator().manual_seed(20240917)
    p = F.normalize(torch.randn(weight.shape[1], probes, generator=g), dim=0)
    proj = F.normalize(weight.detach().float().cpu(), dim=-1) @ p
    return tuple(tuple(round(float(v), 4) for v in row) for row in proj)
