"""Hub: loading from a real cache layout by repo id, offline errors, model cards, the upload path."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import randomize_adapter
from huggingface_hub import HfApi, ModelCard, constants

import lightlabel as ll
import lightlabel.io.hub as hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_cache(cache: Path, repo_id: str, adapter_file: Path, commit: str = COMMIT, ref: str = "main") -> Path:
    """The layout hf_hub_download reads: models--org--name/{blobs/<sha256>, snapshots/<commit>/<file>, refs/<ref>}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    data = adapter_file.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snapshot = repo / "snapshots" / commit / "adapter.safetensors"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def fitted(make_projector):
    projector = make_projector().eval()
    randomize_adapter(projector)
    projector.fit_info = {"final_agreement": 0.875, "final_kl": 0.1234, "final_top1": 0.8, "epochs": 20,
                          "num_teachers": 9}
    return projector


def test_offline_mode_is_read_like_huggingface_hub():
    assert constants.HF_HUB_OFFLINE and hub.is_offline(), "the tests must run with HF_HUB_OFFLINE=1"


@pytest.mark.parametrize("use_default_cache", [False, True])
def test_load_by_repo_id_from_a_populated_cache(fitted, tmp_path, use_default_cache):
    file = fitted.save_pretrained(tmp_path / "export")
    cache = Path(constants.HF_HUB_CACHE) if use_default_cache else tmp_path / "hub-cache"
    populate_cache(cache, "lightlabel-test/tiny-cifar10", file)
    kw = {} if use_default_cache else {"cache_dir": cache}
    loaded = ll.Projector.from_pretrained("lightlabel-test/tiny-cifar10", **kw)
    assert all(torch.equal(loaded.adapter_state()[k], v) for k, v in fitted.adapter_state().items())
    pinned = ll.Projector.from_pretrained("lightlabel-test/tiny-cifar10", revision=COMMIT, **kw)
    assert pinned.class_names == fitted.class_names
    if use_default_cache:
        shutil.rmtree(cache / "models--lightlabel-test--tiny-cifar10")


@pytest.mark.parametrize("kwargs", [{}, {"local_files_only": True}])
def test_missing_from_cache_offline_fails_fast_with_instructions(tmp_path, kwargs):
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"not in the Hugging Face cache.*hf download org/missing"):
        ll.Projector.from_pretrained("org/missing", cache_dir=tmp_path, **kwargs)
    assert time.monotonic() - start < 5, "an offline lookup must not wait for the network"
    assert not any(tmp_path.rglob("*.incomplete")), "no partial files in the cache"


def test_a_mistyped_registry_name_lists_the_published_adapters(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"published adapters .*'lightlabel/cifar10-proxy-rn'"):
        ll.Projector.from_pretrained("lightlabel/cifar100-proxy-rn", cache_dir=tmp_path, local_files_only=True)
    with pytest.raises(ValueError, match=r"nor a Hub repo id.*'lightlabel/cifar10-proxy-rn'"):
        hub.resolve_adapter("org/has space")
    with pytest.raises(FileNotFoundError, match=r"local path.*'lightlabel/cifar10-proxy-rn'"):
        ll.Projector.from_pretrained("cifar10-proxy-rn")


@pytest.mark.parametrize("name", ["./nope.safetensors", "nope.safetensors", "/abs/nope", "a/b/c", "~/nope"])
def test_missing_local_paths_are_never_hub_requests(name, monkeypatch):
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: pytest.fail("a local path went to the Hub"))
    with pytest.raises(FileNotFoundError, match="local path, not a Hub repo id"):
        ll.Projector.from_pretrained(name)


def test_local_folder_and_file_win_over_hub_ids(fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fitted.save_pretrained(Path("org") / "repo")  # a local folder that looks like a repo id
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, **k: pytest.fail("went to the Hub"))
    assert ll.Projector.from_pretrained("org/repo").class_names == fitted.class_names
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no adapter.safetensors"):
        ll.Projector.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="neither an existing path nor a Hub repo id"):
        hub.resolve_adapter("org/has space")


def test_model_card_contents(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "card", ipc=10, epochs=300, license="mit", dataset="cifar10",
                           repo_id="org/lightlabel-tiny-cifar10-r8")
    card = ModelCard.load(tmp_path / "card" / "README.md")
    assert card.data.library_name == "lightlabel"
    assert "dataset-distillation" in card.data.tags and "lora" in card.data.tags
    assert card.data.license == "mit" and card.data.datasets == ["cifar10"]
    text = card.text
    report = ll.storage_report(num_classes=fitted.num_classes, ipc=10, epochs=300,
                           adapter_nbytes=fitted.adapter_nbytes, adapter_note="this adapter, fp32")
    for expected in ("lightlabel-tiny-rn", "rank 8", "rank 4", f"{fitted.adapter_nbytes:,} bytes",
                     f"{report.soft_label_bytes:,} bytes (fp16, IPC 10, 300 epochs)", "0.8750", "0.1234",
                     'from_pretrained("org/lightlabel-tiny-cifar10-r8", device="cuda")', "10 (airplane, automobile"):
        assert expected in text, expected
    plain = ll.Projector(base=fitted.base_model, pretrained=fitted.base_pretrained,
                         class_names=list(fitted.class_names), config=ll.AdapterConfig(head_rank=4))
    bare = hub.model_card(plain.info(), adapter_nbytes=plain.adapter_nbytes, num_parameters=plain.num_adapter_parameters())
    assert "No fit-time figures recorded" in bare.text


def test_push_to_hub_sends_exactly_the_adapter_and_card(fitted, tmp_path, monkeypatch):
    sent = {}

    def create_repo(self, repo_id, **kw):
        sent["create"] = (repo_id, kw)

    def upload_folder(self, *, repo_id, folder_path, **kw):
        sent["upload"] = (repo_id, kw, {p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
        sent["headers"] = (self.library_name, self.library_version)
        return "commit-info"

    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr("lightlabel.core.projector.is_portable", lambda name, pretrained: True)  # a tiny local base
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = fitted.push_to_hub("org/lightlabel-tiny-cifar10-r8", private=True, commit_message="first adapter",
                                dataset="cifar10")
    assert result == "commit-info"
    assert sent["create"] == ("org/lightlabel-tiny-cifar10-r8", {"private": True, "exist_ok": True, "repo_type": "model"})
    repo_id, kw, files = sent["upload"]
    assert repo_id == "org/lightlabel-tiny-cifar10-r8" and kw["commit_message"] == "first adapter"
    assert sorted(files) == ["README.md", "adapter.safetensors"]
    info, tensors = ll.io.adapter_format.decode_adapter(files["adapter.safetensors"])
    assert info == fitted.info() and all(torch.equal(tensors[k], v) for k, v in fitted.adapter_state().items())
    assert "library_name: lightlabel" in files["README.md"].decode()
    assert sent["headers"] == ("lightlabel", ll.__version__)


def test_push_offline_bad_repo_ids_and_local_bases(fitted, monkeypatch):
    with pytest.raises(ValueError, match="recorded as the local file"):
        fitted.push_to_hub("org/repo")  # the tiny base is a local checkpoint: nobody else could load the adapter
    monkeypatch.setattr("lightlabel.core.projector.is_portable", lambda name, pretrained: True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        fitted.push_to_hub("org/repo")
    monkeypatch.setattr(hub, "is_offline", lambda: False)
    with pytest.raises(ValueError, match="org/name"):
        fitted.push_to_hub("no-slash")


def test_packaged_proxy_base_is_recorded_portably_and_old_local_paths_resolve(tmp_path):
    from lightlabel.core.proxy import PROXY_BASE, PROXY_CHECKPOINT, proxy_head

    names, text = proxy_head(["n01440764", "n01443537"])
    projector = ll.Projector(base=PROXY_BASE, pretrained=str(PROXY_CHECKPOINT), class_names=names,
                             text_embeddings=text, config=ll.AdapterConfig(head_rank=2))
    assert projector.base_pretrained == "lightlabel:packaged"
    folder = tmp_path / "a"
    projector.save_pretrained(folder)
    info = ll.read_adapter(folder)[0]
    assert info.base_pretrained == "lightlabel:packaged" and str(PROXY_CHECKPOINT) not in (folder / "README.md").read_text()
    assert ll.Projector.from_pretrained(folder).base_fingerprint == projector.base_fingerprint
    # a header written with a machine's local path (lightlabel 0.1) resolves to the packaged weights by fingerprint
    from lightlabel.io.adapter_format import decode_adapter, encode_adapter

    old_info, tensors = decode_adapter((folder / "adapter.safetensors").read_bytes())
    moved = dataclasses.replace(old_info, base_pretrained="/somewhere/else/proxy-base.safetensors")
    (folder / "adapter.safetensors").write_bytes(encode_adapter(tensors, moved))
    assert ll.Projector.from_pretrained(folder).base_pretrained == "lightlabel:packaged"
    other = dataclasses.replace(moved, base_fingerprint="0" * 64)
    (folder / "adapter.safetensors").write_bytes(encode_adapter(tensors, other))
    with pytest.raises(ll.AdapterError, match="does not exist here; pass its weights"):
        ll.Projector.from_pretrained(folder)


def test_repo_naming_convention(fitted):
    assert hub.repo_name(fitted.info(), "CIFAR-10", org="me") == "me/lightlabel-tiny-rn-cifar-10-r8"


# ---------------------------------------------------------------------------------------------- network faults
try:  # huggingface_hub's HTTP client: httpx2 from huggingface_hub 1.x on, httpx before
    import httpx2 as _http
except ImportError:  # pragma: no cover
    import httpx as _http

from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError  # noqa: E402


def _response(status: int):
    return _http.Response(status, request=_http.Request("POST", "https://huggingface.co/api/repos/create"))


#: a failure of the Hub client -> the words of the one-line message
FAULTS = {
    "unreachable": (lambda: _http.ConnectError("[Errno -3] Temporary failure in name resolution"),
                    "could not be reached"),
    "refused token": (lambda: HfHubHTTPError("401 Client Error: Unauthorized", response=_response(401)),
                      "refused the token (HTTP 401)"),
    "no write access": (lambda: HfHubHTTPError("403 Client Error: Forbidden", response=_response(403)),
                        "may not write"),
    "missing repo": (lambda: RepositoryNotFoundError("404 Client Error", response=_response(404)), "has no repo"),
    "server error": (lambda: HfHubHTTPError("502 Bad Gateway", response=_response(502)), "HTTP 502"),
}


@pytest.fixture
def packaged_adapter(tmp_path):
    """An adapter on the packaged base: portable, so push gets as far as the network."""
    from conftest import CIFAR10_CLASSES

    return ll.Projector.packaged(CIFAR10_CLASSES, config=ll.AdapterConfig(head_rank=2)).save_pretrained(tmp_path / "a")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_push_network_faults_are_one_line(fault, packaged_adapter, monkeypatch, capsys):
    from lightlabel.cli import main

    make, words = FAULTS[fault]

    def fail(self, *a, **kw):
        raise make()

    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(HfApi, "create_repo", fail)
    with pytest.raises(ll.errors.HubError, match=re.escape(words)) as e:
        ll.Projector.from_pretrained(packaged_adapter).push_to_hub("org/repo")
    assert isinstance(e.value.__cause__, Exception) and "org/repo" in str(e.value)
    assert main(["push", str(packaged_adapter), "org/repo", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and words in err and err.startswith("lightlabel push: error")


@pytest.mark.parametrize("fault", ["unreachable", "refused token", "server error"])
def test_download_network_faults_are_one_line(fault, monkeypatch, capsys):
    from lightlabel.cli import main

    make, words = FAULTS[fault]

    def fail(*a, **kw):
        raise make()

    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "hf_hub_download", fail)
    with pytest.raises(ll.errors.HubError, match=re.escape(words)):
        ll.Projector.from_pretrained("org/repo")
    assert main(["info", "org/repo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and words in err


def test_download_of_a_missing_repo_is_one_line(monkeypatch, capsys):
    from lightlabel.cli import main

    def fail(*a, **kw):
        raise FAULTS["missing repo"][0]()

    monkeypatch.setattr(hub, "is_offline", lambda: False)
    monkeypatch.setattr(hub, "hf_hub_download", fail)
    with pytest.raises(FileNotFoundError, match="Hub repo 'org/repo' does not exist or is private"):
        ll.Projector.from_pretrained("org/repo")
    assert main(["info", "org/repo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "does not exist or is private" in err


def test_hub_failure_leaves_other_errors_alone():
    assert hub.hub_failure("push", "org/repo", KeyError("x")) is None
    with pytest.raises(KeyError), hub.hub_errors("push", "org/repo"):
        raise KeyError("a bug, not a network fault")


def test_the_packaged_adapter_loads_offline_and_its_registry_entry_matches_the_file():
    from lightlabel.io.registry import adapter_entry

    entries = ll.list_adapters()
    assert entries and entries[0].name == "lightlabel/cifar10-proxy-rn" and entries[0].packaged
    entry = adapter_entry("lightlabel/cifar10-proxy-rn")
    file = entry.file()
    assert file.stat().st_size == entry.nbytes and hashlib.sha256(file.read_bytes()).hexdigest() == entry.sha256
    info, _ = ll.read_adapter(file)
    assert (info.base_model, info.base_pretrained, list(info.class_names)) == (entry.base, entry.pretrained,
                                                                               list(entry.classes))
    assert info.fit_info["final_agreement"] == pytest.approx(entry.fidelity["agreement"], abs=1e-4)
    assert info.fit_info["student_top1"] == entry.student["top1"] and entry.command == "python tools/packaged_adapter.py"
    projector = ll.Projector.from_pretrained("lightlabel/cifar10-proxy-rn")  # HF_HUB_OFFLINE=1 in the tests
    assert projector.num_classes == 10 and projector.base_pretrained == "lightlabel:packaged"


def test_a_damaged_packaged_adapter_is_refused(tmp_path, monkeypatch):
    import lightlabel.io.registry as registry

    entry = registry.adapter_entry("lightlabel/cifar10-proxy-rn")
    damaged = tmp_path / "cifar10-proxy-rn"
    damaged.mkdir()
    data = bytearray(entry.file().read_bytes())
    data[-5] ^= 0xFF
    (damaged / "adapter.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(registry, "ADAPTERS", tmp_path)
    with pytest.raises(ll.AdapterError, match="registry checksum"):
        ll.Projector.from_pretrained("lightlabel/cifar10-proxy-rn")


def test_a_base_whose_weights_cannot_be_fetched_says_where_to_put_them(monkeypatch, tmp_path):
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai': check your connection.")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(RuntimeError, match=r"could not load base 'RN50-quickgelu' with pretrained='openai': Failed to "
                       r"download weights for tag 'openai': check your connection\. open_clip fetches these weights "
                       rf"from the Hugging Face Hub into {re.escape(str(tmp_path))}: run .* or pass `pretrained=` a "
                       r"local checkpoint file"):
        ll.Projector(base="RN50-quickgelu", pretrained="openai", class_names=["a", "b"], cache_dir=str(tmp_path))


@pytest.mark.parametrize("bad, error", [([], ValueError), ("airplane", TypeError), (["cat", "cat"], ValueError),
                                        (["not-a-class"], ValueError)])
def test_packaged_refuses_bad_class_names_naming_the_argument(bad, error):
    with pytest.raises(error, match="class_names|CLIP base"):
        ll.Projector.packaged(bad)


def test_a_hub_registry_entry_resolves_at_its_revision_and_is_checked(tmp_path, monkeypatch):
    """A registry entry's provenance is of one file: the download is pinned to the entry's revision and checked
    against its sha256; another revision loads unchecked, with a warning."""
    import dataclasses

    import lightlabel.io.registry as registry
    from lightlabel.utils.hashing import file_digest

    packaged = registry.adapter_entry("lightlabel/cifar10-proxy-rn")
    good = tmp_path / "good.safetensors"
    good.write_bytes(packaged.file().read_bytes())
    changed = tmp_path / "changed.safetensors"
    data = bytearray(good.read_bytes())
    data[-5] ^= 0xFF
    changed.write_bytes(bytes(data))
    entry = dataclasses.replace(packaged, name="org/pinned", path=None, repo_id="org/pinned", revision="abc123",
                                sha256=file_digest(good))
    monkeypatch.setattr(registry, "_entries", lambda: {"org/pinned": entry})
    served, calls = {"abc123": good, "main": changed, None: changed}, []

    def download(repo_id, filename, *, revision=None, **kwargs):
        calls.append((repo_id, filename, revision))
        return str(served[revision])

    monkeypatch.setattr(hub, "hf_hub_download", download)
    assert hub.resolve_adapter("org/pinned") == good and calls[-1] == ("org/pinned", "adapter.safetensors", "abc123")
    served["abc123"] = changed  # the repo was rewritten under the recorded revision's name: refused
    with pytest.raises(ll.AdapterError, match=r"org/pinned.*revision abc123\) does not match its registry checksum"):
        hub.resolve_adapter("org/pinned")
    with pytest.warns(UserWarning, match="revision 'main' is not the registry's"):
        assert hub.resolve_adapter("org/pinned", revision="main") == changed
