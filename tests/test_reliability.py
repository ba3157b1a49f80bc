"""Reliability: a fuzzed adapter loader, bad image files, crashes inside every writer."""

from __future__ import annotations

import io
import os

import pytest
import torch
from conftest import randomize_adapter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import lightlabel as ll
from lightlabel.data import ImageFolderDataset, load_image_folder
from lightlabel.io.adapter_format import decode_adapter


@pytest.fixture(scope="module")
def adapter_bytes(tiny_rn):
    projector = ll.Projector(base=tiny_rn[0], pretrained=tiny_rn[1], class_names=["a", "b", "c"],
                             config=ll.AdapterConfig(head_rank=2, targets=("attnpool",)))
    randomize_adapter(projector)
    data = projector.to_bytes()
    return data, decode_adapter(data)


edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits, truncate=st.one_of(st.none(), st.floats(0, 1, exclude_max=True)))
def test_fuzzed_adapter_bytes_load_identically_or_raise_adapter_error(adapter_bytes, edits, truncate):
    original, (info, tensors) = adapter_bytes
    data = bytearray(original)
    for where, value in edits:
        data[int(where * len(data))] = value
    if truncate is not None:
        data = data[: int(truncate * len(data))]
    try:
        got_info, got = decode_adapter(bytes(data), "fuzzed.safetensors")
    except ll.AdapterError as e:
        assert "fuzzed.safetensors" in str(e)
        return
    assert got_info == info and got.keys() == tensors.keys()
    assert all(torch.equal(got[k], tensors[k]) for k in tensors)


def _write(path, mode, size=(12, 10), fmt=None):
    Image.new(mode, size, color=100 if mode in ("L", "P") else (10, 200, 30, 128)[: len(mode)]).save(path, format=fmt)


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "messy"
    for c in ("cat", "dog", "empty"):
        (root / c).mkdir(parents=True)
    _write(root / "cat" / "rgb.jpg", "RGB")
    _write(root / "cat" / "gray.png", "L")
    _write(root / "cat" / "rgba.png", "RGBA")
    _write(root / "dog" / "palette.gif", "P")
    _write(root / "dog" / "cmyk.jpg", "CMYK")
    (root / "dog" / "corrupt.jpg").write_bytes(b"not an image at all")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    (root / "dog" / "truncated.jpg").write_bytes(buf.getvalue()[:40])
    return root


def test_grayscale_rgba_palette_cmyk_become_rgb_and_bad_files_are_skipped(messy_folder, caplog):
    ds = load_image_folder(messy_folder, size=8, allow_empty=True, progress=False)
    assert ds.classes == ["cat", "dog", "empty"]
    assert ds.images.shape == (5, 3, 8, 8) and ds.images.dtype == torch.uint8
    assert sorted(ds.skipped) == ["dog/corrupt.jpg", "dog/truncated.jpg"]
    assert "skipped 2 unreadable image files" in caplog.text
    lazy = ImageFolderDataset(messy_folder, allow_empty=True)
    images = [lazy[i][0] for i in range(len(lazy))]
    assert all(im.shape[0] == 3 and im.dtype == torch.uint8 for im in images)
    assert lazy.skipped == 2


def test_unreadable_files_raise_with_the_switch(messy_folder):
    with pytest.raises(ValueError, match="cannot decode image .*corrupt.jpg"):
        load_image_folder(messy_folder, size=8, allow_empty=True, on_error="raise", progress=False)
    lazy = ImageFolderDataset(messy_folder, allow_empty=True, on_error="raise")
    with pytest.raises(ValueError, match="cannot decode"):
        [lazy[i] for i in range(len(lazy))]


def test_a_bad_on_error_is_refused_for_a_dataset_as_for_a_path(messy_folder):
    from lightlabel.data import TensorImageDataset, as_dataset

    data = TensorImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.arange(2), ["a", "b"])
    assert as_dataset(data, on_error="raise") is data
    for source in (data, messy_folder):
        with pytest.raises(ValueError, match="`on_error` must be 'skip' or 'raise', got 'ignore'"):
            as_dataset(source, on_error="ignore")


def test_a_split_folder_passed_as_the_image_folder_names_the_one_to_pass(tmp_path):
    from PIL import Image

    from lightlabel.data import ImageFolderDataset, load_image_folder

    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / split / "cat" / "0.png")
    hint = rf"\['test', 'train'\] hold class folders themselves: pass one of them as the image folder, e\.g\. " \
           rf"{tmp_path / 'train'}"
    with pytest.raises(ValueError, match=hint):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match=hint):
        load_image_folder(tmp_path, progress=False)
    assert len(ImageFolderDataset(tmp_path / "train")) == 1


def test_empty_class_folders_are_an_error_by_default(messy_folder):
    with pytest.raises(ValueError, match=r"class folders without images: \['empty'\]"):
        load_image_folder(messy_folder, size=8, progress=False)
    with pytest.raises(ValueError, match="without images"):
        ImageFolderDataset(messy_folder)
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(messy_folder / "missing")
    _write(messy_folder / "cat" / "big.png", "RGB", size=(20, 20))
    with pytest.raises(ValueError, match="different sizes"):
        load_image_folder(messy_folder, allow_empty=True, progress=False)


def _crash_torch_save(monkeypatch, module):
    def boom(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("crash inside the writer")

    monkeypatch.setattr(module.torch, "save", boom)


def test_crash_inside_checkpoint_writers_keeps_previous_versions(tmp_path, monkeypatch, make_projector):
    import lightlabel.models as models
    import lightlabel.recipes.loop as loop

    teacher = models.build_model("cifar_resnet20", 10)
    spec = ll.InputSpec.imagenet(32)
    path = models.save_teacher(teacher, tmp_path / "t.pt", arch="cifar_resnet20", classes=list("abcdefghij"),
                               low_res=False, input_spec=spec)
    loop.save_state(tmp_path / "state.pt", {"epoch": 1})
    _crash_torch_save(monkeypatch, models)
    with pytest.raises(OSError, match="crash inside the writer"):
        models.save_teacher(teacher, path, arch="cifar_resnet20", classes=list("abcdefghij"), low_res=False,
                            input_spec=spec)
    _crash_torch_save(monkeypatch, loop)
    with pytest.raises(OSError):
        loop.save_state(tmp_path / "state.pt", {"epoch": 2})
    monkeypatch.undo()
    assert ll.load_teacher(path).classes == list("abcdefghij")
    assert torch.load(tmp_path / "state.pt", weights_only=False) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt", "t.pt"], "temporary files left behind"

    projector = make_projector()
    card_dir = tmp_path / "card"
    projector.save_pretrained(card_dir)
    before = (card_dir / "README.md").read_text()
    import lightlabel.core.projector as projector_module

    monkeypatch.setattr(projector_module, "model_card", lambda *a, **k: (_ for _ in ()).throw(OSError("card crash")))
    with pytest.raises(OSError):
        projector.save_pretrained(card_dir)
    assert (card_dir / "README.md").read_text() == before


def test_relabeler_projector_and_distill_are_deterministic(make_projector, cifar_batch, cifar_train, resnet20_path):
    images, labels = cifar_batch
    projector = make_projector()
    randomize_adapter(projector)
    spec = ll.InputSpec.imagenet()
    outs = [ll.OnlineRelabeler(projector, seed=3, input_spec=spec)(spec.normalize(images), labels) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    other = ll.OnlineRelabeler(projector, seed=4, input_spec=spec)(spec.normalize(images), labels)
    assert not torch.equal(outs[0][0], other[0]), "another seed must give other views"
    teacher = ll.load_teacher(resnet20_path)  # it records its input (ImageNet statistics at 32 px)
    kw = dict(ipc=1, patches_per_image=4, candidates_per_class=4, crops_per_image=2, image_size=32, progress=False)
    runs = [ll.distill_images(str(cifar_train), teacher, seed=5, **kw) for _ in range(2)]
    assert torch.equal(runs[0].images, runs[1].images) and runs[0].sources == runs[1].sources
    assert not torch.equal(ll.distill_images(str(cifar_train), teacher, seed=6, **kw).images, runs[0].images)


def _image_tar(path, classes, n=2, split="train"):
    import tarfile
    with tarfile.open(path, "w:gz") as tar:
        for cls in classes:
            for i in range(n):
                buf = io.BytesIO()
                Image.new("RGB", (4, 4), (i * 40, 0, 0)).save(buf, format="PNG")
                info = tarfile.TarInfo(f"data/{split}/{cls}/{i}.png")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))


def test_extraction_is_swapped_in_whole_and_a_failed_one_leaves_the_old_folder(tmp_path):
    from lightlabel.data import extract_image_folder
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    _image_tar(a, ["cat", "dog"])
    _image_tar(b, ["ant"], n=3)
    dest = tmp_path / "out"
    extract_image_folder(a, dest, split="train")
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["cat", "dog"]
    with pytest.raises(ValueError, match="archive"):
        extract_image_folder(b, dest, split="val")  # nothing matches: the old extraction must survive
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["cat", "dog"]
    extract_image_folder(b, dest, split="train")  # another archive replaces the folder as a whole
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["ant"]
    assert len(list((dest / "ant").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no work folders left behind


def test_concurrent_extractions_of_one_archive_both_succeed(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from lightlabel.data import extract_image_folder
    archive = tmp_path / "a.tar.gz"
    _image_tar(archive, [f"c{i}" for i in range(5)], n=20)
    dest = tmp_path / "out"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: extract_image_folder(archive, dest, split="train"), range(4)))
    assert results == [dest] * 4
    assert sum(1 for _ in dest.rglob("*.png")) == 100


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    from lightlabel.utils.files import atomic_write_text
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    target = tmp_path / "state.pt"
    orphan = tmp_path / f".state.pt.{dead_pid}.abc123.tmp"  # what a SIGKILLed writer leaves
    live = tmp_path / f".state.pt.{os.getppid()}.def456.tmp"  # a running writer's file (our parent is alive)
    other = tmp_path / f".other.pt.{dead_pid}.abc123.tmp"  # another file's temporaries are not ours to remove
    for f in (orphan, live, other):
        f.write_bytes(b"partial")
    atomic_write_text(target, "done")
    assert target.read_text() == "done"
    assert not orphan.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])
