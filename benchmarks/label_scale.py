"""The labels' scale under HeLlO's loss: a candidate reason why projector labels taught better than the real
ResNet-56's on CIFAR-10. The grid's ``teacher_div3`` row (the teacher's logits at the projector's spread) tests it,
and refuted it; the ``weak_teachers`` row found the cause, the stage of the teachers the projector imitates
(docs/results.md).

HeLlO's student loss is MSE on the labeller's logits + 0.025 CE (Algorithm 1, line 14; supplementary Table 3). The
MSE term grows with the spread of the labeller's logits, so a confident teacher (large, near one-hot logits) turns
the student's objective into regression onto large numbers, with the CE term negligible, while a softer labeller
gives a smaller, more informative target. This measures, on the first 1,000 views of the HeLlO table's CIFAR-10
IPC-10 run (same distilled set, protocol and seed 0):

- ``ll.label_view_agreement``: source / dominant class, mean p_max, mean logit std over classes, mean entropy;
- at the student's initialisation (ResNet-18, seed 0), the gradient norm of the MSE term and of the 0.025 CE term
  on one batch of 100 views, and their ratio.

    python benchmarks/label_scale.py
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
from _common import ROOT, commit, parse_run_args, write_section
from helio_table import Run
from torch.nn import functional as F

import lightlabel as ll
from lightlabel.labeling.augment import Augmenter, epoch_views
from lightlabel.labeling.sources import as_label_source
from lightlabel.models import build_model
from lightlabel.utils.files import atomic_write_text

OUT = ROOT / "benchmarks" / "results" / "helio" / "cifar10" / "ipc10" / "diagnostics" / "label-scale-seed0.json"


def grad_norms(labels, distilled: ll.DistilledSet, protocol: ll.EvalProtocol) -> dict[str, float]:
    """Gradient norms of the MSE and the weighted CE terms at the student's initialisation, first batch of seed 0."""
    source = as_label_source(labels, len(distilled.classes))
    augmenter = Augmenter(protocol.augment, len(distilled.classes))
    images = distilled.epoch_images(0, 0, torch.device("cpu"))
    view = next(iter(epoch_views(images, distilled.labels, augmenter, batch_size=protocol.batch_size, seed=0, epoch=0)))
    soft = source.label(view.views, epoch=0, step=view.step).float()
    torch.manual_seed(0)
    model = build_model(protocol.student, len(distilled.classes), low_res=True, image_size=32).train()
    out = model(protocol.student_input.normalize(view.views)).float()
    norms = {}
    for name, loss in (("mse", F.mse_loss(out, soft)), ("ce", protocol.ce_weight * F.cross_entropy(out, view.targets))):
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], retain_graph=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads)))
    return {"grad_norm_mse": norms["mse"], "grad_norm_ce": norms["ce"], "ratio": norms["mse"] / norms["ce"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_run_args(parser)
    run = Run("cifar10", args)
    distilled = run.distilled(10)
    protocol = run.protocol("projector")
    labellers = {"online ResNet-56 (teacher row)": run.full_teacher(),
                 "projector (projector row)": run.fit(),
                 "weak-teacher ensemble (weak_teachers row)": [ll.load_teacher(p) for p in run.checkpoints()]}
    rows = {}
    for name, labels in labellers.items():
        a = ll.label_view_agreement(labels, distilled, protocol, views=1000, seed=0)
        rows[name] = {**a, **grad_norms(labels, distilled, protocol)}
        logging.info("%s: %s", name, rows[name])
    atomic_write_text(OUT, json.dumps({"rows": rows, "commit": commit(), "command": "python benchmarks/label_scale.py"},
                                      indent=1))
    lines = ["| labeller | source / dominant class | mean p_max | mean logit std | mean entropy (nats) | "
             "grad norm: MSE | grad norm: 0.025 CE | MSE / CE |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {100 * r['source_class']:.0f} % / {100 * r['dominant_class']:.0f} % | "
                     f"{r['mean_p_max']:.2f} | {r['mean_logit_std']:.2f} | {r['mean_entropy']:.2f} | "
                     f"{r['grad_norm_mse']:.3g} | {r['grad_norm_ce']:.3g} | {r['ratio']:.0f} |")
    write_section("label-scale", "### The labels' scale under HeLlO's loss (CIFAR-10, IPC 10, seed 0)\n\n"
                  + "Measured " + __doc__.split("This measures, ")[1].split("    python")[0].strip() + "\n\n"
                  + "\n".join(lines))


if __name__ == "__main__":
    main()
