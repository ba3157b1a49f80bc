"""What the observer sees in a factorised set (issue 17): does a build keep its bases' class content?

    python benchmarks/factorize_diagnostics.py --set PATH/factorized.safetensors      # measure a finished set
    python benchmarks/factorize_diagnostics.py --iterations 200 --bases-lr 1e-3      # short builds, then measure
    python benchmarks/factorize_diagnostics.py --iterations 200 --hallucinator-init random   # the old initialisation
    python benchmarks/factorize_diagnostics.py --dm-compare SET [SET ...]   # DM's loss: real images vs sets
    python benchmarks/factorize_diagnostics.py --render SET [SET ...]       # docs/factorized-views.png

For each set: the real CIFAR-10 ResNet-56's top-1 on the bases (against each basis's class), on the bases seen
through each hallucinator, and the mean absolute change of the bases from their RDED initialisation (pixels in
[0, 1]). RDED selects the bases as the observer's most confident crops, so they start at 100 %. Writes
``benchmarks/results/factorized/diagnostics/*.json`` (builds: ``build-it<N>-init_<hallucinator init>[-lambda_range<w>].json``;
``build-it200.json`` is the random initialisation, measured before the option existed; finished sets:
``set-it<N>-bases_lr<lr>-init_<init>`` plus every other setting that differs from the defaults, e.g. ``-lr0.001``);
docs/results.md cites them by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from _common import ROOT, commit, data_root, dataset, parse_run_args

import lightlabel as ll
from lightlabel.recipes.factorize import conv_net, dm_loss, range_loss
from lightlabel.utils.files import atomic_write_text

OUT = ROOT / "benchmarks" / "results" / "factorized" / "diagnostics"  # apart from the table's cells


def observer_top1(observer: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 of ``observer`` on uint8 or [0, 1] images (B, 3, H, W) against ``labels`` (B,)."""
    x = images.float()
    x = x / 255 if images.dtype == torch.uint8 else x
    with torch.no_grad():
        return float((observer(observer.input_spec.normalize(x)).argmax(-1) == labels).float().mean())


def bank_output(fs: ll.FactorizedSet, j: int) -> torch.Tensor:
    """Hallucinator ``j``'s unclamped output on every basis, (N, 3, H, W)."""
    with torch.no_grad():
        return fs.hallucinators(fs.bases.float() / 255, torch.full((len(fs.bases),), j))


def basis_correlation(bases: torch.Tensor, views: torch.Tensor) -> float:
    """Mean over images of the Pearson correlation between a view and its basis, both (N, 3, H, W)."""
    b, v = (x.flatten(1) - x.flatten(1).mean(1, keepdim=True) for x in (bases, views.float()))
    return float(((b * v).sum(1) / (b.norm(dim=1) * v.norm(dim=1)).clamp_min(1e-12)).mean())


def measure(observer: torch.nn.Module, fs: ll.FactorizedSet, init: torch.Tensor | None = None) -> dict:
    raw = [bank_output(fs, j) for j in range(fs.num_hallucinators)]  # one batched call per hallucinator
    views = [x.clamp(0, 1) for x in raw]  # what the set's items are (FactorizedSet.generate)
    out = {"bases_top1": observer_top1(observer, fs.bases, fs.labels),
           "views_top1": [observer_top1(observer, v, fs.labels) for v in views],
           # how far each hallucinator's output leaves [0, 1] before the clamp, and the share of clamped values
           "views_range_excess": [float(range_loss(x)) for x in raw],
           "views_clamped": [float(((v <= 0) | (v >= 1)).float().mean()) for v in views],
           # Pearson correlation of each view with its basis over pixels, mean over bases: 1 = the basis itself
           "views_basis_corr": [basis_correlation(fs.bases.float() / 255, v) for v in views],
           "config": fs.manifest.get("config")}
    if init is not None:
        out["mean_abs_change_from_init"] = float((fs.bases.float() - init.float()).abs().mean() / 255)
    return out


def dm_compare(paths: list[Path], nets: int = 5, real_per_class: int = 64, seed: int = 0) -> dict:
    """DM's loss (``dm_loss``, the build's ``L_DD``) against 64 real images per class, under ``nets`` random ConvNets
    (the build's: width 128, depth 3), for: random real training images (as many per class as a build's step
    sends: 2 views of each basis), each set's bases, and each set's views through hallucinators 0 and 1.

    If real photographs score worse than a build's views, DM's optimum is not a set of class-like images, and the
    views' drift is what DM asks for rather than a failure to optimise it.
    """
    train = dataset("cifar10", "train", progress=False)
    targets = torch.as_tensor(train.targets)
    per_class = [(targets == c).nonzero().flatten() for c in range(10)]
    spec = ll.InputSpec.imagenet()
    gen = torch.Generator().manual_seed(seed)

    def images(idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([train[int(i)][0] for i in idx]).float().div(255)

    def draw(c: int, k: int) -> torch.Tensor:
        return images(per_class[c][torch.randint(len(per_class[c]), (k,), generator=gen)])

    sets = {p: ll.FactorizedSet.load(p) for p in paths}
    k = 2 * max(len(fs.bases) // 10 for fs in sets.values())  # real images per class: a step's 2 views per basis
    # per set, per class (normalised): its bases, and its views through hallucinators 0 and 1
    bases = {p: [spec.normalize(fs.bases[fs.labels == c].float() / 255) for c in range(10)] for p, fs in sets.items()}
    views = {}
    for p, fs in sets.items():
        both = [bank_output(fs, h).clamp(0, 1) for h in (0, 1)]
        views[p] = [spec.normalize(torch.cat([v[fs.labels == c] for v in both])) for c in range(10)]
    out: dict = {"real": [], **{str(p): {"bases": [], "views": []} for p in paths}}
    for i in range(nets):
        real = [spec.normalize(draw(c, real_per_class)) for c in range(10)]
        torch.manual_seed(10_000 + i)
        net = conv_net(10, width=128, depth=3, image_size=32).requires_grad_(False)
        with torch.no_grad():
            out["real"].append(float(dm_loss(net, real, [spec.normalize(draw(c, k)) for c in range(10)])))
            for p in sets:
                out[str(p)]["bases"].append(float(dm_loss(net, real, bases[p])))
                out[str(p)]["views"].append(float(dm_loss(net, real, views[p])))
    summary = {"real_images_per_class": k, "real": statistics.mean(out["real"])}
    for p, fs in sets.items():
        summary[str(p)] = {"iterations": fs.manifest["config"]["iterations"], "config": fs.manifest["config"],
                           "bases": statistics.mean(out[str(p)]["bases"]),
                           "views": statistics.mean(out[str(p)]["views"])}
    return {"nets": nets, "per_net": out, "mean": summary}


def render(paths: list[Path], out: Path, classes: int = 5) -> None:
    """One block per set, side by side: for the first basis of ``classes`` classes (rows), the basis and its view
    through every hallucinator (columns), upscaled 2x, written as a PNG to ``out``."""
    from torchvision.utils import make_grid, save_image

    blocks = []
    for p in paths:
        fs = ll.FactorizedSet.load(p)
        h = fs.num_hallucinators
        first = [int((fs.labels == c).nonzero()[0]) for c in range(classes)]
        tiles = [t for i in first for t in [fs.bases[i].float() / 255] + [fs[i * h + j][0] for j in range(h)]]
        grid = make_grid(torch.stack(tiles), nrow=h + 1, padding=1, pad_value=1.0)
        blocks.append(torch.nn.functional.pad(grid, (0, 8, 0, 0), value=1.0))
    image = torch.cat(blocks, dim=2)
    save_image(torch.nn.functional.interpolate(image[None], scale_factor=2, mode="nearest")[0], out)


def from_state(path: Path) -> ll.FactorizedSet:
    """The set an unfinished build holds in its ``factorize-state.pt`` (saved every 50 iterations); the manifest
    gets the config with ``iterations`` set to the iterations done and the build's per-50-iteration loss history."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dict(saved["settings"]["config"])
    params = saved["state"]["params"]
    bank = ll.recipes.factorize.HallucinatorBank(count=cfg["hallucinators"], image_size=params["bases"].shape[-1],
                                                 hidden=cfg["hidden_channels"], init=cfg["hallucinator_init"])
    bank.load_state_dict(params["bank"])
    classes = saved["settings"]["classes"]
    labels = torch.arange(len(classes)).repeat_interleave(cfg["bases_per_class"])  # RDED's order: class by class
    bases = (params["bases"].clamp(0, 1) * 255).round().to(torch.uint8)
    cfg["iterations_planned"], cfg["iterations"] = cfg["iterations"], len(saved["state"]["history"]["items"])
    return ll.FactorizedSet(bases, labels, classes, bank, {"config": cfg, "history_per_50": saved["history"]})


def other_settings(cfg: dict) -> str:
    """The file-name suffix for a set's settings that differ from FactorizeConfig's defaults, e.g. ``-lr0.001``.

    Iterations, bases_lr and the hallucinator init are named apart; a set at the defaults gets no suffix, so the
    files measured before this suffix existed keep their names.
    """
    # lr: 0.01, the hallucinators' default when the first files were named (1e-3 since), so their names still hold
    defaults = {**ll.FactorizeConfig().to_dict(), "lr": 0.01}
    named = {"iterations", "bases_lr", "hallucinator_init", "seed"}
    return "".join(f"-{k}{v}" for k, v in sorted(cfg.items()) if k in defaults and k not in named and defaults[k] != v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, help="a finished factorized.safetensors to measure")
    parser.add_argument("--state", type=Path, help="an unfinished build's factorize-state.pt to measure")
    parser.add_argument("--render", type=Path, nargs="+", metavar="SET",
                        help="draw these sets' bases and views side by side into docs/factorized-views.png")
    parser.add_argument("--dm-compare", type=Path, nargs="+", metavar="SET",
                        help="DM's loss of real images, and of these sets' bases and views (dm_compare)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--bases-lr", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--hallucinator-init", choices=ll.configs.HALLUCINATOR_INITS, default="identity",
                        help="FactorizeConfig.hallucinator_init of the builds (default: identity)")
    parser.add_argument("--lambda-range", type=float, default=0.0, help="FactorizeConfig.lambda_range of the builds")
    parser.add_argument("--lr", type=float, default=0.01,
                        help="the hallucinators' rate of the builds (default 0.01, the rate of the builds measured "
                             "before FactorizeConfig's default became 1e-3; other rates are named in the file)")
    args = parse_run_args(parser, threads=1, quiet=False)
    observer = ll.load_teacher(data_root().parent / "models" / "cifar10-resnet56-4bfd9763.th",
                               input_spec=ll.InputSpec.imagenet(32)).eval()
    if args.render:
        render(args.render, ROOT / "docs" / "factorized-views.png")
        return
    if args.dm_compare:
        results = {"command": "python benchmarks/factorize_diagnostics.py --dm-compare "
                   + " ".join(map(str, args.dm_compare)), "commit": commit(), **dm_compare(args.dm_compare)}
        atomic_write_text(OUT / "dm-compare.json", json.dumps(results, indent=1))
        print(json.dumps(results["mean"], indent=1))
        return
    command = "python benchmarks/factorize_diagnostics.py " + (
        f"--set {args.set}" if args.set else f"--state {args.state}" if args.state else f"--iterations {args.iterations} --bases-lr "
        + " ".join(map(str, args.bases_lr)) + f" --hallucinator-init {args.hallucinator_init}"
        + (f" --lambda-range {args.lambda_range}" if args.lambda_range else "") + f" --lr {args.lr}")
    results: dict = {"command": command, "commit": commit(), "observer": "cifar10-resnet56"}
    if args.set or args.state:
        fs = ll.FactorizedSet.load(args.set) if args.set else from_state(args.state)
        results["set"] = measure(observer, fs)
        state = Path(args.state or Path(args.set).with_name("factorize-state.pt"))  # a finished build keeps it
        if state.is_file():  # the build's loss log per 50 iterations (DM, and L_cos with the adversary)
            results["set"]["history_per_50"] = torch.load(state, map_location="cpu", weights_only=False)["history"]
        cfg = results["set"]["config"]  # sets built before bases_lr existed moved their bases at lr
        init = f"-init_{cfg['hallucinator_init']}" if "hallucinator_init" in cfg else ""  # absent: built before it
        name = (f"{'set' if args.set else 'state'}-it{cfg['iterations']}-bases_lr{cfg.get('bases_lr', cfg['lr'])}"
                f"{init}{other_settings(cfg)}.json")
    else:
        train = dataset("cifar10", "train", progress=False)
        # the RDED initialisation: a 1-iteration build whose learning rates are ~0 returns the bases as selected
        still = ll.FactorizeConfig(iterations=1, adversarial=False, hallucinators_per_iteration=1, lr=1e-12,
                                   bases_lr=1e-12, hallucinator_init=args.hallucinator_init)
        init = ll.factorize_images(train, observer, still, progress=False)
        results["init"] = measure(observer, init)
        for lr in args.bases_lr:
            t0 = time.time()
            config = ll.FactorizeConfig(iterations=args.iterations, bases_lr=lr, hallucinator_init=args.hallucinator_init,
                                        lambda_range=args.lambda_range, lr=args.lr)
            fs = ll.factorize_images(train, observer, config, progress=False)
            results[f"bases_lr={lr}"] = dict(measure(observer, fs, init.bases), seconds=time.time() - t0,
                                             dm_last10=statistics.mean(r["dm"] for r in fs.manifest["history"]))
        name = f"build-it{args.iterations}-init_{args.hallucinator_init}{other_settings(config.to_dict())}.json"
    atomic_write_text(OUT / name, json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
