"""The adapter file: exact round trips, storage dtypes, and a clear AdapterError for every kind of damage."""

from __future__ import annotations

import json
import struct

import pytest
import safetensors.torch
import torch
from conftest import CIFAR10_CLASSES, randomize_adapter

import lightlabel as ll
from lightlabel.io.adapter_format import FORMAT_VERSION, decode_adapter


@pytest.fixture
def fitted(make_projector):
    projector = make_projector(targets=("conv", "attnpool")).eval()
    randomize_adapter(projector)
    return projector


def _header(data: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n])


def test_fp32_round_trip_is_bit_exact(fitted, tmp_path):
    path = fitted.save_pretrained(tmp_path / "adapter")
    assert path.name == "adapter.safetensors"
    loaded = ll.Projector.from_pretrained(tmp_path / "adapter").eval()
    for key, t in fitted.adapter_state().items():
        assert torch.equal(loaded.adapter_state()[key], t), key
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), fitted(x))
    assert loaded.class_names == fitted.class_names and loaded.config == fitted.config
    # file holds the adapter only: nothing of the base
    stored = safetensors.torch.load_file(str(path))
    assert all(k.startswith(("image.", "head.")) for k in stored)
    assert sum(t.numel() for t in stored.values()) == fitted.num_adapter_parameters()
    assert path.stat().st_size == fitted.adapter_nbytes


@pytest.mark.parametrize("dtype,tol", [("fp16", 2e-3), ("int8", 5e-2)])
def test_reduced_storage_dtypes_round_trip_within_tolerance(fitted, tmp_path, dtype, tol):
    path = fitted.save_pretrained(tmp_path / f"a-{dtype}.safetensors", dtype=dtype)
    loaded = ll.Projector.from_pretrained(path).eval()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref, got = fitted(x), loaded(x)
    assert (got - ref).abs().max() <= tol * ref.abs().max()
    nbytes = {d: len(fitted.to_bytes(d)) for d in ("fp32", "fp16", "int8")}
    assert nbytes["int8"] < nbytes["fp16"] < nbytes["fp32"]
    assert read_dtype(path) == dtype


def read_dtype(path):
    info, _ = ll.read_adapter(path)
    return info.storage_dtype


def test_metadata_records_everything(fitted, tmp_path):
    path = fitted.save_pretrained(tmp_path / "a.safetensors")
    info, tensors = ll.read_adapter(path)
    assert info.base_model == "lightlabel-tiny-rn" and len(info.base_fingerprint) == 64
    assert info.class_names == tuple(CIFAR10_CLASSES)
    assert info.templates == ll.HELIO_TEMPLATES
    assert info.image_size == (32, 32) and len(info.mean) == len(info.std) == 3
    assert info.config.image_rank == 8 and info.config.head_rank == 4 and info.config.targets == ("attnpool", "conv")
    assert info.format_version == FORMAT_VERSION and info.lightlabel_version == ll.__version__
    _, header = _header(path.read_bytes())
    meta = header["__metadata__"]
    assert len(meta["sha256_tensors"]) == 64 and len(meta["sha256_metadata"]) == 64


def test_tampered_tensor_bytes_raise(fitted, tmp_path):
    path = fitted.save_pretrained(tmp_path / "a.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one flipped bit inside the last tensor
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ll.AdapterError, match=r"bad\.safetensors.*tensor data does not match its checksum"):
        ll.Projector.from_pretrained(bad)


@pytest.mark.parametrize("cut", [3, 100, -1, -200])
def test_truncated_file_raises(fitted, tmp_path, cut):
    data = fitted.save_pretrained(tmp_path / "a.safetensors").read_bytes()
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(ll.AdapterError, match=r"trunc\.safetensors"):
        ll.read_adapter(bad)


def test_not_a_safetensors_file_raises(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("this is not an adapter, just some text that is long enough")
    with pytest.raises(ll.AdapterError, match="not a valid safetensors"):
        ll.read_adapter(bad)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ll.AdapterError, match="no lightlabel metadata"):
        ll.read_adapter(plain)


def _rewrite(data: bytes, edit) -> bytes:
    """Re-serialise with edited metadata (checksums recomputed when `rehash`), as a careful forger would."""
    from lightlabel.io.adapter_format import _sha256_metadata

    tensors = safetensors.torch.load(data)
    _, header = _header(data)
    meta = dict(header["__metadata__"])
    rehash = edit(meta, tensors)
    if rehash:
        meta["sha256_metadata"] = _sha256_metadata(meta)
    return safetensors.torch.save(tensors, metadata=meta)


def test_edited_header_is_detected_by_checksum(fitted):
    data = fitted.to_bytes()

    def edit(meta, tensors):
        meta["class_names"] = json.dumps(list(reversed(CIFAR10_CLASSES)))
        return False

    with pytest.raises(ll.AdapterError, match="header metadata does not match its checksum"):
        decode_adapter(_rewrite(data, edit), "edited.safetensors")


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m, t: m.update(format_version=str(FORMAT_VERSION + 1)), "newer than this lightlabel"),
        (lambda m, t: m.pop("class_names"), "'class_names' is missing"),
        (lambda m, t: m.update(format="something-else"), "not a lightlabel adapter"),
        (lambda m, t: m.update(storage_dtype="fp8"), "storage_dtype"),
        (lambda m, t: m.update(templates="{not json"), "not valid JSON"),
        (lambda m, t: m.update(image_size='["a", 32]'), "image_size must be two positive ints"),
        (lambda m, t: m.update(image_size="[0, 32]"), "image_size must be two positive ints"),
        (lambda m, t: m.update(image_size="[true, 32]"), "image_size must be two positive ints"),
        (lambda m, t: m.update(image_std="[0.2, 0.0, 0.2]"), "image_mean/std"),
        (lambda m, t: m.update(image_mean='[0.5, "x", 0.5]'), "image_mean/std"),
        (lambda m, t: m.update(templates="[1, 2]"), "templates must be a list of str"),
        (lambda m, t: m.update(lora_weights='[null]'), "lora_weights must be a list of str"),
    ],
)
def test_future_version_and_bad_metadata_raise(fitted, edit, match):
    def apply(meta, tensors):
        edit(meta, tensors)
        return True

    with pytest.raises(ll.AdapterError, match=match):
        decode_adapter(_rewrite(fitted.to_bytes(), apply), "x.safetensors")


def test_wrong_tensor_shape_raises(fitted, tmp_path):
    from lightlabel.utils.hashing import tensors_digest

    def edit(meta, tensors):
        tensors["head.bias"] = torch.zeros(11)
        meta["sha256_tensors"] = tensors_digest(tensors)
        return True

    bad = tmp_path / "shape.safetensors"
    bad.write_bytes(_rewrite(fitted.to_bytes(), edit))
    with pytest.raises(ll.AdapterError, match=r"'head.bias' has shape \[11\], expected \[10\]"):
        ll.Projector.from_pretrained(bad)


def test_adapter_for_another_base_raises(fitted, tmp_path, other_rn):
    path = fitted.save_pretrained(tmp_path / "a.safetensors")
    with pytest.raises(ll.AdapterError, match="fingerprint"):
        ll.Projector.from_pretrained(path, pretrained=other_rn[1])


def test_class_count_and_order_mismatch_raise(fitted, tmp_path):
    path = fitted.save_pretrained(tmp_path / "a.safetensors")
    with pytest.raises(ll.AdapterError, match="adapter has 10 classes, given 9"):
        ll.Projector.from_pretrained(path, class_names=CIFAR10_CLASSES[:9])
    shuffled = CIFAR10_CLASSES[1:] + CIFAR10_CLASSES[:1]
    with pytest.raises(ll.AdapterError, match="different order.*remap"):
        ll.Projector.from_pretrained(path, class_names=shuffled)
    with pytest.raises(ll.AdapterError, match="different order"):
        fitted.check_class_names(shuffled)


def test_precomputed_embeddings_must_be_supplied_and_match(tiny_rn, make_projector, tmp_path):
    emb = torch.randn(10, 32)
    projector = make_projector(text_embeddings=emb)
    path = projector.save_pretrained(tmp_path / "e.safetensors")
    with pytest.raises(ll.AdapterError, match="precomputed text embeddings"):
        ll.Projector.from_pretrained(path)
    with pytest.raises(ll.AdapterError, match="text_check"):
        ll.Projector.from_pretrained(path, text_embeddings=torch.randn(10, 32))
    with pytest.raises(ll.AdapterError, match="text_check"):
        ll.Projector.from_pretrained(path, text_embeddings=emb.flip(0))
    loaded = ll.Projector.from_pretrained(path, text_embeddings=emb * 3.0)  # norm does not matter
    torch.testing.assert_close(loaded.head.text_weight, projector.head.text_weight)


def test_missing_file_and_bad_dtype(fitted, tmp_path):
    with pytest.raises(FileNotFoundError):
        ll.read_adapter(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="dtype"):
        fitted.save_pretrained(tmp_path / "x.safetensors", dtype="bf16")
    assert not (tmp_path / "x.safetensors").exists()


def test_failed_write_leaves_previous_file_intact(fitted, tmp_path, monkeypatch):
    path = fitted.save_pretrained(tmp_path / "a.safetensors")
    before = path.read_bytes()
    randomize_adapter(fitted, seed=5)

    def boom(self, data):
        self.write_text("half")  # a partial write ...
        raise OSError("disk full")  # ... then the crash

    monkeypatch.setattr(type(path), "write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        fitted.save_pretrained(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"], "temporary file left behind"
    ll.read_adapter(path)  # still loadable


def test_storage_report_matches_paper_arithmetic(fitted):
    r = ll.storage_report(num_classes=1000, ipc=10, epochs=300)
    assert r.soft_label_bytes == 300 * 10_000 * 1000 * 2 == 6_000_000_000
    # torchvision resnet18, 1000 classes, as an fp32 state dict: 11,689,512 parameters, BatchNorm running means and
    # variances of 4,800 channels, and 20 int64 step counters
    assert r.teacher_bytes == 4 * 11_689_512 + 4 * 2 * 4_800 + 8 * 20 == 46_796_608
    own = ll.storage_report(num_classes=fitted.num_classes, ipc=10, epochs=300,
                           adapter_nbytes=fitted.adapter_nbytes, adapter_note="this adapter, fp32")
    assert own.adapter_bytes == fitted.adapter_nbytes and own.num_classes == 10
    assert "stored soft labels" in str(own)
    with pytest.raises(ValueError, match="ipc"):
        ll.storage_report(num_classes=10, ipc=0, epochs=1)
    with pytest.raises(ValueError, match="torchvision"):
        ll.storage_report(num_classes=10, ipc=1, epochs=1, teacher="resnet-eighteen")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(label_bytes=3), ValueError, "`label_bytes` must be one of \\[1, 2, 4, 8\\]"),
    (dict(label_bytes=True), ValueError, "`label_bytes`"),
    (dict(adapter_nbytes=-5), ValueError, "`adapter_nbytes` must be an int >= 1, got -5"),
    (dict(teacher=-3), ValueError, "`teacher` must be an int >= 1"),
    (dict(teacher=2.5), TypeError, "`teacher` must be a torchvision model name, an nn.Module or a parameter count"),
    (dict(teacher="fcn_resnet50"), ValueError, "not a torchvision classification model"),
    (dict(compressed={"top-100": 100}), TypeError, "`compressed\\['top-100'\\]` must be a LabelCompression"),
])
def test_storage_report_refuses_input_that_would_print_wrong_bytes(kwargs, error, match):
    with pytest.raises(error, match=match):
        ll.storage_report(num_classes=10, ipc=1, epochs=1, **kwargs)


def test_teacher_nbytes_counts_a_module_a_name_and_a_parameter_count_alike():
    from lightlabel.storage import module_nbytes, teacher_nbytes
    head = torch.nn.Linear(7, 3)  # 7 * 3 + 3 parameters, no buffers
    assert teacher_nbytes(head, 3) == module_nbytes(head) == 4 * 24 == teacher_nbytes(24, 3)
    assert teacher_nbytes("resnet18", 10) == 4 * (11_689_512 - 513 * 990) + 4 * 2 * 4_800 + 8 * 20
    with pytest.raises(ValueError, match="`num_classes` must be an int >= 1"):
        teacher_nbytes("resnet18", 0)


def test_folder_adapter_carries_its_precomputed_text_embeddings(make_projector, tmp_path):
    emb = torch.randn(10, 32)
    projector = make_projector(text_embeddings=emb)
    randomize_adapter(projector)
    projector.save_pretrained(tmp_path / "folder")
    assert (tmp_path / "folder" / "text_embeddings.safetensors").is_file()
    loaded = ll.Projector.from_pretrained(tmp_path / "folder")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), projector.eval()(x))
    loaded_file = ll.Projector.from_pretrained(tmp_path / "folder" / "adapter.safetensors")
    assert loaded_file.templates is None


def test_int8_quantiser_one_scale_per_slice():
    from lightlabel.utils.quantize import quantize_int8

    t = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [3.0, 0.0, -3.0]])
    q, scale = quantize_int8(t, 1)
    assert q.dtype == torch.int8 and scale.shape == (3,) and scale.dtype == torch.float32
    assert q[0].tolist() == [64, -127, 32] and q[1].tolist() == [0, 0, 0] and scale[1] == 1.0
    torch.testing.assert_close(q.float() * scale[:, None], t, atol=float(scale.max()) / 2, rtol=0)
    q0, s0 = quantize_int8(t, 0)  # one scale per column
    assert s0.shape == (3,) and torch.equal(q0.abs().amax(0), torch.tensor([127, 127, 127], dtype=torch.int8))
    with pytest.raises(ValueError, match="`t`"):
        quantize_int8(torch.zeros(2, 2, 2), 1)
    with pytest.raises(ValueError, match="`dim`"):
        quantize_int8(t, 2)


@pytest.mark.parametrize("merged", [False, True])
def test_non_finite_adapter_tensors_are_refused_and_leave_the_projector_as_it_was(fitted, merged):
    if merged:
        fitted.merge()
    before = {k: v.clone() for k, v in fitted.state_dict().items()}
    bad = {k: v.clone() for k, v in fitted.adapter_state().items()}
    key = next(k for k in bad if k.endswith("lora_B"))
    bad[key][0, 0] = float("nan")
    with pytest.raises(ll.AdapterError, match=f"{key}.*NaN or Inf"):
        fitted.load_adapter_state(bad, "x.safetensors")
    assert fitted.merged == merged
    assert all(torch.equal(v, fitted.state_dict()[k]) for k, v in before.items())
