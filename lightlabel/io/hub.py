"""Hugging Face Hub: resolve adapters from Hub ids, local folders or files; model cards; uploads.

An adapter repo holds ``adapter.safetensors`` (the adapter only; the base model comes from open_clip) and a
model card ``README.md`` whose YAML front matter says ``library_name: lightlabel``. Downloads go through
``huggingface_hub.hf_hub_download`` tagged with ``library_name="lightlabel"`` and its version, so they land in
(and are read from) the standard Hub cache. In offline mode (``HF_HUB_OFFLINE=1``, read the way
huggingface_hub reads it, or ``local_files_only=True``) only the cache is consulted: no network call, no
time-out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import AdapterError, HubError
from ..storage import soft_label_nbytes, teacher_nbytes
from ..utils.files import atomic_write_text
from ..utils.hashing import file_digest
from ..version import DISTRIBUTION, __version__
from .adapter_format import ADAPTER_FILENAME, AdapterInfo
from .registry import AdapterEntry, adapter_entry, list_adapters

__all__ = ["hub_errors", "hub_failure", "is_offline", "model_card", "push_folder", "repo_name", "resolve_adapter", "write_model_card"]

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
TAGS = ["lightlabel", "dataset-distillation", "soft-labels", "knowledge-distillation", "lora", "clip", "open_clip"]


def is_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE``, as the library itself reads it)."""
    return bool(constants.is_offline_mode())


#: top-level packages whose exceptions mean "the network failed" (huggingface_hub's HTTP clients, old and new)
_NETWORK_PACKAGES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"})


def _is_network_error(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return any(cls.__module__.split(".")[0] in _NETWORK_PACKAGES for cls in type(error).__mro__)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def hub_failure(action: str, repo_id: str, error: BaseException) -> HubError | None:
    """The one-line :class:`~lightlabel.errors.HubError` for a failure of the Hub client, or ``None`` when ``error``
    is not one (a bug, a bad argument: let it propagate as it is).

    Covered: the Hub could not be reached (any transport error of huggingface_hub's HTTP client), refused the token
    (HTTP 401), refused the write (403), has no such repo or hides it, answered another HTTP error; no token where one
    is needed.
    """
    if isinstance(error, RepositoryNotFoundError):
        return HubError(f"{action} {repo_id}: the Hub has no repo {repo_id!r}, or your token cannot see it (log in "
                        "with `hf auth login`, or pass a token)")
    if isinstance(error, LocalTokenNotFoundError):
        return HubError(f"{action} {repo_id}: no Hugging Face token found (log in with `hf auth login`, or pass a "
                        "token)")
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status == 401:
            return HubError(f"{action} {repo_id}: the Hub refused the token (HTTP 401): log in again with "
                            "`hf auth login`, or pass a valid token")
        if status == 403:
            return HubError(f"{action} {repo_id}: the token may not write to {repo_id!r} (HTTP 403): use a token "
                            "with write access to that namespace")
        return HubError(f"{action} {repo_id}: the Hub answered HTTP {status}: {_first_line(error)}")
    if _is_network_error(error):
        return HubError(f"{action} {repo_id}: the Hugging Face Hub could not be reached ({type(error).__name__}: "
                        f"{_first_line(error)}); check the network, or set HF_HUB_OFFLINE=1 to use only the cache")
    return None


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str) -> Iterator[None]:
    """Re-raise the Hub client's failures inside the block as one-line :class:`~lightlabel.errors.HubError`
    (:func:`hub_failure`), the original chained as ``__cause__``; other exceptions pass unchanged.

    Raises:
        HubError: see :func:`hub_failure`.
    """
    try:
        yield
    except Exception as e:
        failure = hub_failure(action, repo_id, e)
        if failure is None:
            raise
        raise failure from e


def _looks_like_path(name: str) -> bool:
    return (name.endswith(".safetensors") or name.startswith(("/", "./", "../", "~", "\\")) or "\\" in name
            or name.count("/") != 1 or os.path.isabs(name))


def resolve_adapter(path_or_repo_id: str | os.PathLike, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                    token: str | bool | None = None, filename: str = ADAPTER_FILENAME) -> Path:
    """The local path of an adapter file given a ``.safetensors`` file, a folder, or a Hub repo id.

    An existing local path always wins. Then a name of the adapter registry (:func:`lightlabel.list_adapters`)
    resolves to its packaged file or its Hub repo at the entry's recorded revision, either checked against the
    registry's sha256 (another ``revision`` loads unchecked, with a warning). Any other string is a
    Hub repo id only if it has the form ``org/name``; anything else that looks like a path (ends in ``.safetensors``, starts with ``/``, ``./``,
    ``~``, or has several ``/``) is reported as a missing local path, never sent to the Hub.

    Raises:
        FileNotFoundError: a missing local path; a folder without ``adapter.safetensors``; a repo or file that is
            not in the cache while offline (the message says how to get it); a repo, revision or file the Hub
            does not have. For a name outside the registry the message also lists the registry's names.
        HubError: the Hub could not be reached, refused the token, or answered another HTTP error (one line, see
            :func:`hub_failure`).
        ValueError: neither an existing path nor a repo id.
        AdapterError: a registry adapter whose file does not match the registry's sha256.
    """
    name = os.fspath(path_or_repo_id)
    path = Path(name).expanduser()
    entry = adapter_entry(name) if not path.exists() else None
    if entry is not None:  # a registered adapter: the packaged file, or its Hub repo at its recorded revision
        if entry.packaged:
            return _checked_packaged(entry, filename)
        if revision is None or revision == entry.revision:
            file = _hub_file(entry.repo_id, filename, entry.revision, cache_dir, local_files_only, token)
            if filename == ADAPTER_FILENAME and entry.sha256 and file_digest(file) != entry.sha256:
                raise AdapterError(f"adapter {entry.name!r} downloaded from {entry.repo_id} (revision "
                                   f"{entry.revision or 'main'}) does not match its registry checksum: the repo "
                                   f"changed since the entry was recorded; pass `revision=` to load another "
                                   f"revision unchecked, or the repo id itself")
            return file
        warnings.warn(f"adapter {entry.name!r}: revision {revision!r} is not the registry's "
                      f"({entry.revision or 'main'}), so its registry checksum and provenance do not apply",
                      stacklevel=2)
        name = entry.repo_id
    elif path.exists():
        if path.is_dir() or filename != ADAPTER_FILENAME:
            file = (path if path.is_dir() else path.parent) / filename
            if not file.is_file():
                raise FileNotFoundError(f"folder {file.parent} has no {filename} (found: "
                                        f"{sorted(p.name for p in file.parent.iterdir())[:10]})")
            return file
        return path
    if _looks_like_path(name):
        raise FileNotFoundError(f"no adapter file or folder at {path} (local path, not a Hub repo id)"
                                f"{_published_hint()}")
    if not _REPO_ID.match(name):
        raise ValueError(f"{name!r} is neither an existing path nor a Hub repo id of the form 'org/name'"
                         f"{_published_hint()}")
    try:
        return _hub_file(name, filename, revision, cache_dir, local_files_only, token)
    except FileNotFoundError as e:  # a mistyped registry name ends here too: list the names that exist
        raise FileNotFoundError(f"{e}{_published_hint()}") from e


def _published_hint() -> str:
    """The registry's names, for an error about a name that is none of them (open_clip's errors list the valid
    choices)."""
    return f"; the published adapters (lightlabel.list_adapters()): {[e.name for e in list_adapters()]}"


def _hub_file(name: str, filename: str, revision: str | None, cache_dir: str | os.PathLike | None,
              local_files_only: bool, token: str | bool | None) -> Path:
    """``filename`` of Hub repo ``name`` at ``revision``, from the cache or downloaded (errors: see
    :func:`resolve_adapter`)."""
    offline = local_files_only or is_offline()
    try:
        return Path(hf_hub_download(name, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=offline, token=token, library_name="lightlabel",
                                    library_version=__version__))
    except LocalEntryNotFoundError as e:
        cache = cache_dir or constants.HF_HUB_CACHE
        why = "offline mode (HF_HUB_OFFLINE=1)" if is_offline() else (
            "local_files_only=True" if local_files_only else "the Hub could not be reached")
        raise FileNotFoundError(
            f"adapter {name!r} (revision {revision or 'main'}) is not in the Hugging Face cache {cache} and {why}. "
            f"Get it on a machine with network access with `hf download {name} {filename}` (or "
            f"Projector.from_pretrained({name!r})) and copy the cache folder, or pass the local .safetensors path"
        ) from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"Hub repo {name!r} does not exist or is private (pass `token=`)") from e
    except RevisionNotFoundError as e:
        raise FileNotFoundError(f"Hub repo {name!r} has no revision {revision!r}") from e
    except EntryNotFoundError as e:
        raise FileNotFoundError(f"Hub repo {name!r} has no {filename}: not a lightlabel adapter repo") from e
    except Exception as e:  # unreachable Hub, refused token, other HTTP errors: one line
        failure = hub_failure("download", name, e)
        if failure is None:
            raise
        raise failure from e


def _checked_packaged(entry: AdapterEntry, filename: str) -> Path:
    """A packaged registry adapter's file (or a companion beside it), its bytes checked against the registry."""

    file = entry.file()
    if filename != ADAPTER_FILENAME:
        companion = file.parent / filename
        if not companion.is_file():
            raise FileNotFoundError(f"packaged adapter {entry.name!r} has no {filename}")
        return companion
    if not file.is_file():
        raise FileNotFoundError(f"packaged adapter {entry.name!r} is missing from {file} (a broken install?)")
    if file_digest(file) != entry.sha256:
        raise AdapterError(f"packaged adapter {entry.name!r} at {file} does not match its registry checksum "
                           f"(sha256 {entry.sha256[:12]}...): a damaged install; reinstall lightlabel-torch")
    return file


def repo_name(info: AdapterInfo, dataset: str, org: str | None = None) -> str:
    """The naming convention ``<org>/lightlabel-<base>-<dataset>-r<image rank>``, e.g.
    ``lightlabel-rn50-quickgelu-imagenet1k-r8``."""
    base = re.sub(r"[^a-z0-9]+", "-", info.base_model.split(":")[-1].split("/")[-1].lower()).strip("-")
    base = base.removeprefix("lightlabel-")  # the packaged lightlabel-proxy-rn: no doubled prefix
    name = f"lightlabel-{base}-{re.sub(r'[^a-z0-9]+', '-', dataset.lower()).strip('-')}-r{info.config.image_rank}"
    return f"{org}/{name}" if org else name


def _base_model_id(info: AdapterInfo) -> str | None:
    import open_clip

    if info.base_model.startswith("hf-hub:"):
        return info.base_model.removeprefix("hf-hub:")
    cfg = open_clip.get_pretrained_cfg(info.base_model, info.base_pretrained or "") if info.base_pretrained else {}
    hub = (cfg or {}).get("hf_hub", "")
    return hub.strip("/") or None


def model_card(info: AdapterInfo, *, adapter_nbytes: int, num_parameters: int, ipc: int = 10, epochs: int = 300,
               license: str | None = None, dataset: str | None = None, repo_id: str | None = None) -> ModelCard:
    """A model card for an adapter: YAML front matter (library_name, tags, base_model, license) and a body with
    the base, classes, ranks, adapter bytes, the equivalent stored-soft-label bytes, the fit-time fidelity and
    accuracy (when recorded) and a usage snippet.

    Args:
        info: the adapter's header (:meth:`lightlabel.Projector.info`).
        adapter_nbytes: bytes of the adapter file. num_parameters: adapter parameters.
        ipc, epochs: the setting for the stored-soft-label comparison (fp16 labels).
        license: SPDX id of the adapter's license (default: omitted).
        dataset: name of the dataset it was fitted on, for the card.
        repo_id: the repo, for the usage snippet (default: a local folder).
    """
    num_classes = len(info.class_names)
    stored = soft_label_nbytes(num_classes=num_classes, ipc=ipc, epochs=epochs)
    teacher = teacher_nbytes("resnet18", num_classes)
    base_id = _base_model_id(info)
    data = ModelCardData(library_name="lightlabel", tags=list(TAGS), license=license,
                         base_model=base_id, datasets=[dataset] if dataset else None)
    c = info.config
    fit_table = _fit_table(dict(info.fit_info or {}))
    where = repo_id or "path/to/this/folder"
    names = ", ".join(info.class_names[:8]) + (", ..." if num_classes > 8 else "")
    size = info.image_size
    body = f"""
# lightlabel adapter{f' for {dataset}' if dataset else ''}

An image-to-label **projector** for online soft labels in dataset distillation (HeLlO). A frozen open_clip
image tower with this LoRA adapter and a text-initialised low-rank head labels every augmented training batch
on the fly. It replaces stored soft labels and the teacher network.

| | |
|---|---|
| base model (open_clip) | `{info.base_model}`, pretrained `{info.base_pretrained}`{f' (`{base_id}`)' if base_id else ''} |
| base fingerprint (sha256) | `{info.base_fingerprint[:16]}...` |
| classes | {num_classes} ({names}) |
| image LoRA | rank {c.image_rank}, alpha {c.image_alpha:g}, on {len(info.lora_weights)} weights ({', '.join(c.targets)}) |
| head | rank {c.head_rank}, alpha {c.head_alpha:g}, mode `{c.head_mode}` |
| adapter parameters | {num_parameters:,} |
| adapter size | {adapter_nbytes:,} bytes ({info.storage_dtype}) |
| stored soft labels it replaces | {stored:,} bytes (fp16, IPC {ipc}, {epochs} epochs) |
| teacher it replaces (ResNet-18) | {teacher:,} bytes (fp32 state dict) |

## Fit-time figures

{fit_table}

## Usage

```bash
pip install {DISTRIBUTION}
```

```python
import lightlabel as ll

projector = ll.Projector.from_pretrained("{where}", device="cuda").merge()
relabeler = ll.OnlineRelabeler(projector, input_spec=ll.InputSpec.imagenet(), mix="cutmix", alpha=1.0)
criterion = ll.SoftLabelLoss(ce_weight=0.025)
for images, targets in loader:      # images normalised with ImageNet statistics
    images, soft_logits, mixed_targets = relabeler(images.cuda(), targets.cuda())
    loss = criterion(student(images), soft_logits, mixed_targets)
```

The projector's own input is mean {tuple(round(v, 4) for v in info.mean)}, std {tuple(round(v, 4) for v in info.std)}
at {size[0]}x{size[1]} pixels; the relabeler converts from your loader's normalisation (`input_spec`). Written by
lightlabel {__version__}.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _fit_table(fit: dict[str, Any]) -> str:
    """The model card's table of fit-time figures (fidelity, student top-1, fit settings), or a note that none are
    recorded."""
    rows = []
    for key, label in (("final_agreement", "top-1 agreement with the teachers (held-out)"),
                       ("final_kl", "KL(teacher || projector), nats (held-out)"),
                       ("final_top1", "projector top-1 (held-out)"), ("final_teacher_top1", "teacher top-1 (held-out)"),
                       ("student_top1", "student top-1 with projector labels")):
        if key in fit:
            rows.append(f"| {label} | {fit[key]:.4f} |")
    rows += [f"| fit {key} | {fit[key]} |" for key in ("epochs", "num_teachers", "samples", "lr", "batch_size",
                                                        "ce_weight") if key in fit]
    return ("| figure | value |\n|---|---|\n" + "\n".join(rows)) if rows else "_No fit-time figures recorded._"


def write_model_card(card: ModelCard, directory: str | os.PathLike) -> Path:
    """Write ``README.md`` (the model card) into ``directory`` atomically."""
    path = Path(directory) / "README.md"
    atomic_write_text(path, str(card))
    return path


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool | None = None,
                token: str | bool | None = None, commit_message: str, revision: str | None = None) -> Any:
    """Create the repo if needed and upload ``folder`` (adapter, companions, model card) in one commit.

    Returns:
        huggingface_hub's ``CommitInfo``.

    Raises:
        RuntimeError: offline mode is on.
        HubError: the Hub could not be reached, refused the token or the write (:func:`hub_failure`).
        ValueError: ``repo_id`` is not of the form ``org/name``.
    """
    if is_offline():
        raise RuntimeError("cannot push to the Hub: HF_HUB_OFFLINE is set (huggingface_hub offline mode)")
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"`repo_id` must look like 'org/name', got {repo_id!r}")
    api = HfApi(token=token, library_name="lightlabel", library_version=__version__)
    with hub_errors("push", repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 commit_message=commit_message)
