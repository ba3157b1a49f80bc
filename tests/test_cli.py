"""The lightlabel command line: help, the fit -> distill -> train chain, info, storage, push, demo, errors."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

import lightlabel as ll
from lightlabel.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "--device" in out and "--seed" in out and "--quiet" in out


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "lightlabel", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lightlabel {ll.__version__}"


def test_fit_distill_train_info_chain(tmp_path, cifar_train, models_dir, tiny_rn, capsys):
    adapter = tmp_path / "adapter"
    assert main(["fit", str(cifar_train), "--base", tiny_rn[0], "--pretrained", tiny_rn[1], "--teachers",
                 str(models_dir / "cifar10-resnet20-12fca82f.th"), "--teacher-input", "imagenet@32", "--out", str(adapter),
                 "--epochs", "1", "--batch-size", "30", "--head-rank", "4", "--quiet"]) == 0
    assert "adapter written to" in capsys.readouterr().out
    assert (adapter / "adapter.safetensors").is_file() and (adapter / "README.md").is_file()

    distilled = tmp_path / "distilled"
    with pytest.warns(UserWarning, match="1-patch images by Eq. 7"):  # the CLI passes the warning on
        assert main(["distill", str(cifar_train), "--observer", str(models_dir / "cifar10-resnet56-4bfd9763.th"),
                     "--observer-input", "imagenet@32", "--ipc", "1",
                     "--patches-per-image", "1", "--candidates-per-class", "3", "--crops-per-image", "2", "--projector",
                     str(adapter), "--refine-steps", "2", "--out", str(distilled), "--quiet"]) == 0
    assert "10 distilled images" in capsys.readouterr().out
    assert ll.DistilledSet.load(distilled).manifest["refine"]

    assert main(["train", str(distilled), "--labels", str(adapter), "--student", "cifar_resnet20", "--epochs", "1",
                 "--batch-size", "5", "--val", str(cifar_train), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label_kind"] == "projector" and result["extra_storage_bytes"] > 0
    scored = result["top1"] * 120  # a fraction of the 120 validation images: the validation set was used
    assert result["top1"] == result["history"][-1]["top1"] and abs(scored - round(scored)) < 1e-9
    assert result["protocol"]["name"] == "helio" and result["protocol"]["epochs"] == 1 and result["iterations"] == 2
    assert main(["train", str(distilled), "--labels", str(models_dir / "cifar10-resnet56-4bfd9763.th"), "--teacher-input",
                 "imagenet@32", "--protocol", "rded", "--student", "cifar_resnet20", "--epochs", "1", "--json",
                 "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label_kind"] == "teacher" and result["protocol"]["soft_loss"] == "kl" and result["iterations"] == 1
    assert main(["train", str(distilled), "--labels", "hard", "--student", "cifar_resnet20", "--epochs", "1",
                 "--batch-size", "5", "--quiet"]) == 0
    assert "hard labels" in capsys.readouterr().out

    assert main(["info", str(adapter)]) == 0
    out = capsys.readouterr().out
    for expected in ("lightlabel-tiny-rn", "10: airplane", "rank 8", "rank 4", "fingerprint", "version 1"):
        assert expected in out, expected
    assert main(["info", str(adapter), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == 10


def test_storage_table(capsys, tmp_path, make_projector):
    assert main(["storage", "--classes", "1000", "--ipc", "10", "--epochs", "300"]) == 0
    out = capsys.readouterr().out
    assert "6,000,000,000" in out and "46,796,608" in out and "3,599,108" in out
    path = make_projector().save_pretrained(tmp_path / "a.safetensors")
    assert main(["storage", "--classes", "10", "--ipc", "10", "--epochs", "300", "--adapter", str(path)]) == 0
    assert f"{path.stat().st_size:,}" in capsys.readouterr().out


def test_push_goes_through_push_to_hub(tmp_path, make_projector, monkeypatch, capsys):
    path = make_projector().save_pretrained(tmp_path / "a.safetensors")
    calls = []
    monkeypatch.setattr(ll.Projector, "push_to_hub", lambda self, repo_id, **kw: calls.append((repo_id, kw)) or "ok")
    assert main(["push", str(path), "me/lightlabel-tiny-r8", "--private", "--message", "hi"]) == 0
    assert calls == [("me/lightlabel-tiny-r8", {"private": True, "token": None, "commit_message": "hi"})]


@pytest.mark.parametrize(
    "argv,match",
    [
        (["info", "missing.safetensors"], "no adapter file or folder"),
        (["train", "nowhere", "--labels", "hard"], "not a complete distilled set"),
        (["fit", "nowhere", "--out", "x.safetensors"], "image folder not found"),
        (["storage", "--classes", "10", "--ipc", "0"], "`ipc` (--ipc)"),
        (["storage", "--classes", "0", "--ipc", "1"], "`num_classes` (--classes) must be an int >= 1, got 0"),
        (["storage", "--classes", "10", "--ipc", "1", "--teacher", "resnet-eighteen"],
         "not a torchvision classification model"),
        (["distill", "nowhere", "--observer", "t.th", "--out", "o", "--ipc", "0"], "`ipc` (--ipc) must be an int >= 1"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "error:" in err
    assert match in err


def test_storage_label_bytes_flag_takes_the_library_s_choices(capsys):
    from lightlabel.cli import _parser
    from lightlabel.storage import LABEL_BYTES

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["storage"]
    flag = next(a for a in sub._actions if "--label-bytes" in a.option_strings)
    assert tuple(flag.choices) == LABEL_BYTES
    with pytest.raises(SystemExit) as stop:
        main(["storage", "--classes", "10", "--ipc", "1", "--label-bytes", "3"])
    assert stop.value.code == 2 and "invalid choice: 3" in capsys.readouterr().err


def test_bad_damaged_adapter_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main(["info", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_every_generated_flag_explains_itself():
    """Every flag and positional says what it is; generated ones carry the config field's docstring line."""
    from lightlabel.cli import _parser

    parser = _parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = []
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            # generated flags (dest "<Config>:<field>") and hand-written ones, positionals too
            text = re.sub(r"\(default: .*\)$", "", action.help or "").strip()
            if len(text) < 8 or re.search(r"\bone of [A-Z_]+\b", text):  # not a bare name of a constant either
                bare.append(f"{name} {(action.option_strings or [action.dest])[0]}")
    assert not bare, bare


def test_errors_name_the_flag_beside_the_setting(capsys):
    from lightlabel.cli import main

    assert main(["storage", "--classes", "10", "--ipc", "10", "--topk", "0"]) == 2
    err = capsys.readouterr().err
    assert "`topk` (--topk) must be an int" in err and err.count("\n") == 1
