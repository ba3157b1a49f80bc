"""How much of a teacher ensemble the proxy base can express: Imagenette, the committed grid's trajectory.

The projector fitted to Imagenette's later checkpoints (epochs 6-8, ``projector_late_fit10``) teaches 12 points less
than that ensemble run online, and its held-out agreement with it stops rising after 3 of its 10 epochs (0.725 ->
0.735). This measures whether the frozen base's features can tell the ensemble's decisions apart at all, for the early
(epochs 2-4) and the later checkpoints alike, so that the gap can be put on the base or on the fit:

- each ensemble's top-1 on real validation images;
- linear probes (logistic regression on L2-normalised image features, ``_common.probe_accuracy``) on the frozen proxy
  base (no LoRA) and on the fitted adapter's features, trained on ``--probe-train`` training images per class to
  predict the true class or an ensemble's argmax, scored on ``--probe-test`` validation images per class;
- the fitted adapter's own head: its agreement with each ensemble's argmax, and its top-1.

A probe on the frozen features that predicts the later ensemble much less often than the early one says the base's
features, not the length of the fit, bound the imitation (HeLlO fits LoRA into CLIP RN50; the proxy is a
1.6 M-parameter stand-in).

    python benchmarks/base_ceiling.py
"""

from __future__ import annotations

import torch
from _common import ROOT, diagnostic_parser, in_batches, measure_or_report, parse_run_args, probe_accuracy
from helio_table import Run

import lightlabel as ll

OUT = ROOT / "benchmarks" / "results" / "base-ceiling" / "imagenette.json"
STAGES = {"epochs 2-4": "weak", "epochs 6-8": "late", "epoch 8": "final"}


def _per_class(targets: list[int], classes: int, n: int) -> list[int]:
    return [i for c in range(classes) for i in [j for j, t in enumerate(targets) if t == c][:n]]


def measure(run: Run, per_class: int, test_per_class: int) -> dict:
    classes = len(run.train.classes)
    train = run.train.subset(_per_class(run.train.targets, classes, per_class))
    val = run.val.subset(_per_class(run.val.targets, classes, test_per_class))
    x = {"train": train.images.float() / 255, "test": val.images.float() / 255}
    true = {"train": torch.as_tensor(train.targets), "test": torch.as_tensor(val.targets)}
    targets = {"true class": true}
    out: dict = {"ensembles": {}, "logit_std": {}, "p_max": {}, "probes": {}, "fitted_head": {}}
    with torch.no_grad():
        for name, stage in STAGES.items():
            ensemble = ll.load_teachers(run.checkpoints(stage)).eval()
            logits = {k: in_batches(lambda v, e=ensemble: e(e.input_spec.prepare(v)), x[k]) for k in x}
            targets[name] = {k: v.argmax(1) for k, v in logits.items()}
            out["ensembles"][name] = (targets[name]["test"] == true["test"]).float().mean().item()
            out["logit_std"][name] = logits["test"].std(dim=1).mean().item()
            out["p_max"][name] = logits["test"].softmax(1).amax(1).mean().item()
    models = {"frozen proxy base": run.clip_as_is().eval(), "fitted to epochs 6-8 (projector_late_fit10)":
              run.fit(epochs=10, stage="late").eval()}
    for model_name, projector in models.items():
        with torch.no_grad():
            feats = {k: torch.nn.functional.normalize(in_batches(
                lambda v, p=projector: p.encode_image(p.input_spec.prepare(v)), x[k]).float(), dim=1) for k in x}
            if model_name != "frozen proxy base":
                head = in_batches(lambda v, p=projector: p(p.input_spec.prepare(v)).argmax(1), x["test"])
                out["fitted_head"] = {t: (head == y["test"]).float().mean().item() for t, y in targets.items()}
        out["probes"][model_name] = {t: probe_accuracy(feats["train"], y["train"], feats["test"], y["test"], classes)
                                     for t, y in targets.items()}
    out.update(per_class=per_class, test_per_class=test_per_class, trajectory=run.trajectory_id)
    return out


def section(r: dict) -> str:
    names = list(r["probes"]["frozen proxy base"])
    rows = [f"| linear probe on the {m if m.startswith('frozen') else 'adapter ' + m} | "
            + " | ".join(f"{100 * v[t]:.1f}" for t in names) + " |" for m, v in r["probes"].items()]
    rows.append("| the fitted adapter's own head | " + " | ".join(f"{100 * r['fitted_head'][t]:.1f}" for t in names)
                + " |")
    frozen = r["probes"]["frozen proxy base"]
    fitted = next(v for m, v in r["probes"].items() if m != "frozen proxy base")
    drop = 100 * (frozen["epochs 2-4"] - frozen["epochs 6-8"])
    return (
        "## What the proxy base can express of Imagenette's teachers\n\n"
        f"Top-1 on {r['test_per_class']} real validation images per class of each ensemble, online: "
        + ", ".join(f"{n} {100 * v:.1f} %" for n, v in r["ensembles"].items())
        + ". Their labels' scale on those images (the mean over images of the logits' standard deviation across "
        "classes, and of the largest probability): "
        + ", ".join(f"{n} {r['logit_std'][n]:.2f} / {r['p_max'][n]:.2f}" for n in r.get("logit_std", {}))
        + f". How often each model predicts a target on those images (%): linear probes trained on {r['per_class']} "
        "training images per class (logistic regression on L2-normalised image features), and the fitted adapter's "
        "head as it labels.\n\n"
        "| features | " + " | ".join(f"{t}" if t == "true class" else f"{t}' argmax" for t in names) + " |\n"
        "|---|" + "---|" * len(names) + "\n" + "\n".join(rows) + "\n\n"
        f"On the frozen base's features a linear probe matches the later ensemble {abs(drop):.1f} points "
        f"{'less' if drop > 0 else 'more'} often than the early one ({100 * frozen['epochs 6-8']:.1f} against "
        f"{100 * frozen['epochs 2-4']:.1f}); on the fitted adapter's features a probe matches the ensemble it "
        f"imitates {100 * (fitted['epochs 6-8'] - r['fitted_head']['epochs 6-8']):+.1f} points against the "
        f"adapter's own head. Trajectory {r['trajectory']}. Command: `python benchmarks/base_ceiling.py`; results "
        "in `benchmarks/results/base-ceiling/imagenette.json`.")


def main() -> None:
    parser = diagnostic_parser(__doc__)
    parser.add_argument("--probe-train", type=int, default=150, help="training images per class for the probes")
    parser.add_argument("--probe-test", type=int, default=100, help="validation images per class")
    args = parse_run_args(parser)
    measure_or_report(args, OUT, "base-ceiling",
                      lambda: measure(Run("imagenette", args), args.probe_train, args.probe_test), section)

if __name__ == "__main__":
    main()
