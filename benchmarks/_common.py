"""Shared helpers of the benchmark scripts: data, caches, and writing results into docs/results.md."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import lightlabel as ll
from lightlabel.data import default_data_root, extract_image_folder, load_image_folder
from lightlabel.labeling.augment import Augmenter, epoch_views
from lightlabel.labeling.sources import as_label_source
from lightlabel.utils.files import atomic_write_text
from lightlabel.utils.hashing import json_digest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LIGHTLABEL_BENCH_CACHE", ROOT / "benchmarks" / ".cache"))
RESULTS = ROOT / "docs" / "results.md"


def parse_run_args(parser: argparse.ArgumentParser, *, threads: int = 2, quiet: bool = True) -> argparse.Namespace:
    """Add ``--threads`` (torch threads, default ``threads``) and, with ``quiet``, ``--quiet`` (no progress bars);
    parse; then set the torch threads and log INFO with timestamps. Every long-running benchmark starts so."""
    parser.add_argument("--threads", type=int, default=threads, help=f"torch threads (default {threads})")
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    commit()  # the code this process runs: read now, before anyone moves the checkout
    return args


def digest(*parts) -> str:
    """A short fingerprint of JSON-able parts (settings, hashes of inputs): the name of a cache folder."""
    return json_digest(list(parts))[:12]


def data_root() -> Path:
    root = default_data_root()
    if root is None:
        sys.exit("shared/data not found: set LIGHTLABEL_DATA")
    return root


def archive_fingerprint(path: Path) -> str:
    """A short fingerprint of an archive: its size and the sha256 of its first MiB (decoded-data caches carry it)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return hashlib.sha256(head + str(path.stat().st_size).encode()).hexdigest()[:10]


def dataset(name: str, split: str, size: int | None = None, per_class: int | None = None, progress: bool = True):
    """A cached in-memory TensorImageDataset of the shared data: cifar10 (train/test), imagenette (train/val),
    tiny-imagenet (train)."""
    root = data_root()
    archive = {"cifar10": root / "cifar10" / f"{split}.tar.gz", "imagenette": root / "imagenette-128.tar.gz",
               "tiny-imagenet": root / "tiny-imagenet-150.tar.gz"}[name]
    tag = f"{name}-{split}-{size or 'orig'}-{per_class or 'all'}-{archive_fingerprint(archive)}"
    folder = extract_image_folder(archive, CACHE / "data" / f"{name}-{split}-{per_class or 'all'}", split=split,
                                  per_class=per_class)
    return load_image_folder(folder, size=size, cache=CACHE / "data" / f"{tag}.pt", progress=progress)


def machine() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{dev}, torch threads {torch.get_num_threads()}")


@functools.cache
def commit() -> str:
    """The checkout's short commit: ``$LIGHTLABEL_COMMIT`` where set (a copy of the tree without ``.git``, as on a
    GPU machine), else ``git rev-parse``; ``"unknown"`` when neither says. Read once per process, at its start
    (:func:`parse_run_args`): a checkout moved while a long run works is not the code that run imported."""
    if os.environ.get("LIGHTLABEL_COMMIT"):
        return os.environ["LIGHTLABEL_COMMIT"]
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or "unknown"


def device_name(device: torch.device | str | None = None) -> str:
    """What a cell ran on: ``"cuda: <GPU name>"`` or ``"cpu"`` (the library's default device when ``device`` is None)."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


def command() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- key -->`` markers in docs/results.md, atomically."""
    text = RESULTS.read_text() if RESULTS.is_file() else "# Results\n\nEvery figure comes with the command that produced it.\n"
    block = f"<!-- {key} -->\n{body.strip()}\n\n_Generated {time.strftime('%Y-%m-%d %H:%M')} by `{command()}` on {machine()}._\n<!-- /{key} -->"
    pattern = re.compile(rf"<!-- {re.escape(key)} -->.*?<!-- /{re.escape(key)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(RESULTS, text)


def timeit(fn, *, repeat: int = 5, warmup: int = 1, device: torch.device | None = None, calls: int = 1) -> float:
    """Median wall time of one ``fn()`` call in seconds: ``repeat`` timings of ``calls`` back-to-back calls each,
    with one CUDA synchronisation per timing (not per call, which would time the sync)."""
    return statistics.median(timings(fn, repeat=repeat, warmup=warmup, device=device, calls=calls))


def timings(fn, *, repeat: int = 5, warmup: int = 1, device: torch.device | None = None, calls: int = 1) -> list[float]:
    """Seconds per ``fn()`` call of each of ``repeat`` timings of ``calls`` back-to-back calls (see :func:`timeit`)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / calls)
    return times


def interleaved_timings(fns: dict, *, repeat: int = 5, warmup: int = 1, device: torch.device | None = None,
                        calls: int = 1) -> dict[str, list[float]]:
    """:func:`timings` of several callables taken in turns: round ``r`` times every one once, in an order rotated by
    ``r``, so a change in the machine's clocks or load during the run hits every row alike."""
    names = list(fns)
    for name in names:
        timings(fns[name], repeat=0, warmup=warmup, device=device)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name] += timings(fns[name], repeat=1, warmup=0, device=device, calls=calls)
    return out


def bench_projector(base: str, num_classes: int, head_rank: int, *, device: torch.device, seed: int = 0,
                    label_size: int | None = None):
    """A projector on ``base`` with random base weights, random text embeddings and a random non-zero adapter
    (speed does not depend on the values), plus the bare open_clip image tower for comparison. BatchNorm scales are
    set to 1 (open_clip initialises some to 0, which no trained model has and which merge() would not fold), so the
    merged path is the one a real base takes. ``label_size``: label at that resolution."""
    import open_clip

    import lightlabel as ll

    gen = torch.Generator().manual_seed(seed)
    model = open_clip.create_model(base)
    dim = model.visual.output_dim
    projector = ll.Projector(base=base, pretrained=None, class_names=[f"c{i}" for i in range(num_classes)],
                             text_embeddings=torch.randn(num_classes, dim, generator=gen),
                             config=ll.AdapterConfig(head_rank=head_rank, label_size=label_size))
    with torch.no_grad():
        for p in projector.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)
        for m in projector.visual.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
    return projector.to(device).eval(), model.visual.to(device).eval()


def probe_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    weight_decay: float = 1e-4,
) -> float:
    """Test accuracy of a multinomial logistic regression on features (full-batch L-BFGS, L2 penalty)."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(train_x.shape[1], num_classes)
    torch.nn.init.normal_(linear.weight, std=0.01, generator=gen)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(linear(train_x), train_y)
            + weight_decay * linear.weight.square().sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (linear(test_x).argmax(1) == test_y).float().mean().item()


def in_batches(fn, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``fn`` over ``x`` in batches, concatenated."""
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def student_views(distilled: ll.DistilledSet, protocol: ll.EvalProtocol, n: int, seed: int = 0) -> torch.Tensor:
    """The first ``n`` views (N, 3, H, W) in [0, 1] a student of ``seed`` trains on, as ``train_student`` makes them."""
    augmenter = Augmenter(protocol.augment, len(distilled.classes))
    out, epoch = [], 0
    while sum(len(v) for v in out) < n:
        images = distilled.epoch_images(seed, epoch, torch.device("cpu"))
        for view in epoch_views(images, distilled.labels, augmenter, batch_size=protocol.batch_size, seed=seed,
                                epoch=epoch):
            out.append(view.views)
        epoch += 1
    return torch.cat(out)[:n]


@torch.no_grad()
def logits_of(labeller, images: torch.Tensor, num_classes: int, batch: int = 100) -> torch.Tensor:
    """A labeller's float32 logits (N, C) on images (N, 3, H, W) in [0, 1], through its own input spec."""
    source = as_label_source(labeller, num_classes)
    return torch.cat([source.label(images[i:i + batch], epoch=0, step=i // batch).float()
                      for i in range(0, len(images), batch)])


def compare(adapter: torch.Tensor, ensemble: torch.Tensor) -> dict[str, float]:
    """The four measures of ``adapter`` logits (N, C) against the ensemble's on the same images."""
    log_a, log_e = adapter.log_softmax(-1), ensemble.log_softmax(-1)
    return {"agree": float((adapter.argmax(-1) == ensemble.argmax(-1)).float().mean()),
            "kl": float((log_e.exp() * (log_e - log_a)).sum(-1).mean()),
            "mse": float(torch.nn.functional.mse_loss(adapter, ensemble)),
            "spread": float(adapter.std(-1).mean() / ensemble.std(-1).mean())}


def diagnostic_parser(doc: str) -> argparse.ArgumentParser:
    """A diagnostic script's argument parser, with ``--report`` (rebuild its section from the committed result)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only write the section from the committed result")
    return parser


def measure_or_report(args: argparse.Namespace, out: Path, key: str, measure, section) -> None:
    """A diagnostic script's main: unless ``args.report``, ``measure()`` (seeded) writes its result dict to ``out``
    (atomically); then the ``key`` section of docs/results.md is rebuilt from the file, committed or new."""
    if not args.report:
        torch.manual_seed(0)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(measure(), indent=1))
    write_section(key, section(json.loads(out.read_text())))
