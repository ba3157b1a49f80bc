"""Files and the Hub: the verified adapter file format and Hugging Face Hub transfers.

This layer knows tensors, headers and folders, not models: :class:`lightlabel.Projector` serialises itself with
:func:`~lightlabel.io.adapter_format.encode_adapter` and reads with
:func:`~lightlabel.io.adapter_format.read_adapter`, so nothing here imports the projector (no import cycle).
"""

from .adapter_format import (
    ADAPTER_FILENAME,
    FORMAT_VERSION,
    STORAGE_DTYPES,
    AdapterInfo,
    decode_adapter,
    encode_adapter,
    read_adapter,
)
from .hub import is_offline, model_card, push_folder, repo_name, resolve_adapter

__all__ = [
    "ADAPTER_FILENAME",
    "FORMAT_VERSION",
    "STORAGE_DTYPES",
    "AdapterInfo",
    "decode_adapter",
    "encode_adapter",
    "is_offline",
    "model_card",
    "push_folder",
    "read_adapter",
    "repo_name",
    "resolve_adapter",
]
