"""Regenerate docs/api.md from the docstrings of every public name: ``python docs/_gen_api.py``."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightlabel as ll

OUT = Path(__file__).resolve().parent / "api.md"


def render() -> str:
    """The text of docs/api.md for the installed lightlabel."""
    parts = ["# API reference\n", "Generated from the docstrings by `python docs/_gen_api.py`; every name in "
             "`lightlabel.__all__` is listed. Documented submodules with more tools (layered; each imports only the ones "
             "before it): `lightlabel.utils` (atomic writes, seeds, progress, peak memory), `lightlabel.configs` (every "
             "settings dataclass), `lightlabel.data` (load_image_folder, ImageFolderDataset, extract_image_folder), "
             "`lightlabel.io` (adapter_format: encode/decode/read; hub: resolve_adapter, model_card, repo_name, "
             "push_folder), `lightlabel.core` (projector, lora, head, base, proxy: the offline proxy base), "
             "`lightlabel.models` (build_model, save_teacher), `lightlabel.labeling` (augment: Augmenter, epoch_views, "
             "shuffle_patches; sources: ModelLabels, HardLabels; relabel, losses, stored, teachers), "
             "`lightlabel.recipes` (loop: run_resumable, evaluate; fit, teachers, distill: stitch_patches, refine_images, down_up; "
             "student), `lightlabel.testing` (tiny open_clip bases).\n"]
    for name in sorted(ll.__all__, key=str.lower):
        obj = getattr(ll, name)
        if name == "__version__":
            parts.append(f"## `__version__`\n\n`{obj}`\n")
            continue
        if isinstance(obj, tuple):
            parts.append(f"## `{name}`\n\nA tuple of {len(obj)} prompt templates, e.g. `{obj[0]}`.\n")
            continue
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = ""
        kind = "class" if inspect.isclass(obj) else "function"
        parts.append(f"## `{name}{sig}`\n\n*{kind}* in `{obj.__module__}`\n\n```text\n{inspect.getdoc(obj) or ''}\n```\n")
        if inspect.isclass(obj):
            for meth_name, meth in inspect.getmembers(obj):
                if meth_name.startswith("_") or not (inspect.isfunction(meth) or isinstance(meth, property)):
                    continue
                if meth_name in ("forward", "extra_repr") or getattr(meth, "__qualname__", "").split(".")[0] != obj.__name__:
                    continue
                doc = inspect.getdoc(meth) or ""
                try:
                    msig = "" if isinstance(meth, property) else str(inspect.signature(meth))
                except (TypeError, ValueError):
                    msig = ""
                parts.append(f"### `{name}.{meth_name}{msig}`\n\n```text\n{doc}\n```\n")
    return "\n".join(parts)


def main() -> None:
    OUT.write_text(render())


if __name__ == "__main__":
    main()
