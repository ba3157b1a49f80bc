"""Adapter size of the paper's ImageNet-1k configuration, and label agreement of fp16/int8 storage vs fp32.

    python benchmarks/adapter_size.py [--adapter lightlabel/cifar10-proxy-rn] [--data cifar10] [--data-split test]

Part 1 builds RN50-quickgelu (the architecture; weights do not change the size) with LoRA rank 8 on every conv
and a rank-128 head for 1000 classes, and prints the exact parameter count, the bytes in fp32/fp16/int8 and the
adapted layers. HeLlO reports 3.3 MB (Table 1); the target is within 10 % in fp32, half in fp16, about a quarter
in int8. Part 2 stores a fitted adapter (default: the CIFAR-10 adapter shipped in the wheel, on the proxy base; or
any name, folder or file ``ll.Projector.from_pretrained`` takes) in fp16 and int8, reloads it
and compares its labels with fp32 on real images (Imagenette val, or CIFAR-10 test with ``--data cifar10``): top-1 agreement and KL(fp32 || q).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import bench_projector, dataset, write_section

import lightlabel as ll


def paper_config() -> tuple[str, dict]:
    projector, _ = bench_projector("RN50-quickgelu", 1000, 128, device=torch.device("cpu"))
    n = projector.num_adapter_parameters()
    image = sum(p.numel() for lora in projector.image_lora for p in (lora.lora_A, lora.lora_B))
    head = n - image
    sizes = {d: len(projector.to_bytes(d)) for d in ("fp32", "fp16", "int8")}
    layers = projector.lora_weights
    paper = 3.3 * 2**20  # HeLlO's "3.3MB" is in MiB, like its 44.7 MB ResNet-18 (= 46.8e6 bytes)
    text = f"""
### The paper's ImageNet-1k adapter (RN50, LoRA rank 8 on every conv, head rank 128, 1000 classes)

- adapted layers: **{len(layers)} Conv2d weights** of the ModifiedResNet image tower (stem `conv1..3`, every
  bottleneck's `conv1..3` and `downsample.0`); the attention pool is not adapted by default (`targets=("conv",)`).
- parameters: **{n:,}** = {image:,} image LoRA + {head:,} head (`B_h` 1000 x 128, `A_h` 128 x 1024, scale, bias);
  HeLlO Table 3 says 0.8 M.
- file bytes: fp32 **{sizes['fp32']:,}** ({sizes['fp32'] / 2**20:.2f} MiB, {100 * (sizes['fp32'] / paper - 1):+.1f} % vs
  the paper's 3.3 MB read as MiB; {100 * (sizes['fp32'] / 3.3e6 - 1):+.1f} % read as 10^6 bytes), fp16
  **{sizes['fp16']:,}** ({sizes['fp16'] / sizes['fp32']:.2f} x), int8 **{sizes['int8']:,}**
  ({sizes['int8'] / sizes['fp32']:.2f} x; per-rank-channel scales and the header are included).
- first layers: {', '.join(f'`{w}`' for w in layers[:6])}, ...
"""
    print(text)
    return text, sizes


@torch.no_grad()
def agreement(adapter: str, data: str, split: str) -> str:
    ref = ll.Projector.from_pretrained(adapter).eval()
    size = ref.image_size[0]
    val = dataset(data, split, size=size if data == "imagenette" else None)
    x = ref.input_spec.normalize(F.interpolate(val.images.float() / 255, size=ref.image_size, mode="bilinear", antialias=True)
                                 if tuple(val.images.shape[-2:]) != tuple(ref.image_size) else val.images.float() / 255)
    rows = ["| storage | file bytes | top-1 agreement with fp32 | KL(fp32 \\|\\| stored), nats | max logit error |",
            "|---|---|---|---|---|"]
    p_ref = torch.cat([ref(x[i:i + 256]) for i in range(0, len(x), 256)])
    for dtype in ("fp32", "fp16", "int8"):
        path = ref.save_pretrained(Path(tempfile.mkdtemp()) / f"a-{dtype}.safetensors", dtype=dtype)
        q = ll.Projector.from_pretrained(path, text_embeddings=ref.head.text_weight).eval()
        p_q = torch.cat([q(x[i:i + 256]) for i in range(0, len(x), 256)])
        agree = (p_q.argmax(1) == p_ref.argmax(1)).float().mean().item()
        kl = F.kl_div(F.log_softmax(p_q, 1), F.log_softmax(p_ref, 1), log_target=True, reduction="batchmean").item()
        rows.append(f"| {dtype} | {path.stat().st_size:,} | {agree:.4f} | {kl:.2e} | {(p_q - p_ref).abs().max():.2e} |")
    text = f"""
### Label agreement of reduced storage on real images

Adapter `{adapter}` ({ref.base_model}, {ref.num_classes} classes, {size} px), labels on the {len(x):,} real
{data} {split} images, each storage reloaded from its file (int8: one scale per rank channel):

{chr(10).join(rows)}
"""
    print(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default="lightlabel/cifar10-proxy-rn",
                        help="a fitted adapter: a shipped name, a folder or a file")
    parser.add_argument("--data", choices=["imagenette", "cifar10"], default="cifar10",
                        help="real images to label (use the adapter's own dataset)")
    parser.add_argument("--data-split", default="test", help="imagenette: train/val; cifar10: train/test")
    args = parser.parse_args()
    text, _ = paper_config()
    write_section("adapter-size", text + agreement(args.adapter, args.data, args.data_split))


if __name__ == "__main__":
    main()
