"""The ``lightlabel`` command line: fit, select, distill, factorize, train, info, storage, push, demo, doctor.

User errors (bad arguments, missing or damaged files, a base model that cannot be loaded) end with one line on
stderr and exit code 2 (``LIGHTLABEL_DEBUG=1`` shows the traceback). Every command takes ``--device``, ``--seed``
and ``--quiet`` (no progress bars). ``fit``, ``train`` and ``distill`` can be launched by ``torchrun``: they join
the process group (NCCL on CUDA, gloo on CPU), and only rank 0 writes files and prints.

The settings flags are generated from the config dataclasses of :mod:`lightlabel.configs` (``--epochs`` is
``FitConfig.epochs`` for ``fit``, ``EvalProtocol.epochs`` for ``train``), so a new config field is a new flag with no
edit here. Torch is imported only inside the commands: ``--help``, ``--version`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import configs
from .inputs import InputSpec
from .version import DISTRIBUTION, __version__

__all__ = ["main"]

log = logging.getLogger("lightlabel")


class UserError(Exception):
    """An error in the user's input: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------------------------- config <-> flags
def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_kind(hint: Any) -> tuple[Any, Any] | None:
    """``(type, nargs)`` for a config field's type hint, or ``None`` when it has no flag form."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _flag_kind(inner[0]) if len(inner) == 1 else None
    if hint in (int, float, str):
        return hint, None
    if hint is bool:
        return _bool, None
    if typing.get_origin(hint) is tuple and args:
        item = args[0]
        if item not in (int, float, str):
            return None
        return item, ("+" if len(args) == 2 and args[1] is Ellipsis else len(args))
    return None


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "", skip: Sequence[str] = (),
                     title: str | None = None) -> None:
    """Add one ``--<prefix><field>`` flag per field of the dataclass ``cls`` (default: the config's own default)."""
    group = parser.add_argument_group(title or f"{cls.__name__} settings (lightlabel.configs.{cls.__name__})")
    hints = typing.get_type_hints(cls)
    docs = configs.field_docs(cls)
    for f in dataclasses.fields(cls):
        kind = _flag_kind(hints[f.name])
        if f.name in skip or kind is None:
            continue
        typ, nargs = kind
        default = f.default if f.default is not dataclasses.MISSING else "see the docs"
        text = _plain(docs.get(f.name, ""))
        group.add_argument(f"--{prefix}{f.name.replace('_', '-')}", dest=f"{cls.__name__}:{f.name}", type=typ,
                           nargs=nargs, default=None, metavar=f.name.upper(),
                           help=f"{text} (default: {default})".replace("%", "%%").strip())


def _plain(text: str) -> str:
    """A docstring fragment as plain text for ``--help``: no reST roles or double backticks."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return text.replace("``", "")


def config_overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line, as keyword overrides."""
    out = {}
    for key, value in vars(args).items():
        name, _, field_name = key.partition(":")
        if name == cls.__name__ and value is not None:
            out[field_name] = tuple(value) if isinstance(value, list) else value
    return out


# ---------------------------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


#: name -> (the function that adds its arguments, its help, description and epilog), in the order of ``--help``
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], dict[str, str | None]]] = {}


def _command(name: str, *, help: str, description: str | None = None, epilog: str | None = None):
    """Register the decorated function as the argument builder of the subcommand ``name``."""
    def register(add: Callable[[argparse.ArgumentParser], None]) -> Callable[[argparse.ArgumentParser], None]:
        _COMMANDS[name] = (add, {"help": help, "description": description, "epilog": epilog})
        return add
    return register


def _input_spec(text: str) -> InputSpec:
    try:
        return InputSpec.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


INPUT_HELP = ("input normalisation of plain teacher state dicts, which record none: 'imagenet', 'cifar10' or "
              "'m1,m2,m3/s1,s2,s3', optionally '@SIZE' (akamaster's CIFAR-10 ResNets: imagenet@32)")


@_command("fit", help="fit an adapter to weak teachers (trains them if none given)",
          description="Fit a projector's adapter to (weak) teachers on DATA, an ImageFolder (HeLlO Eq. 5).",
          epilog="examples:\n  lightlabel fit imagenet/train --teachers t/teacher-epoch0*.pt --out a.safetensors\n"
                 "  lightlabel fit imagenette/train --base RN50-quickgelu --pretrained openai \\\n"
                 "      --teacher-epochs 10 --out imagenette-adapter/")
def _add_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="training ImageFolder (root/<class>/<image>)")
    p.add_argument("--out", required=True, help="adapter .safetensors file, or a folder (adds a model card)")
    p.add_argument("--base", default="RN50-quickgelu", help="open_clip model name (default: RN50-quickgelu)")
    p.add_argument("--pretrained", default="openai", help="open_clip tag or checkpoint path (default: openai)")
    p.add_argument("--teachers", nargs="*", default=None, help="teacher checkpoints or names (torchvision:resnet18, "
                                                               "timm:NAME, lightlabel:NAME; default: train weak teachers)")
    p.add_argument("--teachers-from", default=None, help="a selection JSON written by `lightlabel select`: fit to the "
                                                          "checkpoints it chose")
    p.add_argument("--teacher-input", type=_input_spec, default=None, help=INPUT_HELP)
    p.add_argument("--class-names", default=None, help="file with one class name per line (default: folder names)")
    p.add_argument("--imagenet-names", action="store_true",
                   help="folders are ImageNet WordNet ids: use readable ImageNet names")
    p.add_argument("--text-embeddings", default=None,
                   help="safetensors file with one [C, d] tensor of class text embeddings (instead of the text tower)")
    p.add_argument("--work-dir", default=None, help="fit state and teachers, for resuming (default: <out>.work)")
    add_config_flags(p, configs.AdapterConfig)
    add_config_flags(p, configs.FitConfig, skip=("seed",))
    add_config_flags(p, configs.TeacherConfig, prefix="teacher-", skip=("seed",),
                     title="TeacherConfig settings, when no --teachers are given (lightlabel.configs.TeacherConfig)")


def _observer_command(name: str, *, help: str, description: str, example: str, role: str, out: str, config: type):
    """Register a command that selects images from DATA with an observer teacher: DATA, --observer, --observer-input,
    --out and the config's flags (not its seed: --seed comes with the common flags), then the decorated function's."""
    def register(add_own: Callable[[argparse.ArgumentParser], None]) -> Callable[[argparse.ArgumentParser], None]:
        def add(p: argparse.ArgumentParser) -> None:
            p.add_argument("data", help="training ImageFolder")
            p.add_argument("--observer", required=True, help=f"teacher checkpoint or name (torchvision:resnet18, "
                                                             f"timm:NAME, lightlabel:NAME) that {role}")
            p.add_argument("--observer-input", type=_input_spec, default=None, help=INPUT_HELP)
            p.add_argument("--out", required=True, help=out)
            add_config_flags(p, config, skip=("seed",))
            add_own(p)
        epilog = f"example:\n  lightlabel {name} cifar10/train --observer resnet56.th --observer-input imagenet@32 {example}"
        _command(name, help=help, description=description, epilog=epilog)(add)
        return add_own
    return register


@_observer_command("distill", description="Select, stitch and optionally refine distilled images from DATA.",
                   help="build distilled images (RDED + Eq. 7 refinement)", config=configs.DistillConfig,
                   example="--ipc 10 --patches-per-image 1 --out distilled/", role="scores the patches",
                   out="output folder (ImageFolder of PNGs + manifest.json)")
def _add_distill(p: argparse.ArgumentParser) -> None:
    """The Eq. 7 refinement's labeller, on top of the observer's arguments."""
    p.add_argument("--projector", default=None, help="adapter for the Eq. 7 refinement")


@_observer_command("factorize", help="learn factorised distilled images (HaBa bases + hallucinators)",
                   description="Learn a few bases per class and shared hallucinators from DATA (HaBa with "
                               "distribution matching); every (basis, hallucinator) pair is a training image.",
                   example="--bases-per-class 5 --out factorized.safetensors", role="selects the initial bases (RDED)",
                   out="the factorised set's .safetensors file", config=configs.FactorizeConfig)
def _add_factorize(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", default=None, help="state for resuming (default: <out>.work)")


@_command("train", help="train a student on a distilled set, report top-1",
          description="Train a student on DISTILLED with online projector or teacher labels, stored "
                      "labels, or hard labels, under an evaluation protocol (RDED's or HeLlO's preset).",
          epilog="examples:\n  lightlabel train distilled/ --labels adapter.safetensors --val cifar10/test\n"
                 "  lightlabel train distilled/ --labels resnet56.th --teacher-input imagenet@32 "
                 "--protocol rded --val cifar10/test\n"
                 "  lightlabel train distilled/ --labels hard --epochs 50 --val cifar10/test")
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("distilled", help="a distilled set folder (from `lightlabel distill`) or a factorised set file (from "
                                     "`lightlabel factorize`)")
    p.add_argument("--labels", required=True, help="adapter file/folder/registry name/Hub id, teacher .pt/.th or name "
                                                   "(torchvision:resnet18, timm:NAME, hf-hub:REPO, lightlabel:NAME), "
                                                   "stored-labels folder, or 'hard'")
    p.add_argument("--teacher-input", type=_input_spec, default=None, help=INPUT_HELP)
    p.add_argument("--protocol", choices=configs.EvalProtocol.PRESETS, default="helio",
                   help="evaluation protocol preset (default: helio); the flags below override its fields")
    p.add_argument("--val", default=None, help="validation ImageFolder")
    p.add_argument("--out-dir", default=None, help="save the training state here and resume from it")
    p.add_argument("--save-interval", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between saves of the training state in --out-dir (default 60; 0: every epoch)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_flags(p, configs.EvalProtocol, skip=("name", "source"))


@_command("select", help="choose which checkpoints of a trajectory to imitate",
          description="Short student runs with each candidate group of CHECKPOINTS (a training run's "
                      "checkpoints in order) labelling online; the group that teaches DISTILLED best on "
                      "--val (held-out real training images, not the test split) is chosen.",
          epilog="example:\n  lightlabel select t/teacher-epoch00*.pt --distilled distilled/ --val heldout/ "
                 "--out selection.json\n  lightlabel fit data/train --teachers-from selection.json --out a/")
def _add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="the trajectory's checkpoints (files or names), in training order")
    p.add_argument("--distilled", required=True, help="the distilled set folder the adapter will label")
    p.add_argument("--val", required=True, help="ImageFolder of held-out real training images to score on")
    p.add_argument("--out", required=True, help="JSON file for the choice and the evidence")
    p.add_argument("--teacher-input", type=_input_spec, default=None, help=INPUT_HELP)
    p.add_argument("--fraction", type=float, nargs="+", default=[1 / 6],
                   help="of the protocol's epochs, per short run (default 1/6): each candidate runs at each fraction, "
                        "and with several (e.g. 0.1667 0.3333) the choice is by the top-1 extrapolated to the full "
                        "protocol, at the sum of the fractions' cost")
    p.add_argument("--protocol", choices=configs.EvalProtocol.PRESETS, default="helio",
                   help="evaluation protocol preset (default: helio)")


@_command("info", help="describe an adapter (file, folder or Hub id) or a factorised set",
          epilog="example:\n  lightlabel info org/lightlabel-rn50-quickgelu-imagenet1k-r8")
def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter", help="an adapter .safetensors file, a folder holding one, a Hub repo id, a registry "
                                   "name (lightlabel/cifar10-proxy-rn), or a factorised set's folder")
    p.add_argument("--json", action="store_true", help="print the header as JSON instead of a table")


@_command("storage", help="stored soft labels vs teacher vs adapter, in bytes",
          epilog="examples:\n  lightlabel storage --classes 1000 --ipc 10 --epochs 300\n"
                 "  lightlabel storage --classes 10 --ipc 50 --epochs 300 --adapter adapter.safetensors")
def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classes", dest="num_classes", metavar="CLASSES", type=int, required=True,
                   help="number of classes C (e.g. 1000 for ImageNet-1k)")
    p.add_argument("--ipc", type=int, required=True, help="distilled images per class")
    p.add_argument("--epochs", type=int, default=300, help="student epochs whose views stored labels must cover "
                                                           "(default: 300)")
    p.add_argument("--label-bytes", type=int, default=2, choices=(1, 2, 4, 8),
                   help="bytes per stored logit (1 = int8, 2 = fp16, 4 = fp32, 8 = fp64; default: 2)")
    p.add_argument("--teacher", default="resnet18", help="torchvision teacher architecture")
    p.add_argument("--adapter", default=None, help="an adapter whose size to compare (default: HeLlO's RN50 adapter "
                                                   "layout, LoRA r8 on every conv + head r128, for --classes)")
    add_config_flags(p, configs.LabelCompression, title="a compressed stored-label row (LPLD / LPQLD), e.g. --topk 100 "
                                                         "--values int8 --keep-epochs 0.1")


@_command("doctor", help="versions, device, bases, data and caches, for bug reports",
          description="Print what lightlabel sees on this machine: versions, the device, which bases are "
                      "shipped or cached, the data sources found, and the cache folders with their sizes.",
          epilog="example:\n  lightlabel doctor        # paste its output into a bug report")
def _add_doctor(p: argparse.ArgumentParser) -> None:
    """No arguments but the common ones."""


@_command("push", help="upload an adapter and its model card to the Hub",
          epilog="example:\n  lightlabel push adapter.safetensors me/lightlabel-rn50-quickgelu-imagenet1k-r8")
def _add_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter", help="the adapter .safetensors file or its folder (model card and companions go too)")
    p.add_argument("repo_id", help="the Hub repo to create or update, as owner/name")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", default=None, help="a Hub write token (default: the one `hf auth login` stored, or "
                                                 "HF_TOKEN)")
    p.add_argument("--message", default=None, help="the commit message (default: one naming the adapter)")


@_command("demo", help="the whole pipeline on real CIFAR-10 images, < 15 min on CPU (data: --data, shared "
                        "data or a download)",
          description="Real weak and strong teachers -> fit_adapter -> distill_images (IPC 10) -> students "
                      "with projector, online-teacher and hard labels under the HeLlO protocol, sized for "
                      "a CPU (--full: the paper's sizes).",
          epilog="examples:\n  lightlabel demo\n  lightlabel demo --data path/to/imagenet-subset --work-dir demo/")
def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="ImageFolder root with train/ and val/ (or test/), or a .tar.gz of one (default: CIFAR-10 from "
                        "LIGHTLABEL_DATA or shared/data beside the checkout, else downloaded)")
    p.add_argument("--work-dir", default=None, help="where every stage's state goes (default: ./lightlabel-demo); "
                                                    "a re-run resumes from it")
    p.add_argument("--base", default=None, help="open_clip base (default: RN50-quickgelu/openai if cached, else the proxy)")
    p.add_argument("--pretrained", default=None, help="the base's open_clip pretrained tag or a local checkpoint "
                                                      "(with --base)")
    p.add_argument("--teacher", default=None, help="the strong teacher's checkpoint (default: the real CIFAR-10 ResNet-20; "
                                                             "--full: ResNet-56)")
    p.add_argument("--weak-teachers", nargs="+", default=None, help="weak-teacher checkpoints (default: the packaged "
                                                                     "ones for CIFAR-10)")
    p.add_argument("--no-download", action="store_true", help="never download data or teachers")
    p.add_argument("--full", action="store_true", help="paper-size epochs instead of the CPU-sized defaults")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="lightlabel", formatter_class=fmt,
        description="Online soft labels for dataset distillation: a frozen CLIP model plus a few-MB adapter (HeLlO).",
        epilog="examples:\n  lightlabel demo\n  lightlabel fit data/train --out adapter.safetensors\n"
               "  lightlabel info adapter.safetensors\n  lightlabel storage --classes 1000 --ipc 10 --epochs 300")
    parser.add_argument("--version", action="version", version=f"lightlabel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, texts) in _COMMANDS.items():
        p = sub.add_parser(name, formatter_class=fmt, **texts)
        add(p)
        _common(p)
    return parser


# ---------------------------------------------------------------------------------------------- commands
def _init_distributed(device: str | None) -> bool:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); returns whether it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def _main_process() -> bool:
    from .recipes.loop import is_main_process

    return is_main_process()


def _echo(*args) -> None:
    """print() on the main process only (every rank runs the command under torchrun)."""
    if _main_process():
        print(*args)


def _load_names(args) -> list[str] | None:
    if args.class_names:
        return [line.strip() for line in Path(args.class_names).read_text().splitlines() if line.strip()]
    return None


def load_labels(spec: str, *, teacher_input: InputSpec | None = None):
    """A label source from a string: ``"hard"``, a stored-labels folder, a teacher checkpoint
    (``.pt``/``.pth``/``.th``), a pretrained teacher by name (``torchvision:``, ``timm:``, ``hf-hub:``,
    ``lightlabel:``), or an adapter (file, folder, registry name or Hub id)."""
    from .labeling.named import labeller_from_string

    return labeller_from_string(spec, teacher_input=teacher_input)


def cmd_fit(args) -> None:
    from .core.proxy import imagenet_class_names
    from .data import ImageFolderDataset
    from .recipes.fit import fit_adapter

    adapter = configs.AdapterConfig(**config_overrides(args, configs.AdapterConfig))  # settings first
    fit = configs.FitConfig(**config_overrides(args, configs.FitConfig), seed=args.seed)
    teacher_cfg = configs.TeacherConfig(**config_overrides(args, configs.TeacherConfig), seed=args.seed)
    dataset = ImageFolderDataset(args.data)
    names = _load_names(args)
    if args.imagenet_names:
        names = imagenet_class_names(dataset.classes)
    emb = None
    if args.text_embeddings:
        import safetensors.torch

        tensors = safetensors.torch.load_file(args.text_embeddings)
        if len(tensors) != 1:
            raise UserError(f"--text-embeddings must hold exactly one tensor, found {list(tensors)}")
        emb = next(iter(tensors.values()))
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.name + ".work")
    teachers = args.teachers or None
    if args.teachers_from:
        if teachers:
            raise UserError("give --teachers or --teachers-from, not both")
        teachers = json.loads(Path(args.teachers_from).read_text())["teachers"]
    projector = fit_adapter(dataset, names, teachers=teachers, base=args.base, pretrained=args.pretrained,
                            config=adapter,
                            text_embeddings=emb, fit=fit, teacher_config=teacher_cfg, teacher_input=args.teacher_input,
                            out_dir=work, device=args.device, progress=not args.quiet)
    if not _main_process():
        return
    path = projector.save_pretrained(out)
    info = projector.fit_info
    _echo(f"adapter written to {path} ({projector.adapter_nbytes:,} bytes); held-out agreement with the teachers "
          f"{info.get('final_agreement', float('nan')):.3f}, KL {info.get('final_kl', float('nan')):.4f}")


def cmd_distill(args) -> None:
    from .core.projector import Projector
    from .data import ImageFolderDataset
    from .models import load_teacher
    from .recipes.distill import distill_images

    config = configs.DistillConfig(**config_overrides(args, configs.DistillConfig), seed=args.seed)  # settings first
    data = ImageFolderDataset(args.data)  # then the data, before any download of the observer
    observer = load_teacher(args.observer, input_spec=args.observer_input)
    projector = Projector.from_pretrained(args.projector) if args.projector else None
    out = distill_images(data, observer, config, projector=projector, device=args.device, progress=not args.quiet)
    if not _main_process():
        return
    path = out.save(args.out)
    m = out.manifest
    _echo(f"{len(out)} distilled images ({len(out.classes)} classes x IPC {m['ipc']}) written to {path}: "
          f"{out.storage_nbytes:,} bytes, {1000 * (m['seconds_select_per_image'] + m['seconds_refine_per_image']):.1f} "
          f"ms per image")


def cmd_factorize(args) -> None:
    from .data import ImageFolderDataset
    from .models import load_teacher
    from .recipes.factorize import factorize_images

    config = configs.FactorizeConfig(**config_overrides(args, configs.FactorizeConfig), seed=args.seed)
    observer = load_teacher(args.observer, input_spec=args.observer_input)
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.name + ".work")
    result = factorize_images(ImageFolderDataset(args.data), observer, config, out_dir=work, device=args.device,
                              progress=not args.quiet)
    if not _main_process():
        return
    result.save(out)
    _echo(f"{result}: {result.storage_nbytes:,} bytes ({len(result.bases)} uint8 bases, {result.num_hallucinators} "
          f"fp16 hallucinators of {result.hallucinators.num_parameters():,} parameters) written to {out}")


def _training_set(path: str):
    from .sets import DistilledSet, FactorizedSet

    return FactorizedSet.load(path) if Path(path).is_file() else DistilledSet.load(path)


def cmd_train(args) -> None:

    from .recipes.student import train_student

    distilled = _training_set(args.distilled)
    labels = load_labels(args.labels, teacher_input=args.teacher_input)
    overrides = config_overrides(args, configs.EvalProtocol)
    f = distilled.patches_per_side
    ipc = distilled.num_epoch_images // len(distilled.classes)
    protocol = configs.EvalProtocol.preset(args.protocol, ipc=ipc, num_classes=len(distilled.classes),
                                           patches_per_side=f, **overrides)
    result = train_student(distilled, labels, protocol, val_set=args.val, seed=args.seed, out_dir=args.out_dir,
                           device=args.device, progress=not args.quiet, save_interval_s=args.save_interval)
    if args.json:
        _echo(json.dumps(dataclasses.asdict(result), indent=1))
    else:
        _echo(f"student {protocol.student}, {result.label_kind} labels, {protocol.name} protocol, {result.iterations} "
              f"steps: top-1 {result.top1:.4f} (best of last evaluations {result.best_top1:.4f}); "
              f"{result.seconds_per_iter:.3f} s/iteration; extra storage {result.extra_storage_bytes:,} bytes")


def cmd_select(args) -> None:

    from .data import ImageFolderDataset
    from .models import load_teacher
    from .recipes.select import select_teachers
    from .utils.files import atomic_write_text

    distilled = _training_set(args.distilled)
    trajectory = [load_teacher(c, input_spec=args.teacher_input) for c in args.checkpoints]
    f = distilled.patches_per_side
    protocol = configs.EvalProtocol.preset(args.protocol, ipc=distilled.num_epoch_images // len(distilled.classes),
                                           num_classes=len(distilled.classes), patches_per_side=f)
    selection = select_teachers(trajectory, distilled, protocol, val_set=ImageFolderDataset(args.val),
                                fraction=args.fraction, seeds=(args.seed,), device=args.device, progress=not args.quiet)
    record = {**selection.to_dict(), "teachers": [args.checkpoints[i] for i in selection.choice],
              "checkpoints": list(args.checkpoints), "protocol": protocol.to_dict()}
    if _main_process():
        atomic_write_text(Path(args.out), json.dumps(record, indent=1))
    for e in selection.evidence:
        runs = ", ".join(f"{t:.4f} at {f:.3g}" for f, t in e["top1_by_fraction"])
        predicted = f"; predicted in full {e['predicted_top1']:.4f}" if len(e["top1_by_fraction"]) > 1 else ""
        _echo(f"checkpoints {[args.checkpoints[i] for i in e['candidate']]}: top-1 {runs} of the epochs "
              f"({e['steps']} steps){predicted}")
    _echo(f"chosen: {record['teachers']} by {100 * selection.margin:.1f} points over the runner-up "
          f"({selection.cost_fraction:.2f} of running every candidate in full) -> {args.out}")


def cmd_info(args) -> None:
    from .io.adapter_format import read_adapter
    from .io.hub import resolve_adapter

    if Path(args.adapter).is_file() and _is_factorized(Path(args.adapter)):
        return _info_factorized(args)
    path = resolve_adapter(args.adapter)
    info, tensors = read_adapter(path)
    c = info.config
    record = {
        "file": str(path), "bytes": path.stat().st_size, "format_version": info.format_version,
        "lightlabel_version": info.lightlabel_version, "base": info.base_model, "pretrained": info.base_pretrained,
        "base_fingerprint": info.base_fingerprint, "classes": len(info.class_names),
        "class_names": list(info.class_names), "image_size": list(info.image_size), **c.to_dict(),
        "adapted_weights": len(info.lora_weights),
        "parameters": sum(t.numel() for t in tensors.values()), "storage_dtype": info.storage_dtype,
        "text_head": "prompt templates" if info.templates else "precomputed text embeddings",
        "fit_info": {k: v for k, v in info.fit_info.items() if k not in ("history", "config")},
    }
    if args.json:
        _echo(json.dumps(record, indent=1))
        return
    names = ", ".join(info.class_names[:6]) + (", ..." if len(info.class_names) > 6 else "")
    rows = [("file", record["file"]), ("size", f"{record['bytes']:,} bytes ({info.storage_dtype})"),
            ("format", f"version {info.format_version}, written by lightlabel {info.lightlabel_version}"),
            ("base", f"{info.base_model} / {info.base_pretrained}"), ("fingerprint", info.base_fingerprint),
            ("classes", f"{len(info.class_names)}: {names}"), ("image size", f"{info.image_size[0]}x{info.image_size[1]}"),
            ("image LoRA", f"rank {c.image_rank}, alpha {c.image_alpha:g}, {len(info.lora_weights)} weights ({', '.join(c.targets)})"),
            ("head", f"rank {c.head_rank}, alpha {c.head_alpha:g}, {c.head_mode}, {record['text_head']}"),
            ("parameters", f"{record['parameters']:,}")]
    rows += [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in record["fit_info"].items()]
    width = max(len(k) for k, _ in rows)
    _echo("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _is_factorized(path: Path) -> bool:
    from .utils.hashing import safetensors_header

    parsed = safetensors_header(path.read_bytes())
    return parsed is not None and (parsed[0].get("__metadata__") or {}).get("format") == "lightlabel-factorized"


def _info_factorized(args) -> None:
    from .sets import FactorizedSet

    fs = FactorizedSet.load(args.adapter)
    record = {"file": args.adapter, "bytes": Path(args.adapter).stat().st_size, "format": "lightlabel-factorized",
              "classes": len(fs.classes), "class_names": fs.classes, "bases": len(fs.bases),
              "hallucinators": fs.num_hallucinators, "images": len(fs), "image_size": fs.image_size,
              "hallucinator_parameters": fs.hallucinators.num_parameters(),
              "config": fs.manifest.get("config"), "sha256": fs.manifest.get("sha256")}
    if args.json:
        _echo(json.dumps(record, indent=1))
        return
    rows = [("file", record["file"]), ("size", f"{record['bytes']:,} bytes (bases uint8, hallucinators fp16)"),
            ("format", "lightlabel factorised set (HaBa bases + hallucinators)"),
            ("classes", f"{len(fs.classes)}: {', '.join(fs.classes[:6])}{', ...' if len(fs.classes) > 6 else ''}"),
            ("bases", f"{len(fs.bases)} of {fs.image_size}x{fs.image_size} px"),
            ("hallucinators", f"{fs.num_hallucinators}, {record['hallucinator_parameters']:,} parameters each"),
            ("images", f"{len(fs)} (every basis through every hallucinator)"), ("sha256", str(record["sha256"]))]
    width = max(len(k) for k, _ in rows)
    _echo("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def cmd_storage(args) -> None:
    from .core.projector import adapter_layout_nbytes
    from .io.adapter_format import read_adapter
    from .io.hub import resolve_adapter
    from .storage import storage_report

    compression = config_overrides(args, configs.LabelCompression)
    compressed = {}
    if compression:
        c = configs.LabelCompression(**compression)
        name = (f"top-{c.topk} {c.values}" if c.topk else f"all logits {c.values}") + (
            f", labels of {c.num_kept_epochs(args.epochs)} of {args.epochs} epochs" if c.keep_epochs < 1 else "")
        compressed[name] = c
    if args.adapter:
        path = resolve_adapter(args.adapter)
        info, _ = read_adapter(path)
        if len(info.class_names) != args.num_classes:
            log.warning("the adapter has %d classes, not --classes %d", len(info.class_names), args.num_classes)
        adapter_bytes, note = path.stat().st_size, f"file {path.name}"
    else:
        adapter_bytes = adapter_layout_nbytes("RN50-quickgelu", args.num_classes)
        note = "HeLlO's RN50 layout: LoRA r8 on every conv + head r128, fp32 tensors"
    _echo(storage_report(num_classes=args.num_classes, ipc=args.ipc, epochs=args.epochs, label_bytes=args.label_bytes,
                         teacher=args.teacher, adapter_nbytes=adapter_bytes, adapter_note=note, compressed=compressed))


def cmd_push(args) -> None:
    from .core.projector import Projector

    projector = Projector.from_pretrained(args.adapter)
    result = projector.push_to_hub(args.repo_id, private=args.private or None, token=args.token,
                                   commit_message=args.message)
    _echo(f"pushed to https://huggingface.co/{args.repo_id} ({result})")


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def cmd_doctor(args) -> None:
    import importlib.metadata as md
    import platform

    import torch

    from .core.base import cache_root
    from .core.proxy import PROXY_BASE, PROXY_CHECKPOINT
    from .data import default_data_root
    from .demo import STRONG_TEACHERS, WEAK_TEACHERS, _cached_rn50
    from .io.hub import is_offline

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    rows = [("lightlabel", f"{__version__}, distribution {DISTRIBUTION} (pip install {DISTRIBUTION}), "
                           f"{Path(__file__).resolve().parent}"),
            ("python", f"{platform.python_version()} ({sys.executable})"), ("platform", platform.platform())]
    rows += [(d, version(d)) for d in ("torch", "torchvision", "open_clip_torch", "timm", "safetensors",
                                      "huggingface_hub", "einops", "tqdm", "pillow")]
    cuda = torch.cuda.is_available()
    rows.append(("device", f"cuda: {torch.cuda.get_device_name()} ({torch.cuda.device_count()} GPU)" if cuda
                 else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads); no CUDA device"))
    rows.append(("bases", f"{PROXY_BASE}: shipped ({PROXY_CHECKPOINT.stat().st_size:,} bytes)"
                 if PROXY_CHECKPOINT.is_file() else f"{PROXY_BASE}: MISSING from the package"))
    rows.append(("", f"RN50-quickgelu / openai: {'cached' if _cached_rn50() else 'not cached (downloads on first use)'}"))
    rows.append(("demo teachers", f"{len(list(WEAK_TEACHERS.glob('*.pt')))} weak teachers shipped"))
    shared = default_data_root()
    rows.append(("data", f"LIGHTLABEL_DATA={os.environ.get('LIGHTLABEL_DATA', '(unset)')}; shared data: "
                 f"{shared if shared else 'not found beside this folder or the package'}"))
    for name, (file, _) in STRONG_TEACHERS.items():
        where = [p for p in ((shared.parent / "models" / file) if shared else None, cache_root() / "models" / file)
                 if p is not None and p.is_file()]
        rows.append(("", f"strong CIFAR-10 teacher {name}: {where[0] if where else 'not found (downloads on demand)'}"))
    from huggingface_hub import constants

    for name, path in (("lightlabel cache", cache_root()), ("Hugging Face cache", Path(constants.HF_HUB_CACHE))):
        rows.append((name, f"{path} ({_folder_bytes(path):,} bytes)"))
    rows.append(("Hub", "offline (HF_HUB_OFFLINE)" if is_offline() else "online mode (no request made here)"))
    width = max(len(k) for k, _ in rows)
    _echo("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(data=args.data, work_dir=args.work_dir, base=args.base, pretrained=args.pretrained, teacher=args.teacher,
             weak_teachers=args.weak_teachers, full=args.full, seed=args.seed, device=args.device,
             progress=not args.quiet, download=not args.no_download)


COMMANDS = {"fit": cmd_fit, "select": cmd_select, "distill": cmd_distill, "factorize": cmd_factorize, "train": cmd_train, "info": cmd_info, "storage": cmd_storage,
            "push": cmd_push, "demo": cmd_demo, "doctor": cmd_doctor}


def _with_flags(message: str, command: str) -> str:
    """An error message in the command line's words: each backticked setting the command takes as a flag gets the
    flag beside it (```ipc` (--ipc)``)."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = {a.dest.rpartition(":")[2]: a.option_strings[0] for a in sub._actions
             if a.option_strings and a.option_strings[0].startswith("--")}
    return re.sub(r"`(\w+)`", lambda m: f"{m.group(0)} ({flags[m.group(1)]})" if m.group(1) in flags else m.group(0),
                  message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightlabel`` command. Returns the exit code."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    # open_clip logs through the root logger; keep its chatter out without silencing anyone else's warnings
    handler.addFilter(lambda record: f"{os.sep}open_clip{os.sep}" not in record.pathname)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    for noisy in ("httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if args.device is not None:
        import torch

        try:
            torch.device(args.device)
        except RuntimeError as e:
            print(f"lightlabel: error: --device {args.device!r}: {e}", file=sys.stderr)
            return 2
    from .errors import AdapterError, HubError

    distributed = args.command in ("fit", "train", "distill", "factorize", "select") and _init_distributed(args.device)
    try:
        COMMANDS[args.command](args)
    except (UserError, AdapterError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError,
            RuntimeError) as e:
        if os.environ.get("LIGHTLABEL_DEBUG"):
            raise
        hint = (" (set LIGHTLABEL_DEBUG=1 for the traceback)"
                if isinstance(e, (RuntimeError, TypeError)) and not isinstance(e, HubError) else "")
        print(f"lightlabel {args.command}: error: {_with_flags(str(e), args.command)}{hint}".replace("\n", " "),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lightlabel {args.command}: interrupted (resumable commands continue where they stopped)",
              file=sys.stderr)
        return 130
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
