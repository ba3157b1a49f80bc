"""select_teachers picks the checkpoints that teach best (issue 30), on a toy trajectory whose answer is built in."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import lightlabel as ll
from lightlabel.data import TensorImageDataset

COLOURS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
SPEC = ll.InputSpec((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 16)


class ColourTeacher(nn.Module):
    """Labels an image by its mean colour: class c is colour COLOURS[c]. ``permute`` names the wrong classes
    systematically; ``noise`` makes the logits pure noise of the same scale."""

    def __init__(self, permute: bool = False, noise: bool = False) -> None:
        super().__init__()
        self.register_buffer("colours", COLOURS.roll(1, 0) if permute else COLOURS)
        self.noise = noise
        self.input_spec = SPEC
        self.classes = ["red", "green", "blue", "yellow"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((2, 3))
        logits = -10 * torch.cdist(mean, self.colours)
        if self.noise:
            g = torch.Generator(device=x.device).manual_seed(int(x.sum().item() * 1000) % 2**31)
            return torch.randn(logits.shape, generator=g) * 3
        return logits


def _images(n: int, seed: int) -> TensorImageDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(n)
    pixels = COLOURS[labels][:, :, None, None] * 0.7 + torch.rand(len(labels), 3, 16, 16, generator=g) * 0.3
    return TensorImageDataset((pixels * 255).round().to(torch.uint8), labels, ["red", "green", "blue", "yellow"])


def test_the_constructed_best_candidate_is_chosen(tmp_path):
    train, held_out = _images(3, 0), _images(10, 1)
    distilled = ll.random_subset(train, 2, seed=0)
    trajectory = [ColourTeacher(noise=True), ColourTeacher(permute=True), ColourTeacher(), ColourTeacher(permute=True)]
    protocol = ll.EvalProtocol.helio(student="cifar_resnet20", epochs=60, batch_size=8)
    selection = ll.select_teachers(trajectory, distilled, protocol, val_set=held_out, candidates=[(0,), (1,), (2,),
                                   (1, 2, 3)], fraction=1 / 3, progress=False)
    tops = {tuple(e["candidate"]): e["top1"] for e in selection.evidence}
    assert selection.choice == (2,) and selection.teachers == [trajectory[2]], tops
    assert tops[(2,)] > tops[(1,)] and tops[(2,)] > tops[(1, 2, 3)]
    assert selection.steps == 4 * 20 and selection.full_steps == 4 * 60
    assert selection.cost_fraction == pytest.approx(1 / 3)
    record = selection.to_dict()
    assert record["choice"] == (2,) and record["teachers"] == ["ColourTeacher"]


def test_windows_and_bad_arguments():
    assert ll.recipes.select.trajectory_windows(3, sizes=(2,)) == [(0, 1), (1, 2)]
    distilled = ll.random_subset(_images(2, 0), 1)
    teacher = [ColourTeacher()]
    for kwargs, words in ((dict(candidates=[(3,)]), "outside the trajectory"), (dict(fraction=0), "fraction"),
                          (dict(seeds=()), "seeds"), (dict(candidates=[()]), "non-empty"),
                          (dict(candidates=[(0, 0)]), r"\[\(0, 0\)\] name a checkpoint twice")):
        with pytest.raises(ValueError, match=words):
            ll.select_teachers(teacher, distilled, val_set=_images(1, 1), **kwargs)
    with pytest.raises(ValueError, match="empty"):
        ll.select_teachers([], distilled, val_set=_images(1, 1))


def test_fit_adapter_takes_a_selection(make_projector, cifar_train):
    """The selection's checkpoints are what fit_adapter fits to."""
    from lightlabel.data import load_image_folder

    ds = load_image_folder(cifar_train, progress=False)
    teachers = [ll.load_teacher(f"lightlabel:cifar10-resnet20-epoch{e}") for e in (1, 2, 3)]
    selection = ll.TeacherSelection(choice=(2,), teachers=[teachers[2]])
    projector = ll.fit_adapter(ds, projector=make_projector(), teachers=selection,
                               fit=ll.FitConfig(epochs=1, batch_size=40, image_size=32), progress=False)
    assert projector.fit_info["num_teachers"] == 1


def test_cli_select_then_fit_from_the_selection(tmp_path, cifar_train, tiny_rn, capsys):
    from lightlabel.cli import main
    from lightlabel.data import load_image_folder

    ds = load_image_folder(cifar_train, progress=False)
    ll.random_subset(ds, 1, seed=0).save(tmp_path / "d")
    names = [f"lightlabel:cifar10-resnet20-epoch{e}" for e in (1, 2, 3)]
    assert main(["select", *names, "--distilled", str(tmp_path / "d"), "--val", str(cifar_train), "--out",
                 str(tmp_path / "s.json"), "--fraction", str(1 / 300), str(2 / 300), "--device", "cpu",
                 "--quiet"]) == 0
    record = json.loads((tmp_path / "s.json").read_text())
    assert len(record["evidence"]) == 4 and set(record["teachers"]) <= set(names) and record["checkpoints"] == names
    assert all(len(e["top1_by_fraction"]) == 2 for e in record["evidence"]) and record["margin"] >= 0
    out = capsys.readouterr().out
    assert "chosen:" in out and out.count("predicted in full") == 4
    assert main(["fit", str(cifar_train), "--teachers-from", str(tmp_path / "s.json"), "--base", tiny_rn[0],
                 "--pretrained", tiny_rn[1], "--out", str(tmp_path / "a.safetensors"), "--epochs", "1",
                 "--batch-size", "40", "--head-rank", "4", "--quiet", "--device", "cpu"]) == 0
    assert ll.read_adapter(tmp_path / "a.safetensors")[0].fit_info["num_teachers"] == len(record["teachers"])


def test_predicted_top1_reads_the_log_linear_curve_at_the_full_protocol():
    predicted_top1 = ll.recipes.select.predicted_top1
    assert predicted_top1({0.25: 0.6}) == 0.6  # one run: no extrapolation
    # +0.05 per doubling: 1/8 -> 1/4 -> 1/2 -> 1, so 0.40 at 1/8 predicts 0.55 in full, from any two of the runs
    assert predicted_top1([(1 / 8, 0.40), (1 / 4, 0.45)]) == pytest.approx(0.55)
    assert predicted_top1({1 / 8: 0.40, 1 / 2: 0.50}) == pytest.approx(0.55)
    assert predicted_top1({1 / 8: 40.0, 1 / 4: 45.0, 1 / 2: 50.0}) == pytest.approx(55.0)  # a unit is kept
    assert predicted_top1({1 / 6: 0.5, 1 / 2: 0.5}) == pytest.approx(0.5)  # a flat curve stays flat
    for bad, words in (({}, "empty"), ({0: 0.5}, r"in \(0, 1\]"), ({1.5: 0.5}, r"in \(0, 1\]"),
                       ({True: 0.5}, r"in \(0, 1\]"), ([(0.5, 0.4), (0.5, 0.6)], "twice")):
        with pytest.raises(ValueError, match=words):
            predicted_top1(bad)


def test_several_fractions_choose_by_the_extrapolated_top1(monkeypatch):
    """A candidate that trails in short runs but gains more per doubling of the run wins once the curve is read at
    the full protocol; with one fraction the short-run leader wins (the students are stand-ins: top-1 is a
    constructed function of the candidate and the run's epochs)."""
    from types import SimpleNamespace

    curves = {1: (0.50, 0.02), 2: (0.55, 0.08)}  # checkpoint -> (top-1 in full, gain per doubling of the epochs)
    calls = []

    def fake_student(distilled, ensemble, protocol, *, seed, **kwargs):
        full, gain = curves[ensemble.which]
        calls.append((ensemble.which, protocol.epochs, seed))
        top1 = full + gain * math.log2(protocol.epochs / 60)
        return SimpleNamespace(top1=top1, best_top1=top1, iterations=protocol.epochs, seconds_per_iter=0.01)

    monkeypatch.setattr(ll.recipes.select, "train_student", fake_student)
    monkeypatch.setattr(ll.recipes.select, "TeacherEnsemble", lambda teachers: SimpleNamespace(which=teachers[0].which))
    trajectory = []
    for which in (1, 2):
        teacher = ColourTeacher()
        teacher.which = which
        trajectory.append(teacher)
    distilled = ll.random_subset(_images(1, 0), 1)
    protocol = ll.EvalProtocol.helio(student="cifar_resnet20", epochs=60, batch_size=4)
    kwargs = dict(val_set=_images(1, 1), candidates=[(0,), (1,)], progress=False)
    one = ll.select_teachers(trajectory, distilled, protocol, fraction=1 / 6, **kwargs)
    assert one.choice == (0,)  # at 1/6: 0.50 - 0.02 * log2(6) = 0.448 against 0.55 - 0.08 * log2(6) = 0.343
    calls.clear()
    two = ll.select_teachers(trajectory, distilled, protocol, fraction=(1 / 3, 1 / 6), seeds=(0, 1), **kwargs)
    assert two.choice == (1,)  # the curves read in full: 0.50 against 0.55
    assert sorted(calls) == sorted((w, e, s) for w in (1, 2) for e in (10, 20) for s in (0, 1))
    record = two.evidence[1]
    assert [f for f, _ in record["top1_by_fraction"]] == [1 / 6, 1 / 3] and record["top1"] == record[
        "top1_by_fraction"][-1][1]
    assert record["predicted_top1"] == pytest.approx(0.55) and two.evidence[0]["predicted_top1"] == pytest.approx(0.50)
    assert two.steps == 2 * 2 * (10 + 20) and two.cost_fraction == pytest.approx(1 / 6 + 1 / 3)
    assert two.margin == pytest.approx(0.05) and two.to_dict()["margin"] == pytest.approx(0.05)
    assert one.margin == pytest.approx((0.50 - 0.02 * math.log2(6)) - (0.55 - 0.08 * math.log2(6)))
    with pytest.warns(UserWarning, match=r"short runs of \[1, 1\] epochs"):  # 60 epochs: 1/100 and 1/90 give 1 each
        rounded = ll.select_teachers(trajectory, distilled, protocol, fraction=(1 / 100, 1 / 90), **kwargs)
    assert [f for f, _ in rounded.evidence[0]["top1_by_fraction"]] == [1 / 60]  # the share the run had
    with pytest.raises(ValueError, match="twice"):
        ll.select_teachers(trajectory, distilled, protocol, fraction=(1 / 6, 1 / 6), **kwargs)
    with pytest.raises(ValueError, match=r"fraction"):
        ll.select_teachers(trajectory, distilled, protocol, fraction=(1 / 6, 0), **kwargs)
