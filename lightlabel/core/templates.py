"""Prompt templates used to build the text-initialised classifier head.

The head is initialised from the prompt-ensembled text embeddings of the class names (HeLlO Sec. 3.2,
Proposition 1). Templates are plain ``str.format`` strings with one ``{}`` for the class name, so they can be
stored in the adapter's metadata and compared on load.
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip

__all__ = ["HELIO_TEMPLATES", "OPENAI_IMAGENET_TEMPLATES", "resolve_templates"]

#: The 7 templates of HeLlO supplementary A.3 (the default).
HELIO_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

#: The 80 prompt-engineering templates of OpenAI CLIP for ImageNet, as format strings (from open_clip).
OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES)

_NAMED = {"helio": HELIO_TEMPLATES, "openai": OPENAI_IMAGENET_TEMPLATES}


def resolve_templates(templates: str | Sequence[str] | None) -> tuple[str, ...]:
    """Turn a template choice into a tuple of format strings.

    Args:
        templates: ``None`` or ``"helio"`` (the 7 HeLlO templates), ``"openai"`` (the 80 OpenAI ImageNet
            templates), or a sequence of format strings each containing exactly one ``{}``.

    Returns:
        The templates as a tuple of ``str``.

    Raises:
        ValueError: an unknown name, an empty sequence, or a template without exactly one ``{}``.
    """
    if templates is None:
        return HELIO_TEMPLATES
    if isinstance(templates, str):
        if templates not in _NAMED:
            raise ValueError(f"`templates` must be one of {sorted(_NAMED)} or a list of format strings, got {templates!r}")
        return _NAMED[templates]
    out = tuple(templates)
    if not out:
        raise ValueError("`templates` must not be empty")
    for t in out:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"each template must be a str with exactly one '{{}}' for the class name, got {t!r}")
    return out
