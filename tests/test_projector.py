"""Projector behaviour: zero-shot equivalence at init, LoRA no-op and effect, merging, freezing, inputs."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import CIFAR10_CLASSES, randomize_adapter

import lightlabel as ll
from lightlabel.core.templates import HELIO_TEMPLATES, OPENAI_IMAGENET_TEMPLATES


def _base_model(base):
    name, path = base
    return open_clip.create_model(name, pretrained=path).eval()


@pytest.mark.parametrize("which", ["tiny_rn", "tiny_vit"])
@pytest.mark.parametrize("head_mode", ["renorm", "additive"])
def test_init_equals_open_clip_zero_shot(request, which, head_mode, make_projector):
    """HeLlO Proposition 1: at initialisation the projector is CLIP zero-shot classification."""
    base = request.getfixturevalue(which)
    projector = make_projector(base, head_mode=head_mode).eval()
    model = _base_model(base)
    tokenizer = open_clip.get_tokenizer(base[0])
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        classifier = open_clip.build_zero_shot_classifier(model, tokenizer, CIFAR10_CLASSES, list(HELIO_TEMPLATES))
        expected = model.logit_scale.exp() * F.normalize(model.encode_image(x), dim=-1) @ classifier
        got = projector(x)
    assert got.dtype == torch.float32 and got.shape == (6, 10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("targets", [("conv",), ("conv", "attnpool"), ("linear",)])
def test_fresh_adapter_is_bit_identical_to_base(tiny_rn, make_projector, targets):
    projector = make_projector(targets=targets).eval()
    model = _base_model(tiny_rn)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(projector.visual(x), model.visual(x))


def test_paper_default_adapts_every_conv(tiny_rn, make_projector):
    projector = make_projector()
    convs = [n for n, m in projector.visual.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(projector.lora_weights) == len(convs) > 0
    assert all(w.endswith("weight") for w in projector.lora_weights)


@pytest.mark.parametrize("which,targets", [("tiny_rn", ("attnpool",)), ("tiny_vit", ("attn",))])
def test_lora_on_attention_weights_changes_output(request, make_projector, which, targets):
    """open_clip's AttentionPool2d passes q_proj.weight to F.multi_head_attention_forward: a wrapper would be
    bypassed; the parametrised weight is not."""
    projector = make_projector(request.getfixturevalue(which), targets=targets).eval()
    assert projector.lora_weights, "no attention weights were adapted"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = projector.visual(x).clone()
        for lora in projector.image_lora:
            lora.lora_B.normal_(0, 0.5)
        after = projector.visual(x)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("which", ["tiny_rn", "tiny_vit"])
def test_merge_equals_unmerged(request, make_projector, which):
    projector = make_projector(request.getfixturevalue(which), targets=("conv", "linear", "attn")).eval()
    randomize_adapter(projector)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        unmerged = projector(x)
        projector.merge()
        assert projector.merged
        assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in projector.visual.modules())
        merged = projector(x)
        projector.merge()  # idempotent
        projector.unmerge()
        again = projector(x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, unmerged, rtol=1e-5, atol=1e-5)


def test_only_adapter_parameters_get_gradients_and_base_stays_frozen(make_projector):
    projector = make_projector(targets=("conv", "attnpool"))
    randomize_adapter(projector)
    projector.train()
    assert not projector.visual.training, "the base must stay in eval mode (frozen BatchNorm statistics)"
    base_state = {k: v.clone() for k, v in projector.visual.state_dict().items() if "lora" not in k}
    trainable = {id(p) for p in projector.trainable_parameters()}
    opt = torch.optim.SGD(projector.trainable_parameters(), lr=0.1)
    for _ in range(2):
        loss = projector(torch.randn(4, 3, 32, 32)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in projector.named_parameters():
        if id(p) in trainable:
            assert p.grad is not None and p.requires_grad, name
        else:
            assert p.grad is None and not p.requires_grad, name
    for k, v in projector.visual.state_dict().items():
        if k in base_state:
            assert torch.equal(v, base_state[k]), f"base tensor {k} changed"
    n = projector.num_adapter_parameters()
    assert n == sum(p.numel() for p in projector.trainable_parameters()) > 0


def test_real_cifar_batch_through_preprocess(make_projector, cifar_batch):
    images, _ = cifar_batch
    projector = make_projector().eval()
    with torch.no_grad():
        logits = projector(projector.input_spec.normalize(images))
    assert logits.shape == (40, 10) and torch.isfinite(logits).all()
    pil_pipeline = projector.preprocess(images[0])
    assert pil_pipeline.shape == (3, 32, 32) and pil_pipeline.dtype == torch.float32


def test_text_head_is_cached_on_disk(tiny_rn, make_projector, tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTLABEL_CACHE", str(tmp_path))
    first = make_projector()
    files = list((tmp_path / "text_heads").glob("*.safetensors"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(open_clip, "build_zero_shot_classifier", lambda *a, **k: calls.append(1))
    second = make_projector()
    assert not calls, "the cached text head was not used"
    assert torch.equal(first.head.text_weight, second.head.text_weight)


def test_openai_templates_and_precomputed_embeddings(tiny_rn, make_projector):
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80 and all(t.count("{}") == 1 for t in OPENAI_IMAGENET_TEMPLATES)
    emb = torch.randn(10, 32)
    projector = make_projector(text_embeddings=emb)
    assert projector.templates is None
    torch.testing.assert_close(projector.head.text_weight, F.normalize(emb, dim=-1))
    with pytest.raises(ValueError, match=r"\[C, d\] = \[10, 32\]"):
        make_projector(text_embeddings=torch.randn(9, 32))


def test_remap_reorders_labels_by_name(make_projector):
    projector = make_projector().eval()
    randomize_adapter(projector)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = projector(x)
        order = list(reversed(CIFAR10_CLASSES))
        projector.remap(order)
        after = projector(x)
    assert projector.class_names == tuple(order)
    for j, name in enumerate(order):
        torch.testing.assert_close(after[:, j], before[:, CIFAR10_CLASSES.index(name)])
    with pytest.raises(ValueError, match="does not know"):
        projector.remap(["cat", "unicorn"])


@pytest.mark.parametrize(
    "images,exc,match",
    [
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), TypeError, "uint8"),
        (torch.randn(2, 3, 32, 32, dtype=torch.float64), TypeError, r"images.float\(\)"),
        (torch.randn(2, 1, 32, 32), ValueError, r"\(B, 3, H, W\)"),
        (torch.randn(2, 4, 32, 32), ValueError, r"\(B, 3, H, W\)"),
        (torch.randn(3, 32, 32), ValueError, r"\(B, 3, H, W\)"),
        (torch.full((2, 3, 32, 32), float("nan")), ValueError, "NaN"),
        (torch.rand(2, 3, 32, 32) * 255, ValueError, "0-255"),
        (torch.randn(2, 3, 32, 48), ValueError, "as_teacher"),
    ],
)
def test_bad_images_raise_clear_errors(make_projector, images, exc, match):
    projector = make_projector()
    with pytest.raises(exc, match=match):
        projector(images)


def test_another_size_is_refused_and_names_as_teacher(make_projector):
    """0.2 resized foreign input with a warning and never converted its normalisation: silently wrong labels."""
    projector = make_projector().eval()
    with pytest.raises(ValueError, match=r"64x64 but this projector labels 32x32.*as_teacher"), torch.no_grad():
        projector(torch.randn(2, 3, 64, 64))


def test_deprecated_input_helpers_warn_and_equal_the_input_spec(make_projector):
    """0.2's ``normalize``/``denormalize``/``check_images`` on the projector: the input spec owns the normalisation,
    and forward checks its own input (issue 33: a narrower Projector)."""
    projector = make_projector().eval()
    images01 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    spec = projector.input_spec
    with pytest.warns(DeprecationWarning, match="input_spec.normalize"):
        torch.testing.assert_close(projector.normalize(images01), spec.normalize(images01), rtol=0, atol=0)
    x = spec.normalize(images01)
    with pytest.warns(DeprecationWarning, match="input_spec.denormalize"):
        torch.testing.assert_close(projector.denormalize(x), spec.denormalize(x), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="check_images"):
        assert projector.check_images(x) is x
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="input_spec.normalize"):
        projector.check_images((images01 * 255).to(torch.uint8))


def test_unnormalised_batch_warns(make_projector):
    with pytest.warns(UserWarning, match="normalised"), torch.no_grad():
        make_projector().eval()(torch.rand(4, 3, 32, 32))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_rank": 0}, "image_rank"),
        ({"head_rank": -1}, "head_rank"),
        ({"image_alpha": 0.0}, "image_alpha"),
        ({"targets": ("convs",)}, "targets"),
        ({"head_mode": "other"}, "head_mode"),
        ({"templates": ["no placeholder"]}, "template"),
        ({"templates": "clip"}, "templates"),
        ({"class_names": ["a", "a"]}, "duplicates"),
        ({"class_names": []}, "class_names"),
    ],
)
def test_bad_options_raise_value_errors(make_projector, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_projector(**kwargs)


def test_unknown_base_lists_choices_and_bad_tag(tiny_rn):
    with pytest.raises(ValueError, match="Available"):
        ll.Projector(base="no-such-model", pretrained=None, class_names=["a", "b"])
    with pytest.raises(ValueError, match="neither a known open_clip tag"):
        ll.Projector(base=tiny_rn[0], pretrained="/no/such/file.pt", class_names=["a", "b"])


def test_compile_gives_the_same_labels(make_projector):
    projector = make_projector().eval()
    randomize_adapter(projector)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = projector(x)
        projector.compile(backend="eager")  # the wiring; inductor itself is exercised on a GPU
        got = projector(x)
    assert projector.merged
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_half_precision_labels_are_finite_and_close(make_projector):
    projector = make_projector().eval()
    randomize_adapter(projector)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = projector(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = projector(x)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - ref).abs().max() < 0.1 * ref.abs().max()


def test_merging_a_copy_leaves_the_original_working(make_projector, cifar_batch):
    """copy.deepcopy shares parametrize's per-module classes; 0.2's merged copy (train_student's) deleted the
    original's weight property, so the caller's unmerged projector failed on its next call."""
    import copy

    projector = make_projector().eval()
    x = projector.input_spec.normalize(cifar_batch[0][:2])
    with torch.no_grad():
        before = projector(x)
        copy.deepcopy(projector).merge()
        copy.deepcopy(projector).merge()
        torch.testing.assert_close(projector(x), before)
    projector.merge().unmerge()
    with torch.no_grad():
        torch.testing.assert_close(projector(x), before, rtol=1e-5, atol=1e-5)
