"""Fuzz the adapter loader with random byte edits and count what happens, by region of the file.

    python benchmarks/fuzz_adapter.py --cases 20000

Every case must either load tensors and header identical to the original (an edit that changes nothing that
matters, e.g. inside the header's space padding) or raise lightlabel.AdapterError. Anything else escaping is
a bug; the script exits non-zero if it sees one. Writes its table into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import struct
import sys
import tempfile
import time

import torch
from _common import ROOT, command, machine

import lightlabel as ll
from lightlabel.io.adapter_format import decode_adapter
from lightlabel.testing import save_tiny_base
from lightlabel.utils.files import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base, ckpt = save_tiny_base(tempfile.mkdtemp())
    projector = ll.Projector(base=base, pretrained=str(ckpt), class_names=[f"class{i}" for i in range(10)],
                             config=ll.AdapterConfig(head_rank=4, targets=("conv", "attnpool")))
    with torch.no_grad():
        for p in projector.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    original = projector.to_bytes()
    info, tensors = decode_adapter(original)
    (header_len,) = struct.unpack("<Q", original[:8])
    header = original[8:8 + header_len]
    pad = len(header) - len(header.rstrip(b" "))
    regions = {"length prefix (8 bytes)": (0, 8), "header JSON": (8, 8 + header_len - pad),
               "header padding": (8 + header_len - pad, 8 + header_len), "tensor data": (8 + header_len, len(original))}
    rng = random.Random(args.seed)
    outcomes: dict[str, collections.Counter] = {r: collections.Counter() for r in regions}
    escaped = []
    start = time.time()
    for case in range(args.cases):
        region = list(regions)[case % len(regions)]
        lo, hi = regions[region]
        if hi <= lo:
            continue
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(lo, hi)
            data[pos] = rng.choice([rng.randrange(256), data[pos] ^ (1 << rng.randrange(8))])
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data))]
        region_key = region
        try:
            got_info, got = decode_adapter(bytes(data), "fuzzed.safetensors")
            same = got_info == info and got.keys() == tensors.keys() and all(torch.equal(got[k], tensors[k]) for k in got)
            outcomes[region_key]["loaded, identical" if same else "LOADED, DIFFERENT (bug)"] += 1
            if not same:
                escaped.append((case, "different tensors"))
        except ll.AdapterError as e:
            msg = str(e)
            kind = ("checksum mismatch" if "checksum" in msg else "not safetensors / damaged header"
                    if "safetensors" in msg else re.sub(r"fuzzed\.safetensors: ", "", msg)[:40])
            outcomes[region_key][f"AdapterError: {kind}"] += 1
        except Exception as e:  # noqa: BLE001 - counting what escapes is the point
            outcomes[region_key][f"ESCAPED {type(e).__name__} (bug)"] += 1
            escaped.append((case, repr(e)))
    seconds = time.time() - start
    rows = []
    for region, counter in outcomes.items():
        for kind, n in sorted(counter.items(), key=lambda kv: -kv[1]):
            rows.append(f"| {region} | {kind} | {n:,} |")
    total = sum(sum(c.values()) for c in outcomes.values())
    table = "\n".join(rows)
    section = f"""<!-- fuzz -->
### Fuzzing the loader

{total:,} random edits (1-3 changed bytes each, or a single bit flip; 10 % also truncated at a random
point) of a valid adapter ({len(original):,} bytes: {header_len:,}-byte header, {len(tensors)} tensors). The
edits cycle through the four regions of the file. Every case either loaded a header and tensors identical
to the original or raised `AdapterError`; **{len(escaped)} escaped** ({seconds:.0f} s).

| region edited | outcome | cases |
|---|---|---|
{table}

_Command: `{command()}`; {machine()}._
<!-- /fuzz -->"""
    path = ROOT / "docs" / "reliability.md"
    text = path.read_text()
    text = re.sub(r"<!-- fuzz -->.*?<!-- /fuzz -->", lambda _: section, text, flags=re.S) if "<!-- fuzz -->" in text else text + "\n" + section + "\n"
    atomic_write_text(path, text)
    print(section)
    if escaped:
        print("ESCAPED:", escaped[:10])
        sys.exit(1)


if __name__ == "__main__":
    main()
