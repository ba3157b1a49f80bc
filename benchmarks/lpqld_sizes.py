"""lightlabel's stored-label formula against the sizes LPLD and LPQLD publish (issue 18).

ImageNet-1k, IPC 10, 300 epochs. The published sizes are those of the authors' released label folders (their READMEs
link each size to its download), quoted as "GB"; the settings behind each are read from their code:

- LPLD (He et al., NeurIPS 2024; he-y/soft-label-pruning-for-dataset-distillation): all logits in fp16, the first
  2.5 % of the stored batches kept ("x40") and replayed.
- LPQLD (Xiao & He, TPAMI 2026; he-y/soft-label-pruning-quantization-for-dataset-distillation): 10 % of the batches
  kept, each view's top-k logits in fp16 with int16 indices ("MR-k"; x40 = k 100, x80 = k 50, x200 = k 10).

lightlabel counts the label tensors only (``lightlabel.storage.stored_label_nbytes``); the released folders also
hold each batch's augmentation record and ``torch.save`` headers, which weigh most at small k.

    python benchmarks/lpqld_sizes.py
"""

from __future__ import annotations

from _common import write_section

import lightlabel as ll
from lightlabel.storage import stored_label_nbytes

C, IPC, EPOCHS = 1000, 10, 300
#: (name, published size in "GB", published top-1 %, lightlabel's form of the same setting)
PUBLISHED = [
    ("SRe2L / FKD, all logits fp16", 5.67, 20.1, ll.LabelCompression()),
    ("LPLD x40 (2.5 % of the labels)", 0.14, 20.2, ll.LabelCompression(keep_epochs=0.025)),
    ("LPQLD x40 (MR-100: top-100 fp16, 10 %)", 0.13, 29.6, ll.LabelCompression(topk=100, keep_epochs=0.1)),
    ("LPQLD x80 (MR-50: top-50 fp16, 10 %)", 0.07, 27.3, ll.LabelCompression(topk=50, keep_epochs=0.1)),
    ("LPQLD x200 (MR-10: top-10 fp16, 10 %)", 0.03, 20.0, ll.LabelCompression(topk=10, keep_epochs=0.1)),
]


def main() -> None:
    lines = ["| setting | published (\"GB\") | published top-1 % | lightlabel formula: kept epochs x views x bytes/view"
             " | bytes | GB (10^9) | GiB (2^30) | published / formula (GiB) |", "|---|---|---|---|---|---|---|---|"]
    for name, published, top1, compression in PUBLISHED:
        n = stored_label_nbytes(num_classes=C, ipc=IPC, epochs=EPOCHS, compression=compression)
        kept, per_view = compression.num_kept_epochs(EPOCHS), compression.bytes_per_view(C)
        lines.append(f"| {name} | {published} | {top1} | {kept} x {IPC * C:,} x {per_view:,} | {n:,} | {n / 1e9:.3f} | "
                     f"{n / 2**30:.3f} | {published / (n / 2**30):.2f} |")
    table = "\n".join(lines)
    print(table)
    write_section("lpqld-sizes", "### Stored-label sizes against LPLD's and LPQLD's published ones (ImageNet-1k, IPC 10, "
                  "300 epochs)\n\n" + __doc__.split("    python")[0].strip() + "\n\n" + table + "\n\n"
                  "Per view, lightlabel's top-k cost (k x (2 + 2) bytes in fp16) and the view count (10 % of 300 "
                  "epochs x 10,000 views) are LPQLD's own. The published \"GB\" behave as GiB: all 300 epochs of fp16 "
                  "logits are 6.0e9 bytes = 5.59 GiB, against the published 5.67. The remaining gap is the released "
                  "files' other content (augmentation records, headers), a fixed cost per view that dominates at "
                  "k = 10 (x2.7). LPLD keeps 2.5 % of 300 epochs = 7.5 epochs' batches; lightlabel keeps whole epochs "
                  "and rounds to 8 (+6.7 %). int8 values (`values=\"int8\"`, k x 3 + 4 bytes per view) are "
                  "lightlabel's own further step, not in LPQLD.")


if __name__ == "__main__":
    main()
