"""Why HeLlO's Eq. 7 refinement lowered the student (CIFAR-10, IPC 10, seed 0): what it did to the images.

    python benchmarks/eq7_diagnostics.py --unrefined DIR --refined DIR --adapter DIR [--teacher FILE] [--json OUT]

Reads two distilled sets built from the same RDED selection (``--unrefined``: no refinement; ``--refined``: refined
through ``--adapter`` by ``lightlabel.recipes.distill.refine_images``), and measures on each:

- how far the pixels moved from the unrefined images (mean absolute change, in 0-255 levels);
- the share of each image's variance above the Eq. 7 down/up-sampling band (``||p - up(down(p))||^2 / ||p - mean||^2``,
  the detail a factor-2 down-sampling removes);
- the projector's and the observer teacher's top-1 on the stored images and their mean probability of the image's
  class (the labels the student is trained on come from the projector);
- the two readings of Eq. 7's loss: the literal ``MSE(E_I(p), E_I(p_hat))`` with both sides following ``p``, and the
  loss against the *unrefined* image's features ``MSE(E_I(p0), E_I(p_hat))``, the information the refined image keeps
  of the one it started from.

It then refines the unrefined images once more under the anchored reading (target ``E_I(p0)`` fixed, the optimised
image's down/up-sampled copy matched to it; same steps, learning rate and optimiser) and measures the result the same
way. Writes the JSON to ``--json`` and a section of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import command, commit, machine, parse_run_args, write_section

import lightlabel as ll
from lightlabel.inputs import input_spec_of
from lightlabel.recipes.distill import down_up


def features(projector: ll.Projector, p: torch.Tensor) -> torch.Tensor:
    return projector.visual(projector.input_spec.prepare(p)).float()


@torch.no_grad()
def measure(images: torch.Tensor, labels: torch.Tensor, start: torch.Tensor, projector: ll.Projector,
            teacher: torch.nn.Module | None) -> dict:
    """The figures of one image set (``images`` and ``start``: (N, 3, H, W) float in [0, 1])."""
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    high = (images - down_up(images)).pow(2).sum(dim=(1, 2, 3)) / centred.pow(2).sum(dim=(1, 2, 3)).clamp_min(1e-12)
    probs = projector.head(features(projector, images)).float().softmax(-1)
    out = {
        "mean_abs_change_levels": float((images - start).abs().mean() * 255),
        "high_frequency_share": float(high.mean()),
        "projector_top1": float((probs.argmax(-1) == labels).float().mean()),
        "projector_p_class": float(probs.gather(1, labels[:, None]).mean()),
        "eq7_loss_literal": float(F.mse_loss(features(projector, images), features(projector, down_up(images)))),
        "eq7_loss_vs_unrefined": float(F.mse_loss(features(projector, start), features(projector, down_up(images)))),
        "features_kept_cosine": float(F.cosine_similarity(features(projector, start), features(projector, images)).mean()),
    }
    if teacher is not None:
        t = teacher(input_spec_of(teacher).prepare(images)).float().softmax(-1)
        out["teacher_top1"] = float((t.argmax(-1) == labels).float().mean())
        out["teacher_p_class"] = float(t.gather(1, labels[:, None]).mean())
    return out


def refine_anchored(images: torch.Tensor, projector: ll.Projector, *, steps: int, lr: float) -> torch.Tensor:
    """Eq. 7 with its target fixed at the starting image's features: ``MSE(E_I(p0), E_I(up(down(p))))``."""
    projector.eval().requires_grad_(False)
    with torch.no_grad():
        target = features(projector, images)
    p = images.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    for _ in range(steps):
        loss = F.mse_loss(features(projector, down_up(p)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p.clamp_(0, 1)
    return p.detach()


def float_images(distilled: ll.DistilledSet) -> torch.Tensor:
    return distilled.images.float() / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unrefined", type=Path, required=True)
    parser.add_argument("--refined", type=Path, required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--teacher", default=None, help="the observer's checkpoint (CIFAR-10: the real ResNet-56)")
    parser.add_argument("--teacher-input", default="imagenet@32")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--json", type=Path, default=None)
    args = parse_run_args(parser)
    unrefined, refined = ll.DistilledSet.load(args.unrefined), ll.DistilledSet.load(args.refined)
    if unrefined.fingerprint == refined.fingerprint:
        raise SystemExit("--unrefined and --refined are the same images")
    projector = ll.Projector.from_pretrained(args.adapter).eval()
    teacher = (ll.load_teacher(args.teacher, input_spec=ll.InputSpec.parse(args.teacher_input)).eval()
               if args.teacher else None)
    labels = torch.as_tensor(unrefined.targets).long()
    start = float_images(unrefined)
    t0 = time.perf_counter()
    anchored = refine_anchored(start, projector, steps=args.steps, lr=args.lr)
    sets = {"unrefined (RDED)": start, "Eq. 7 as implemented (both sides follow p)": float_images(refined),
            "Eq. 7 anchored at the unrefined image's features": anchored}
    result = {"sets": {name: measure(x, labels, start, projector, teacher) for name, x in sets.items()},
              "anchored_refine_seconds": time.perf_counter() - t0, "steps": args.steps, "lr": args.lr,
              "unrefined_sha256": unrefined.fingerprint, "refined_sha256": refined.fingerprint,
              "commit": commit(), "machine": machine(), "command": command()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    write_section("eq7-diagnostics", report(result))
    print(report(result))


def report(r: dict) -> str:
    cols = [("mean_abs_change_levels", "pixel change (0-255)", "{:.1f}"),
            ("high_frequency_share", "detail above the factor-2 band", "{:.3f}"),
            ("projector_top1", "projector top-1", "{:.2f}"), ("projector_p_class", "projector p(class)", "{:.2f}"),
            ("teacher_top1", "ResNet-56 top-1", "{:.2f}"), ("teacher_p_class", "ResNet-56 p(class)", "{:.2f}"),
            ("eq7_loss_literal", "Eq. 7 loss, literal", "{:.4f}"),
            ("eq7_loss_vs_unrefined", "Eq. 7 loss vs the unrefined features", "{:.4f}"),
            ("features_kept_cosine", "cosine to the unrefined features", "{:.3f}")]
    cols = [c for c in cols if all(c[0] in m for m in r["sets"].values())]
    lines = ["## What Eq. 7 does to the images (CIFAR-10, IPC 10, seed 0)", "",
             "The 100 RDED images of seed 0 (ResNet-56 observer), refined through `projector_fit10` by HeLlO Eq. 7 "
             f"({r['steps']} Adam steps, lr {r['lr']}, as HeLlO's supplementary A.5 says), measured on the stored "
             "images:", "",
             "| images | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in r["sets"].items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(m[key]) for key, _, fmt in cols) + " |")
    lines += ["", f"Command: `{r['command']}` (commit {r['commit']}); sets {r['unrefined_sha256'][:12]} (unrefined) and "
              f"{r['refined_sha256'][:12]} (refined). The anchored refinement took {r['anchored_refine_seconds']:.0f} s "
              "in this run."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
