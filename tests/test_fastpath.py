"""The merged projector's fast path computes the same function (issue 31): folded BatchNorm, a one-token attention
pool, a float32 head under bf16 autocast, and a resampled positional embedding for another labelling size."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import randomize_adapter
from open_clip.modified_resnet import AttentionPool2d
from torch import nn

import lightlabel as ll
from lightlabel.core.fastpath import (
    OneTokenAttentionPool2d,
    conv_bn_pairs,
    fold_batchnorm,
    set_input_size,
    unfold_batchnorm,
    use_one_token_pool,
)
from lightlabel.models import build_model


@pytest.fixture
def projector(make_projector):
    p = make_projector()
    randomize_adapter(p)
    return p.eval()


def _randomise_norms(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize("arch", ["cifar_resnet20", "resnet18"])
def test_folded_batchnorm_equals_conv_then_norm(arch):
    torch.manual_seed(0)  # weights and input independent of the tests run before (1e-5 is near float32 rounding)
    model = build_model(arch, 10).eval()
    _randomise_norms(model)
    x = torch.randn(3, 3, 32, 32)
    reference = model(x)
    store = nn.ModuleDict()
    fold_batchnorm(model, store)
    assert len(store) == len(conv_bn_pairs(copy.deepcopy(build_model(arch, 10)))) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules() if m not in store.modules())
    torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-5)
    unfold_batchnorm(model, store)
    assert len(store) == 0 and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-5)


def test_training_mode_norms_are_not_folded():
    model = build_model("cifar_resnet20", 10).train()
    with pytest.raises(RuntimeError, match="training mode"):
        fold_batchnorm(model, nn.ModuleDict())


def test_one_token_attention_pool_equals_open_clips():
    torch.manual_seed(0)
    pool = AttentionPool2d(spacial_dim=4, embed_dim=32, num_heads=4, output_dim=16).eval()
    x = torch.randn(5, 32, 4, 4)
    reference = pool(x)
    use_one_token_pool(pool, True)
    assert type(pool) is OneTokenAttentionPool2d
    torch.testing.assert_close(pool(x), reference, rtol=1e-5, atol=1e-5)
    use_one_token_pool(pool, False)
    assert type(pool) is AttentionPool2d and torch.equal(pool(x), reference)


def test_merged_equals_unmerged_and_unmerge_restores_exactly(projector, cifar_batch):
    x = projector.input_spec.normalize(cifar_batch[0])
    with torch.no_grad():
        reference = projector(x)
        weights = {k: v.clone() for k, v in projector.visual.state_dict().items()}
        projector.merge()
        assert len(projector.folded_norms) > 0 and isinstance(projector.visual.attnpool, OneTokenAttentionPool2d)
        torch.testing.assert_close(projector(x), reference, rtol=1e-5, atol=1e-5)
        projector.unmerge()
        assert len(projector.folded_norms) == 0 and type(projector.visual.attnpool) is AttentionPool2d
        assert projector.visual.state_dict().keys() == weights.keys()
        for k, v in projector.visual.state_dict().items():
            torch.testing.assert_close(v, weights[k], rtol=1e-6, atol=1e-6, msg=k)
        torch.testing.assert_close(projector(x), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("merged", [False, True])
def test_head_logits_stay_float32_under_bf16_autocast(projector, cifar_batch, merged):
    """0.2's head ran its matmul in bf16 under the caller's autocast: logits of scale ~100 moved in steps of 0.125."""
    features = torch.randn(16, projector.head.text_weight.shape[1])
    if merged:
        projector.merge()
    with torch.no_grad():
        reference = projector.head(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = projector.head(features.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, projector.head(features.bfloat16().float()), rtol=1e-5, atol=1e-5)
    assert (out - reference).abs().max() < 0.1  # only the features' own bf16 rounding remains


def test_native_label_size_is_bit_identical(make_projector, cifar_batch):
    torch.manual_seed(0)
    a = make_projector()
    torch.manual_seed(0)
    b = make_projector(label_size=32)  # the tiny base's own size
    x = a.input_spec.normalize(cifar_batch[0][:4])
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert b.config.label_size == 32 and b.image_size == (32, 32)


def test_label_size_resamples_the_pool_and_is_recorded(make_projector, tmp_path, cifar_batch):
    torch.manual_seed(0)
    projector = make_projector(label_size=64)
    assert projector.image_size == (64, 64) and projector.input_spec.image_size == (64, 64)
    grid = projector.visual.attnpool.positional_embedding.shape[0]
    assert grid == (64 // 32) ** 2 + 1
    with torch.no_grad():
        out = projector(projector.input_spec.prepare(cifar_batch[0][:2]))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    path = projector.save_pretrained(tmp_path / "a.safetensors")
    info = ll.read_adapter(path)[0]
    assert info.config.label_size == 64 and info.image_size == (64, 64)
    back = ll.Projector.from_pretrained(path)
    with torch.no_grad():
        torch.testing.assert_close(back(projector.input_spec.prepare(cifar_batch[0][:2])), out)


def test_label_size_must_divide_by_the_stride(make_projector):
    with pytest.raises(ValueError, match="multiple of the tower's stride 32"):
        make_projector(label_size=48)
    with pytest.raises(ValueError, match="label_size"):
        ll.AdapterConfig(label_size=8)


def test_vit_positional_embedding_resamples(tiny_vit):
    projector = ll.Projector(base=tiny_vit[0], pretrained=tiny_vit[1], class_names=["a", "b"],
                             config=ll.AdapterConfig(head_rank=2))
    size = projector.image_size[0] * 2
    resized = ll.Projector(base=tiny_vit[0], pretrained=tiny_vit[1], class_names=["a", "b"],
                           config=ll.AdapterConfig(head_rank=2, label_size=size))
    with torch.no_grad():
        out = resized(resized.input_spec.normalize(torch.rand(2, 3, size, size)))
    assert out.shape == (2, 2) and resized.visual.grid_size[0] == 2 * projector.visual.grid_size[0]
    set_input_size(resized.visual, (size, size))  # idempotent at its own size


def _ensemble_members(mixed: bool) -> list[nn.Module]:
    archs = ["cifar_resnet20", "resnet18"] if mixed else ["cifar_resnet20"] * 3
    members = []
    for seed, arch in enumerate(archs):
        torch.manual_seed(seed)
        m = build_model(arch, 10, low_res=arch == "resnet18").eval()
        _randomise_norms(m, seed)
        m.input_spec = ll.InputSpec.cifar10()
        members.append(m)
    return members


@pytest.mark.parametrize("mixed, vectorize", [(False, False), (False, True), (True, False)])
def test_an_ensembles_fast_copy_has_every_classifier_in_float32_and_equal_labels(mixed, vectorize):
    """0.3.0.dev's optimized path left a stacked ensemble unfolded with a bf16 classifier, and gave a mixed one a
    float32 classifier in its last member only."""
    from lightlabel.core.fastpath import Float32Linear
    from lightlabel.labeling.sources import ModelLabels

    ensemble = ll.TeacherEnsemble(_ensemble_members(mixed), vectorize=vectorize)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        reference = ensemble(x)
        fast = ModelLabels(ensemble).optimized("cpu").model
    assert isinstance(fast, ll.TeacherEnsemble) and fast is not ensemble
    members = [fast._skeleton[0]] if vectorize else fast.members()
    assert len(members) == (1 if vectorize else len(ensemble.members()))
    for member in members:
        assert [type(m) for m in member.modules() if isinstance(m, nn.Linear)][-1] is Float32Linear
        if not vectorize:  # BatchNorm folded into the convolutions, as the merged projector's
            assert not any(isinstance(m, nn.BatchNorm2d) for m in member.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), reference, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert fast(x).dtype == torch.float32
    # the caller's ensemble is not changed
    assert all(type(m) is nn.Linear for m in ensemble.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), reference, rtol=0, atol=0)


@pytest.mark.parametrize("what", ["teacher", "ensemble", "stacked"])
def test_every_labelling_path_gives_a_teachers_logits_in_float32_sharing_its_weights(what):
    """Issue 31: under bf16 autocast a raw teacher's classifier rounded its logits to bf16 in ModelLabels
    (OnlineRelabeler, label_view_agreement), the teacher module and fit_adapter's targets, where only the optimised
    copy computed it in float32. Each now labels through a weight-sharing view; the caller's model is unchanged."""
    from lightlabel.core.fastpath import Float32Linear, float32_logits_view
    from lightlabel.labeling.sources import ModelLabels

    teachers = _ensemble_members(mixed=False)
    model = teachers[0] if what == "teacher" else ll.TeacherEnsemble(teachers, vectorize=what == "stacked")
    x = torch.rand(4, 3, 32, 32)
    view = float32_logits_view(model)
    assert view is not model and all(a is b for a, b in zip(view.parameters(), model.parameters()))
    assert all(a is b for a, b in zip(view.buffers(), model.buffers()))
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))  # the caller's: as it was
    owners = view.classifier_owners() if what != "teacher" else [view]
    assert all([type(m) for m in o.modules() if isinstance(m, nn.Linear)][-1] is Float32Linear for o in owners)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert view(x).dtype == torch.float32
        assert ModelLabels(model).model(x).dtype == torch.float32
        module = ll.TeacherModule(model, input_spec=model.input_spec)
        assert module.labeller(x).dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(view(x), model(x), rtol=0, atol=0)  # without autocast: the same computation


def test_a_stacked_ensembles_members_are_its_teachers():
    teachers = _ensemble_members(mixed=False)
    ensemble = ll.TeacherEnsemble(copy.deepcopy(teachers))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for member, teacher in zip(ensemble.members(), teachers, strict=True):
            torch.testing.assert_close(member(x), teacher(x), rtol=0, atol=0)


def _casts(fn) -> int:
    """How many dtype casts (``aten::_to_copy``) one call of ``fn`` dispatches."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name == "aten::_to_copy" for e in prof.events())


def _bf16(fn):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return fn()


@pytest.mark.parametrize("what", ["projector", "vit projector", "teacher", "ensemble"])
def test_bf16_weights_give_bitwise_the_labels_autocast_gives_without_its_casts(what, make_projector, tiny_vit,
                                                                                cifar_batch):
    """Under bf16 autocast a frozen labeller's float32 weights were cast on every call (autocast caches casts only
    for weights that require grad); stored in bf16 they are the tensors it made, so the labels are bitwise equal."""
    from lightlabel.core.fastpath import (
        Float32Linear,
        autocast_weight_names,
        cast_autocast_weights,
        fast_teacher,
    )

    if what.endswith("projector"):
        model = make_projector(tiny_vit if what == "vit projector" else None)
        randomize_adapter(model)
        model.eval().merge()
        x = model.input_spec.prepare(cifar_batch[0][:4])
        fast = copy.deepcopy(model)
        cast_autocast_weights(fast.visual, torch.bfloat16)
        kept = [fast.head]
    else:
        members = _ensemble_members(mixed=False)
        x = torch.rand(4, 3, 32, 32)
        if what == "teacher":
            model = fast_teacher(members[0])
            fast = fast_teacher(members[0], weight_dtype=torch.bfloat16)
        else:
            model = ll.TeacherEnsemble(members).fast()
            fast = model.fast(weight_dtype=torch.bfloat16)
        kept = [m for m in fast.modules() if isinstance(m, Float32Linear)]
    reference, out = _bf16(lambda: model(x)), _bf16(lambda: fast(x))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    assert all(p.dtype == torch.float32 for m in kept for p in m.parameters())  # heads and classifiers stay float32
    if what != "ensemble":  # (a stacked ensemble's tensors are buffers)
        cast = set(autocast_weight_names(fast))
        assert cast and all((p.dtype == torch.bfloat16) == (n in cast) for n, p in fast.named_parameters()
                            if p.is_floating_point() and not n.startswith(("head.", "image_lora.")))
    before, after = _bf16(lambda: _casts(lambda: model(x))), _bf16(lambda: _casts(lambda: fast(x)))
    assert after < before / 2, (before, after)


def test_optimized_bf16_labels_on_any_device_and_is_checked(make_projector, cifar_batch):
    from lightlabel.labeling.sources import ModelLabels

    projector = make_projector()
    randomize_adapter(projector)
    labeller = ModelLabels(projector.eval())
    views = cifar_batch[0][:4]
    reference = labeller.label(views)
    fast = labeller.optimized("cpu", bf16=True)
    assert fast.model.visual.conv1.weight.dtype == torch.bfloat16 and projector.visual.conv1.weight.dtype == torch.float32
    out = fast.label(views)  # under bf16 autocast on the CPU too: the weights need it
    assert out.dtype == torch.float32 and out.shape == reference.shape
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()
    assert fast.to("cpu").label(views).equal(out)
    assert fast.num_classes == labeller.num_classes and fast.extra_bytes() == labeller.extra_bytes()
    assert labeller.optimized("cpu").model.visual.conv1.weight.dtype == torch.float32  # the CPU default: float32
    with pytest.raises(TypeError, match="`bf16`"):
        labeller.optimized("cpu", bf16="yes")
