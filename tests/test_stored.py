"""Stored soft labels: full, top-k, int8 and pruned forms (LPLD / LPQLD baselines), exact byte formulas, damaged
files, deterministic replay; and one definition of every byte count across README, model card, demo and CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import safetensors.torch
import torch
from test_protocol import TOY, _Recorder, _Tiny, _toy_set

import lightlabel as ll
from lightlabel.errors import StoredLabelsError
from lightlabel.labeling.stored import LABEL_KEYS, VIEW_PLAN_VERSION, compress_logits, decompress_logits
from lightlabel.storage import stored_label_nbytes, teacher_nbytes

PROJECT = Path(__file__).resolve().parent.parent


def _logits(v=64, c=10, seed=0):
    return 4 * torch.randn(v, c, generator=torch.Generator().manual_seed(seed))


def test_topk_with_k_equal_c_reconstructs_full_storage_to_fp16_precision():
    logits = _logits()
    full = decompress_logits(compress_logits(logits, ll.LabelCompression()), 10, "min")
    for fill in ("min", "mass"):
        topc = decompress_logits(compress_logits(logits, ll.LabelCompression(topk=10, fill=fill)), 10, fill)
        torch.testing.assert_close(topc, full, rtol=0, atol=0)
    torch.testing.assert_close(full, logits, rtol=1e-3, atol=4e-3)


def test_topk_keeps_the_k_largest_and_fills_the_rest():
    logits = _logits()
    data = compress_logits(logits, ll.LabelCompression(topk=3))
    assert data["topk_index"].dtype == torch.uint16 and data["topk_value"].dtype == torch.float16
    out = decompress_logits(data, 10, "min")
    top, index = logits.topk(3, dim=1)
    torch.testing.assert_close(out.gather(1, index), top, rtol=1e-3, atol=4e-3)
    rest = out.scatter(1, index, float("inf"))
    assert torch.equal(rest.amin(1), out.gather(1, index).amin(1)), "fill='min': the view's smallest stored value"
    mass = decompress_logits(compress_logits(logits, ll.LabelCompression(topk=3, fill="mass")), 10, "mass")
    torch.testing.assert_close(mass.softmax(1).sum(1), torch.ones(64), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(mass.softmax(1).gather(1, index), logits.softmax(1).gather(1, index), rtol=2e-3, atol=2e-3)


def test_int8_values_are_within_half_a_step():
    logits = _logits()
    for c in (ll.LabelCompression(values="int8"), ll.LabelCompression(topk=4, values="int8")):
        data = compress_logits(logits, c)
        key = "topk_value" if c.topk else "logits"
        assert data[key].dtype == torch.int8 and data["scale"].shape == (64,)
        out = decompress_logits(data, 10, c.fill)
        kept = out if c.topk is None else out.gather(1, data["topk_index"].long())
        ref = logits if c.topk is None else logits.gather(1, data["topk_index"].long())
        assert ((kept - ref).abs() <= data["scale"][:, None] / 2 + 1e-6).all()


@pytest.mark.parametrize("compression", [ll.LabelCompression(), ll.LabelCompression(topk=1, fill="mass"),
                                         ll.LabelCompression(topk=3, values="int8"),
                                         ll.LabelCompression(topk=3, fill="mass", keep_epochs=0.5)])
def test_label_bytes_on_disk_equal_the_formula(tmp_path, compression):
    distilled = _toy_set()
    stored = ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path, augment=ll.AugmentConfig(),
                                  epochs=4, batch_size=4, compression=compression, device="cpu", progress=False)
    on_disk = 0
    for path in tmp_path.glob("epoch-*.safetensors"):
        tensors = safetensors.torch.load_file(str(path))
        on_disk += sum(t.numel() * t.element_size() for k, t in tensors.items() if k in LABEL_KEYS)
    formula = stored_label_nbytes(num_classes=2, ipc=8, epochs=4, compression=compression)
    assert on_disk == formula == stored.label_nbytes
    assert len(list(tmp_path.glob("epoch-*.safetensors"))) == compression.num_kept_epochs(4) == len(stored.kept)
    assert stored.nbytes == sum(p.stat().st_size for p in tmp_path.iterdir()) > formula
    assert ll.StoredSoftLabels(tmp_path).compression == compression, "the options are recorded in the header"


def test_imagenet_formula_for_lpqld_forms():
    c = ll.LabelCompression(topk=100, values="int8")
    assert stored_label_nbytes(num_classes=1000, ipc=10, epochs=300, compression=c) == 300 * 10_000 * (100 * 3 + 4)
    pruned = ll.LabelCompression(topk=100, values="int8", keep_epochs=0.1)
    assert stored_label_nbytes(num_classes=1000, ipc=10, epochs=300, compression=pruned) == 30 * 10_000 * 304
    assert stored_label_nbytes(num_classes=1000, ipc=10, epochs=300) == 6_000_000_000 == \
        ll.storage_report(num_classes=1000, ipc=10, epochs=300).soft_label_bytes


def test_damaged_files_raise_the_librarys_error(tmp_path):
    distilled = _toy_set()
    protocol = ll.EvalProtocol.helio(**{**TOY, "epochs": 2})
    stored = ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path, augment=protocol.augment,
                                  epochs=2, batch_size=4, compression=ll.LabelCompression(topk=2), device="cpu",
                                  progress=False)
    path = tmp_path / "epoch-0001.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoredLabelsError, match="sha256"):
        ll.train_student(distilled, ll.StoredSoftLabels(tmp_path), protocol, student_model=_Tiny(), device="cpu",
                         progress=False)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(StoredLabelsError):
        ll.StoredSoftLabels(tmp_path).label(torch.zeros(4, 3, 8, 8), epoch=1, step=0)
    meta = tmp_path / "stored-labels.json"
    meta.write_text(meta.read_text().replace(f'"view_plan_version": {VIEW_PLAN_VERSION}', '"view_plan_version": 99'))
    with pytest.raises(StoredLabelsError, match="view-plan version"):
        ll.StoredSoftLabels(tmp_path)
    meta.write_text("{not json")
    with pytest.raises(StoredLabelsError, match="damaged record"):
        ll.StoredSoftLabels(tmp_path)
    assert issubclass(StoredLabelsError, ValueError) and stored.kept == [0, 1]


def test_pruned_replay_is_deterministic_and_reuses_kept_epochs(tmp_path):
    distilled = _toy_set()
    protocol = ll.EvalProtocol.helio(**{**TOY, "epochs": 4})
    stored = ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path, augment=protocol.augment,
                                  epochs=4, batch_size=4, seed=3, compression=ll.LabelCompression(keep_epochs=0.5),
                                  device="cpu", progress=False)
    assert len(stored.kept) == 2 and [stored.view_epoch(e) for e in range(4)] == [
        ll.StoredSoftLabels(tmp_path).view_epoch(e) for e in range(4)]
    assert all(stored.view_epoch(e) in stored.kept for e in range(4))
    assert all(stored.view_epoch(e) == e for e in stored.kept)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _Tiny()
        ll.train_student(distilled, ll.StoredSoftLabels(tmp_path), protocol, seed=3, student_model=model, device="cpu",
                         progress=False)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    with pytest.raises(ValueError, match="view_epoch"):
        stored.label(torch.zeros(4, 3, 8, 8), epoch=next(e for e in range(4) if e not in stored.kept), step=0)


def test_every_byte_count_has_one_definition(tmp_path, make_projector, capsys):
    """The ResNet-18 teacher, the stored labels and the RN50 adapter layout read the same in the README, a model
    card, the demo's output and `lightlabel storage`."""
    from lightlabel.cli import main
    from lightlabel.core import adapter_layout_nbytes

    teacher, stored, adapter = teacher_nbytes("resnet18", 1000), 6_000_000_000, adapter_layout_nbytes()
    assert (teacher, adapter) == (46_796_608, 3_599_108)
    figures = [f"{teacher:,}", f"{stored:,}", f"{adapter:,}"]
    readme = (PROJECT / "README.md").read_text()
    assert all(f in readme for f in figures), "README"
    assert main(["storage", "--classes", "1000", "--ipc", "10", "--epochs", "300"]) == 0
    cli = capsys.readouterr().out
    assert all(f in cli for f in figures) and "MB = 10^6 bytes" in cli
    make_projector().save_pretrained(tmp_path / "a", ipc=10, epochs=300)
    card = (tmp_path / "a" / "README.md").read_text()
    assert re.search(r"teacher it replaces \(ResNet-18\) \| [\d,]+ bytes", card)
    assert f"{teacher_nbytes('resnet18', 10):,} bytes" in card
    from lightlabel import demo

    out = []
    demo._print_table({"fit_before": {}, "fit_after": {}, "fit_ok": True, "students": [
        {"labels": "hard", "top1": 0.5, "extra_storage_bytes": 0, "seconds_per_iter": 0.1, "iterations": 300}],
        "distilled_bytes": 1, "stored_soft_label_bytes": 1, "settings": {"distill": {"ipc": 10}}, "classes": ["a"],
        "stored_soft_label_bytes_imagenet1k": stored, "teacher_bytes_imagenet1k_resnet18": teacher},
        ll.EvalProtocol.helio(), out.append)
    assert f"{stored:,} bytes at ImageNet-1k" in "\n".join(out) and f"{teacher:,} bytes" in "\n".join(out)


def test_top1_storage_needs_the_mass_fill_and_keeps_the_class():
    with pytest.raises(ValueError, match="fill.*topk.*no class"):
        ll.LabelCompression(topk=1)  # fill="min" would make every logit the one stored value: uniform labels
    logits = torch.tensor([[3.0, 1.0, -2.0, 0.5], [-1.0, 4.0, 2.0, 0.0]])
    c = ll.LabelCompression(topk=1, fill="mass")
    out = decompress_logits(compress_logits(logits, c), 4, c.fill)
    assert torch.equal(out.argmax(1), logits.argmax(1))
    p, q = out.softmax(1), logits.softmax(1)
    assert torch.allclose(p.max(1).values, q.max(1).values, atol=1e-3), "the top class keeps its probability"


def test_the_0_2_kept_epochs_name_on_the_config_warns_and_counts():
    c = ll.LabelCompression(keep_epochs=0.1)
    with pytest.warns(DeprecationWarning, match="num_kept_epochs"):
        assert c.kept_epochs(300) == c.num_kept_epochs(300) == 30


@pytest.mark.parametrize("bad, match", [(dict(epochs=0), "`epochs`"), (dict(epochs=-3), "`epochs`"),
                                        (dict(epochs=2.0), "`epochs`"), (dict(batch_size=0), "`batch_size`"),
                                        (dict(batch_size=-2), "`batch_size`")])
def test_storing_refuses_bad_epochs_and_batch_sizes_before_writing(tmp_path, bad, match):
    distilled = _toy_set()
    kwargs = dict(augment=ll.AugmentConfig(), epochs=2, batch_size=4, device="cpu", progress=False) | bad
    with pytest.raises(ValueError, match=match):
        ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path / "labels", **kwargs)
    assert not (tmp_path / "labels").exists()


def test_the_bytes_of_stored_labels_are_the_files_its_record_lists(tmp_path):
    """Labels stored again into a used folder leave the earlier epochs' files there; they are not this record's."""
    distilled = _toy_set()
    kwargs = dict(augment=ll.AugmentConfig(), batch_size=4, device="cpu", progress=False)
    ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path / "used", epochs=3, **kwargs)
    again = ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path / "used", epochs=2, **kwargs)
    fresh = ll.store_soft_labels(distilled.images, distilled.labels, _Recorder(), tmp_path / "new", epochs=2, **kwargs)
    assert len(list((tmp_path / "used").glob("epoch-*"))) == 3 and again.kept == [0, 1]
    assert again.nbytes == fresh.nbytes


def test_epoch_views_refuse_bad_batches_and_ranks_at_the_call():
    from lightlabel.labeling.augment import Augmenter, epoch_order, epoch_views
    images, labels = torch.zeros(6, 3, 8, 8, dtype=torch.uint8), torch.arange(6) % 2
    augmenter = Augmenter(ll.AugmentConfig(mix="none", flip=False), 2)
    for bad, match in [(dict(batch_size=0), "`batch_size`"), (dict(batch_size=-1), "`batch_size`"),
                       (dict(rank=2, world_size=2), "`rank`"), (dict(rank=-1), "`rank`"),
                       (dict(world_size=0), "`world_size`"), (dict(epoch=-1), "`epoch`")]:
        with pytest.raises(ValueError, match=match):
            epoch_views(images, labels, augmenter, **(dict(batch_size=4, seed=0, epoch=0) | bad))
    with pytest.raises(ValueError, match="`batch_size`"):
        epoch_order(6, 0, 0, 0)
    shares = [torch.cat([v.index for v in epoch_views(images, labels, augmenter, batch_size=4, seed=0, epoch=0,
                                                       rank=r, world_size=2)]) for r in (0, 1)]
    assert sorted(torch.cat(shares).tolist()) == list(range(6))
