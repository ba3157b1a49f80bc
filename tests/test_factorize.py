"""Factorised distilled images (HaBa) labelled online: hallucinators, the set's file, the sampler, the builder's
losses and resume, and students on it."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from conftest import interrupt_after_save

import lightlabel as ll
from lightlabel.data import load_image_folder
from lightlabel.recipes.factorize import (
    FactorizedSetError,
    HallucinatorBank,
    conv_net,
    dm_loss,
    epoch_hallucinators,
    range_loss,
)

IMAGENET32 = ll.InputSpec.imagenet(32)
TINY = dict(bases_per_class=1, hallucinators=3, iterations=100, real_per_class=4, net_width=8, net_depth=2,
            candidates_per_class=4, crops_per_image=2)


@pytest.fixture(scope="module")
def cifar_ds(cifar_train):
    return load_image_folder(cifar_train, progress=False)


@pytest.fixture(scope="module")
def resnet20(resnet20_path):
    return ll.load_teacher(resnet20_path, input_spec=IMAGENET32)


@pytest.fixture(scope="module")
def built(cifar_ds, resnet20, tmp_path_factory):
    out = tmp_path_factory.mktemp("factorized")
    return ll.factorize_images(cifar_ds, resnet20, out_dir=out, progress=False, device="cpu", **TINY), out


def test_hallucinator_is_haba_sized_and_batched_equals_per_item():
    torch.manual_seed(0)
    bank = HallucinatorBank(count=4, image_size=32)
    assert bank.num_parameters() == 2 * (3 * 3 * 3 * 3 + 3) + 2 * 3 * 30 * 30  # enc, dec, per-position sigma and mu
    x, index = torch.rand(6, 3, 32, 32), torch.tensor([0, 3, 1, 1, 2, 0])
    with torch.no_grad():
        batched = bank(x, index)
        single = torch.cat([bank(x[i:i + 1], index[i:i + 1]) for i in range(6)])
        first = F.conv2d(x[:1], bank.enc_weight[0], bank.enc_bias[0]).relu()
        padded = F.pad(bank.sigma[0] * first + bank.mu[0], (1, 1, 1, 1), mode="replicate")  # border="replicate"
        manual = F.conv_transpose2d(padded, bank.dec_weight[0], bank.dec_bias[0], padding=1)
        zero = HallucinatorBank(count=1, image_size=32, border="zero")
        plain = F.conv_transpose2d(zero.sigma[0] * F.conv2d(x[:1], zero.enc_weight[0]).relu() + zero.mu[0],
                                   zero.dec_weight[0])  # HaBa's code: no padding
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[:1], manual, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zero(x[:1], torch.zeros(1, dtype=torch.long)).detach(), plain.detach(), rtol=1e-5,
                               atol=1e-5)
    assert HallucinatorBank(count=1, image_size=64).sigma.shape == (1, 3, 62, 62), "sizes follow the image size"


def _smooth_images(n: int, size: int = 32) -> torch.Tensor:
    """Natural-image-like inputs in [0, 1]: random 8x8 images upsampled bilinearly."""
    return F.interpolate(torch.rand(n, 3, 8, 8), size=size, mode="bilinear", align_corners=False)


def _ring(t: torch.Tensor) -> torch.Tensor:
    """The outer one-pixel ring of (..., S, S)."""
    return torch.cat([t[..., 0, :], t[..., -1, :], t[..., 1:-1, 0], t[..., 1:-1, -1]], dim=-1)


def test_identity_hallucinators_map_an_image_to_nearly_itself_border_included():
    torch.manual_seed(0)
    bank = HallucinatorBank(count=5, image_size=32)  # init="identity", border="replicate": the defaults
    assert bank.init == "identity" and bank.border == "replicate"
    assert torch.equal(bank.sigma, torch.ones_like(bank.sigma)) and not bank.mu.any() and not bank.enc_bias.any()
    assert not bank.dec_bias.any()
    x = _smooth_images(10)
    with torch.no_grad():
        views = torch.stack([bank(x, torch.full((10,), h)) for h in range(5)])  # (H, B, 3, S, S)
    diff = (views - x).abs()
    assert diff[..., 1:-1, 1:-1].max() < 0.1 and diff[..., 1:-1, 1:-1].mean() < 0.03, "inside"
    assert _ring(diff).max() < 0.1 and _ring(diff).mean() < 0.03, "the outer ring is not lost"
    exact = HallucinatorBank(count=1, image_size=32, noise=0.0)  # without noise: x inside, the inner neighbour outside
    rough = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        out = exact(rough, torch.zeros(4, dtype=torch.long))
        black = HallucinatorBank(count=1, image_size=32, noise=0.0, border="zero")(rough, torch.zeros(4).long())
    torch.testing.assert_close(out, F.pad(rough[..., 1:-1, 1:-1], (1, 1, 1, 1), mode="replicate"), rtol=0, atol=1e-6)
    torch.testing.assert_close(black[..., 1:-1, 1:-1], rough[..., 1:-1, 1:-1], rtol=0, atol=1e-6)
    assert not _ring(black).any(), "an unpadded decoder leaves the outer ring at its bias: why border='replicate'"


def test_identity_hallucinators_differ_and_random_ones_are_far_from_the_image():
    torch.manual_seed(0)
    bank = HallucinatorBank(count=5, image_size=32)
    x = _smooth_images(10)
    with torch.no_grad():
        views = torch.stack([bank(x, torch.full((10,), h)) for h in range(5)])
        random_views = HallucinatorBank(count=1, image_size=32, init="random")(x, torch.zeros(10).long())
    for a in range(5):
        for b in range(a + 1, 5):
            assert (views[a] - views[b]).abs().mean() > 1e-3, f"hallucinators {a} and {b} are the same map"
            assert not torch.equal(bank.enc_weight[a], bank.enc_weight[b])
    assert (random_views - x).abs().mean() > 5 * (views[0] - x).abs().mean()


def test_hallucinator_init_is_validated_and_recorded(built):
    fs, _ = built
    assert fs.manifest["config"]["hallucinator_init"] == "identity" and fs.hallucinators.border == "replicate"
    assert ll.FactorizeConfig(hallucinator_init="random").hallucinator_init == "random"
    with pytest.raises(ValueError, match=r"`hallucinator_init` must be one of \['identity', 'random'\], got 'zeros'"):
        ll.FactorizeConfig(hallucinator_init="zeros")
    with pytest.raises(ValueError, match="`hidden_channels` must be >= 3"):
        ll.FactorizeConfig(hidden_channels=2)
    assert ll.FactorizeConfig(hidden_channels=2, hallucinator_init="random").hidden_channels == 2
    with pytest.raises(ValueError, match=r"`init` must be one of \['identity', 'random'\]"):
        HallucinatorBank(count=1, image_size=32, init="zeros")
    with pytest.raises(ValueError, match=r"`border` must be one of \['replicate', 'zero'\]"):
        HallucinatorBank(count=1, image_size=32, border="reflect")


def test_sets_without_a_recorded_border_load_with_the_plain_decoder(built, tmp_path):
    fs, _ = built
    assert b'"hallucinator_border":"replicate"' in fs.to_bytes()
    bank = HallucinatorBank(count=3, image_size=32, init="random", border="zero")  # a set written before the border
    old = ll.FactorizedSet(fs.bases, fs.labels, fs.classes, bank, {"bases_per_class": 1})
    assert b"hallucinator_border" not in old.to_bytes(), "files of the plain decoder keep their old bytes"
    loaded = ll.FactorizedSet.load(old.save(tmp_path / "old.safetensors"))
    assert loaded.hallucinators.border == "zero" and loaded.to_bytes() == old.to_bytes()
    b, h = torch.arange(6) // 3, torch.arange(6) % 3
    assert torch.equal(loaded.generate(b, h), old.generate(b, h))


def test_the_set_items_files_and_errors(built, tmp_path):
    fs, out = built
    assert len(fs) == 10 * 3 and fs.num_epoch_images == 10 and fs.bases.dtype == torch.uint8
    x, y = fs[7]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == int(fs.labels[7 // 3])
    b, h = torch.arange(len(fs)) // 3, torch.arange(len(fs)) % 3
    batched = fs.generate(b, h)
    assert 0 <= batched.min() and batched.max() <= 1
    torch.testing.assert_close(torch.stack([fs[i][0] for i in range(len(fs))]), batched, rtol=1e-5, atol=1e-6)
    path = fs.save(tmp_path / "set.safetensors")
    assert fs.storage_nbytes == path.stat().st_size == (out / "factorized.safetensors").stat().st_size
    loaded = ll.FactorizedSet.load(path)
    assert loaded.to_bytes() == path.read_bytes() and torch.equal(loaded.bases, fs.bases)
    assert all(torch.equal(a, b) for a, b in zip(loaded.hallucinators.parameters(), fs.hallucinators.parameters()))
    assert torch.equal(loaded.generate(b, h), batched)
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[-5] ^= 0x10
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    (tmp_path / "short.safetensors").write_bytes(data[:len(data) // 2])
    (tmp_path / "version.safetensors").write_bytes(data.replace(b'"format_version":"1"', b'"format_version":"9"'))
    for name, match in (("flipped", "checksum"), ("short", "truncated|readable"), ("version", "format version")):
        with pytest.raises(FactorizedSetError, match=match):
            ll.FactorizedSet.load(tmp_path / f"{name}.safetensors")
    assert issubclass(FactorizedSetError, ValueError)
    control = fs.bases_only()
    assert isinstance(control, ll.DistilledSet) and torch.equal(control.images, fs.bases) and len(control) == 10


def test_the_sampler_covers_each_basis_once_per_epoch_and_agrees_everywhere():
    a = epoch_hallucinators(50, 5, seed=3, epoch=7)
    assert a.shape == (50,) and a.min() >= 0 and a.max() < 5
    assert torch.equal(a, epoch_hallucinators(50, 5, seed=3, epoch=7)), "no rank or label source enters the draw"
    assert not torch.equal(a, epoch_hallucinators(50, 5, seed=3, epoch=8))


def test_same_seed_same_file_and_resume_equals_uninterrupted(built, cifar_ds, resnet20, tmp_path, monkeypatch):
    fs, _ = built
    again = ll.factorize_images(cifar_ds, resnet20, progress=False, device="cpu", **TINY)
    assert hashlib.sha256(again.to_bytes()).hexdigest() == hashlib.sha256(fs.to_bytes()).hexdigest()
    interrupt_after_save(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ll.factorize_images(cifar_ds, resnet20, out_dir=tmp_path, progress=False, device="cpu", **TINY)
    monkeypatch.undo()
    assert torch.load(tmp_path / "factorize-state.pt", weights_only=False)["epoch"] == 1
    resumed = ll.factorize_images(cifar_ds, resnet20, out_dir=tmp_path, progress=False, device="cpu", **TINY)
    assert resumed.to_bytes() == fs.to_bytes()


def test_dm_and_cos_losses_fall_on_a_tiny_subset(built):
    fs, _ = built
    history = fs.manifest["history"]
    assert fs.manifest["iterations_done"] == 100 and {"dm", "cos", "adversary"} <= set(history[-1])
    torch.manual_seed(0)
    net = conv_net(2, width=8, depth=2).requires_grad_(False)
    real = [torch.randn(8, 3, 32, 32) + 1, torch.randn(8, 3, 32, 32) - 1]
    syn = [torch.randn(4, 3, 32, 32).requires_grad_(True) for _ in range(2)]
    opt = torch.optim.Adam(syn, lr=0.05)
    losses = []
    for _ in range(30):
        loss = dm_loss(net, real, syn)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    bank, base = HallucinatorBank(count=2, image_size=32), torch.rand(6, 3, 32, 32)
    adversary = conv_net(2, width=8, depth=2).requires_grad_(False)
    opt = torch.optim.Adam(bank.parameters(), lr=0.01)
    cos = []
    for _ in range(30):
        za, zb = (adversary.features(bank(base, torch.full((6,), h))) for h in (0, 1))
        loss = F.cosine_similarity(za, zb, dim=1).mean()
        cos.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert cos[-1] < cos[0] - 0.05, cos[::10]


def test_bases_lr_moves_the_bases_and_lr_the_hallucinators(cifar_ds, resnet20):
    settings = dict(TINY, iterations=10)
    init = ll.distill_images(cifar_ds, resnet20, ll.DistillConfig(
        ipc=1, patches_per_image=1, candidates_per_class=4, crops_per_image=2, refine_steps=0, seed=0),
        device="cpu", progress=False)
    frozen_bases = ll.factorize_images(cifar_ds, resnet20, progress=False, device="cpu", **settings, bases_lr=1e-9)
    assert torch.equal(frozen_bases.bases, init.images), "bases_lr ~ 0 keeps the RDED-selected bases"
    frozen_bank = ll.factorize_images(cifar_ds, resnet20, progress=False, device="cpu", **settings, lr=1e-9)
    assert not torch.equal(frozen_bank.bases, init.images), "the default bases_lr moves the bases"
    for moved, still in zip(frozen_bases.hallucinators.parameters(), frozen_bank.hallucinators.parameters()):
        assert (moved - still).abs().max() > 1e-4, "lr moves the hallucinators, bases_lr does not"
    with pytest.raises(ValueError, match="`bases_lr`"):
        ll.FactorizeConfig(bases_lr=0)


def test_the_range_term_is_zero_inside_and_pulls_an_overshooting_hallucinator_back():
    inside = torch.rand(2, 3, 8, 8).requires_grad_(True)
    loss = range_loss(inside)
    loss.backward()
    assert loss.item() == 0.0 and inside.grad.abs().max() == 0
    outside = torch.tensor([[-0.5, 0.5, 1.5]]).requires_grad_(True)
    range_loss(outside).backward()
    assert outside.grad[0, 0] < 0 < outside.grad[0, 2] and outside.grad[0, 1] == 0, "the gradient points inward"
    torch.manual_seed(0)
    bank, base = HallucinatorBank(count=1, image_size=16), torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        bank.dec_weight.mul_(3)  # a hallucinator that overshoots [0, 1], as the 1,000-iteration DM builds did
    index = torch.zeros(4, dtype=torch.long)
    excess = [range_loss(bank(base, index)).item()]
    opt = torch.optim.Adam(bank.parameters(), lr=0.01)
    for _ in range(50):
        loss = range_loss(bank(base, index))
        opt.zero_grad()
        loss.backward()
        opt.step()
        excess.append(loss.item())
    assert excess[0] > 0.05 and excess[-1] < 0.2 * excess[0], excess[::10]


def test_lambda_range_is_validated_recorded_and_off_by_default(built, cifar_ds, resnet20):
    assert "range" not in built[0].manifest["history"][-1], "lambda_range = 0 adds no term"
    fs = ll.factorize_images(cifar_ds, resnet20, progress=False, device="cpu", **dict(TINY, iterations=3),
                             lambda_range=10.0)
    assert fs.manifest["config"]["lambda_range"] == 10.0 and "range" in fs.manifest["history"][-1]
    with pytest.raises(ValueError, match="`lambda_range`"):
        ll.FactorizeConfig(lambda_range=-1.0)


def test_students_on_a_factorized_set(built, resnet20, tmp_path):
    fs, _ = built
    protocol = ll.EvalProtocol.helio(epochs=2, batch_size=5, student="cifar_resnet20")
    result = ll.train_student(fs, resnet20, protocol, device="cpu", progress=False)
    assert result.iterations == 2 * 2 and result.label_kind == "teacher"
    hard = ll.train_student(fs, "hard", protocol, device="cpu", progress=False)
    assert hard.extra_storage_bytes == 0
    control = ll.train_student(fs.bases_only(), "hard", protocol, device="cpu", progress=False)
    assert control.iterations == 4
    stored = ll.store_soft_labels(fs.bases, fs.labels, resnet20, tmp_path, augment=protocol.augment, epochs=2,
                                  batch_size=5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="one stored label per hallucinated view"):
        ll.train_student(fs, stored, protocol, device="cpu", progress=False)


def test_cli_factorize_train_and_info(tmp_path, cifar_train, resnet20_path, capsys):
    from lightlabel.cli import main

    out = tmp_path / "set.safetensors"
    assert main(["factorize", str(cifar_train), "--observer", str(resnet20_path),
                 "--observer-input", "imagenet@32", "--out", str(out), "--bases-per-class", "1", "--hallucinators", "2",
                 "--iterations", "2", "--real-per-class", "2", "--net-width", "8", "--candidates-per-class", "3",
                 "--crops-per-image", "1", "--quiet"]) == 0
    assert "written to" in capsys.readouterr().out and out.is_file()
    assert main(["info", str(out)]) == 0
    assert "lightlabel factorised set" in capsys.readouterr().out
    assert main(["train", str(out), "--labels", "hard", "--student", "cifar_resnet20", "--epochs", "1", "--batch-size",
                 "5", "--quiet"]) == 0
    assert "hard labels" in capsys.readouterr().out


def test_generating_on_another_device_leaves_the_set_where_it_is():
    """0.3.0.dev moved the caller's hallucinators in place (``bank.to(device)``), after which the set's fingerprint
    and files failed on device tensors. The meta device stands in for CUDA here."""
    bases = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    fs = ll.FactorizedSet(bases, torch.tensor([0, 1]), ["a", "b"], HallucinatorBank(count=2, image_size=32),
                          {"bases_per_class": 1})
    before = fs.fingerprint
    out = fs.generate(torch.tensor([0, 1]), torch.tensor([1, 0]), device="meta")
    assert out.device.type == "meta" and out.shape == (2, 3, 32, 32)
    assert all(p.device.type == "cpu" for p in fs.hallucinators.parameters())
    assert fs.fingerprint == before and len(fs.to_bytes()) > 0
