"""Progress bars (tqdm) that can be switched off per call or globally with ``TQDM_DISABLE=1``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar; ``disable=True`` or the environment variable ``TQDM_DISABLE=1`` switches it off."""
    disable = disable or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(iterable, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
