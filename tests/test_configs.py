"""InputSpec and the config dataclasses: validation errors that name the argument, and exact round trips
(through the adapter header for AdapterConfig; through dicts for the others); CLI flags generated from fields."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import lightlabel as ll
from lightlabel.cli import _parser
from lightlabel.io.adapter_format import AdapterInfo


@pytest.mark.parametrize("kwargs,match", [
    ({"mean": (0.5, 0.5)}, "`mean` must be 3 numbers"),
    ({"mean": "abc"}, "`mean` must be 3 numbers"),
    ({"std": (1.0, 0.0, 1.0)}, "`std` must be > 0"),
    ({"std": (1.0, float("nan"), 1.0)}, "`std` must be finite"),
    ({"image_size": 0}, "`image_size`"),
    ({"image_size": (32, 32, 3)}, "`image_size`"),
    ({"image_size": 32.0}, "`image_size`"),
])
def test_input_spec_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ll.InputSpec(**kwargs)


def test_input_spec_maths_round_trips_and_parsing():
    spec = ll.InputSpec.imagenet(16)
    assert spec.image_size == (16, 16) and ll.InputSpec.from_dict(spec.to_dict()) == spec
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(spec.denormalize(spec.normalize(x)), x)
    assert spec.prepare(x).shape == (2, 3, 16, 16)
    expected = (x[:, 1] - 0.456) / 0.224
    torch.testing.assert_close(spec.normalize(x)[:, 1], expected)
    raw = (x * 255).to(torch.uint8)
    with pytest.raises(TypeError, match="float pixels"):
        spec.normalize(raw)
    with pytest.raises(TypeError, match="normalised float"):  # its constants in uint8 would be zeros
        spec.denormalize(raw)
    for source in (None, spec, ll.InputSpec.cifar10()):  # the same statistics too: nothing would convert it
        with pytest.raises(TypeError, match="float"):
            spec.prepare(raw, source=source)
    assert ll.InputSpec.parse("imagenet@32") == ll.InputSpec.imagenet(32)
    assert ll.InputSpec.parse("cifar10_dd@32") == ll.InputSpec.cifar10_dd(32)
    assert ll.InputSpec.parse("0.5,0.5,0.5/0.25,0.25,0.25") == ll.InputSpec((0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ValueError, match="expected 'imagenet'"):
        ll.InputSpec.parse("clip")
    with pytest.raises(TypeError, match="InputSpec"):
        ll.with_input_spec(torch.nn.Linear(2, 2), ((0.5,) * 3, (0.5,) * 3))


def test_plain_state_dict_teacher_needs_an_input_spec(models_dir):
    path = models_dir / "cifar10-resnet20-12fca82f.th"
    with pytest.raises(ValueError, match="records no input normalisation; pass `input_spec=`"):
        ll.load_teacher(path)
    assert ll.load_teacher(path, input_spec=ll.InputSpec.imagenet(32)).input_spec.image_size == (32, 32)


def test_adapter_config_round_trips_through_the_adapter_header(make_projector, tmp_path):
    config = ll.AdapterConfig(image_rank=3, image_alpha=6.0, head_rank=5, head_alpha=2.5, targets=("conv", "attnpool"),
                              head_mode="additive")
    projector = make_projector(**dataclasses.asdict(config))
    info = projector.info()
    assert AdapterInfo.from_metadata(info.to_metadata()).config == config == projector.config
    assert ll.read_adapter(projector.save_pretrained(tmp_path / "adapter"))[0].config == config
    assert ll.AdapterConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown AdapterConfig fields"):
        ll.AdapterConfig.from_dict({"rank": 3})


@pytest.mark.parametrize("cls,bad,match", [
    (ll.AdapterConfig, {"image_rank": 0}, "`image_rank`"),
    (ll.AdapterConfig, {"targets": ("mlp",)}, "`targets`"),
    (ll.FitConfig, {"val_fraction": 1.0}, "`val_fraction`"),
    (ll.FitConfig, {"lr": 0}, "`lr`"),
    (ll.TeacherConfig, {"epochs": 0}, "`epochs`"),
    (ll.DistillConfig, {"patches_per_image": 3}, "`patches_per_image`"),
    (ll.DistillConfig, {"crop_scale": (0.5, 2.0)}, "`crop_scale`"),
    (ll.EvalProtocol, {"eval_from": 1.0}, "`eval_from`"),
])
def test_config_errors_name_the_argument(cls, bad, match):
    with pytest.raises(ValueError, match=match):
        cls(**bad)


def test_configs_round_trip_through_dicts():
    from lightlabel.configs import config_to_dict

    for config in (ll.FitConfig(epochs=3, image_size=64), ll.EvalProtocol.rded(ipc=10, num_classes=10),
                   ll.AugmentConfig.rded(2)):
        assert type(config).from_dict(config.to_dict()) == config
    assert config_to_dict(ll.TeacherConfig(save_epochs=(1, 2), epochs=3)) == {
        **config_to_dict(ll.TeacherConfig()), "save_epochs": [1, 2], "epochs": 3}
    assert ll.TeacherConfig(epochs=41).checkpoint_epochs == (1, 6, 11, 16, 21, 26, 31, 36, 41)


@pytest.mark.parametrize("command,cls,prefix", [("fit", ll.FitConfig, ""), ("fit", ll.AdapterConfig, ""),
                                                ("fit", ll.TeacherConfig, "teacher-"), ("distill", ll.DistillConfig, ""),
                                                ("train", ll.EvalProtocol, ""), ("storage", ll.LabelCompression, "")])
def test_every_scalar_config_field_has_a_cli_flag(command, cls, prefix):
    sub = next(a for a in _parser()._actions if a.dest == "command").choices[command]
    flags = {opt for action in sub._actions for opt in action.option_strings}
    skipped = {"seed", "name", "source", "augment", "student_input"}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in skipped
               and f"--{prefix}{f.name.replace('_', '-')}" not in flags]
    assert not missing, f"{command}: no flag for {cls.__name__} fields {missing}"


CONFIGS = [ll.AdapterConfig(label_size=32, targets=("conv", "attnpool")), ll.AugmentConfig.rded(2),
           ll.EvalProtocol.rded(ipc=10, num_classes=10), ll.EvalProtocol.helio(), ll.FitConfig(image_size=32),
           ll.TeacherConfig(save_epochs=(1, 3), low_res=True), ll.DistillConfig(ipc=2), ll.LabelCompression(topk=3),
           ll.FactorizeConfig(iterations=3)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_through_its_one_serialisation(config):
    import json

    data = json.loads(json.dumps(config.to_dict()))  # JSON-ready
    assert type(config).from_dict(data) == config
    with pytest.raises(ValueError, match="unknown .* fields"):
        type(config).from_dict({**data, "no_such_field": 1})


def _wrong_value(hint) -> object:
    """A value of the wrong type for a field: a str where numbers, flags, tuples or configs go, an int for a str."""
    return 3 if hint is str else "x"


@pytest.mark.parametrize("cls", sorted({type(c) for c in CONFIGS}, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_field_is_validated_against_a_wrong_type(cls):
    import typing

    hints = typing.get_type_hints(cls)
    unchecked = []
    for f in dataclasses.fields(cls):
        try:
            cls(**{f.name: _wrong_value(hints[f.name])})
        except (ValueError, TypeError) as e:
            assert f"`{f.name}`" in str(e), f"{cls.__name__}.{f.name}: the error does not name the field: {e}"
        else:
            unchecked.append(f.name)
    assert not unchecked, f"{cls.__name__} accepts a wrong type for {unchecked}"
