"""Exception types raised by lightlabel.

Every error that comes from a damaged, edited or mismatched adapter file is an :class:`AdapterError`,
so a training script can catch one type and know that no labels were produced from that file.
"""

from __future__ import annotations

__all__ = ["AdapterError", "HubError", "StoredLabelsError"]


class AdapterError(ValueError):
    """An adapter file is damaged, edited, from another format version, or does not match the base model.

    Raised by :meth:`lightlabel.Projector.from_pretrained` and :func:`lightlabel.load_adapter`. The message
    names the file, what was expected and what was found. A subclass of :class:`ValueError`, so code that
    already catches ``ValueError`` keeps working.
    """


class StoredLabelsError(ValueError):
    """A stored-soft-labels folder is damaged, edited, truncated or of another format version.

    Raised by :class:`lightlabel.StoredSoftLabels`; the message names the file. A subclass of :class:`ValueError`.
    """


class HubError(RuntimeError):
    """A Hugging Face Hub request failed: the Hub could not be reached, refused the token, or has no such repo.

    Raised by :meth:`lightlabel.Projector.push_to_hub` and :meth:`lightlabel.Projector.from_pretrained` (and the
    ``push`` and ``info`` commands, which print its one-line message). The message names the repo, what failed and
    what to do; the original exception is chained as ``__cause__``.
    """
