"""The command line through click's CliRunner: the log format, --json, and bad input."""

import json
import re

import pytest
from click.testing import CliRunner

from gpunet.cli import cli
from tests.clitools import run

LOG_LINE = re.compile(r"^Epoch:  (\d+)    Loss:  (\S+)$")



def test_default_train_prints_the_tutorials_lines_and_a_summary():
    r = run("train", "--backend", "cpu")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    epochs = [LOG_LINE.match(line) for line in lines[:-1]]
    assert all(epochs), lines
    assert [int(m[1]) for m in epochs] == list(range(10, 201, 10))
    # seven significant digits, as R's cat prints them: 235.5776, 117.956, 99.58307
    for m in epochs:
        digits = m[2].replace(".", "").lstrip("0")
        assert len(digits) <= 7 and float(m[2]) == float(f"{float(m[2]):.7g}")
    summary = lines[-1]
    for part in ("cpu", "float32", "seed 42", "200 epochs", "per epoch", "final loss"):
        assert part in summary


def test_json_output_has_the_documented_keys():
    r = run("train", "--backend", "cpu", "--json", "--epochs", "30")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    for key in ("config", "backend", "device", "versions", "losses", "final_loss", "train_seconds", "seconds_per_epoch"):
        assert key in out
    assert out["backend"] == "cpu" and out["config"]["epochs"] == 30
    assert [e for e, _ in out["losses"]] == [10, 20, 30]
    assert out["final_loss"] < out["losses"][0][1]
    assert 0 < out["seconds_per_epoch"] <= out["train_seconds"]


def test_quiet_prints_only_the_summary():
    r = run("train", "--backend", "cpu", "-q")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1


def test_options_reach_the_network():
    r = run("train", "--backend", "cpu", "--json", "--hidden", "16,8", "--d-in", "5", "--d-out", "2", "--n", "64",
            "--dtype", "float64", "--loss", "mse", "--init", "he", "--log-every", "5", "--epochs", "10", "--seed", "3",
            "--batch-size", "16", "--optimizer", "adam", "--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-7",
            "--val-split", "0.25", "--activation", "tanh", "--weight-decay", "0.01", "--early-stop", "2")
    cfg = json.loads(r.stdout)["config"]
    assert cfg == {"n": 64, "d_in": 5, "hidden": [16, 8], "d_out": 2, "epochs": 10, "lr": 1e-4, "seed": 3,
                   "dtype": "float64", "loss": "mse", "init": "he", "log_every": 5, "batch_size": 16,
                   "optimizer": "adam", "momentum": 0.9, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "val_split": 0.25,
                   "activation": "tanh", "weight_decay": 0.01, "early_stop": 2, "defaults": "tutorial"}


@pytest.mark.parametrize(
    "args, says",
    [
        (["--n", "0"], "--n"),
        (["--d-in", "-3"], "--d-in"),
        (["--d-out", "0"], "--d-out"),
        (["--hidden", "0"], "--hidden"),
        (["--hidden", "32,-1"], "--hidden"),
        (["--hidden", "32,,8"], "--hidden"),
        (["--hidden", "abc"], "--hidden"),
        (["--hidden", ""], "--hidden"),
        (["--epochs", "0"], "--epochs"),
        (["--log-every", "0"], "--log-every"),
        (["--lr", "0"], "--lr"),
        (["--lr", "-1e-3"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "fast"], "--lr"),
        (["--n", "1.5"], "--n"),
        (["--backend", "tpu"], "--backend"),
        (["--dtype", "float16"], "--dtype"),
        (["--loss", "l1"], "--loss"),
        (["--init", "xavier"], "--init"),
        (["--no-such-option"], "no-such-option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, says):
    r = run("train", "--backend", "cpu", *args)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], r.stderr


def test_divergence_names_the_epoch_suggests_a_smaller_lr_and_exits_3():
    r = run("train", "--backend", "cpu", "--lr", "1", "--epochs", "40")
    assert r.exit_code == 3
    line = r.stderr.strip()
    assert "\n" not in line and "epoch 10 " in line and "--lr" in line
    assert "Loss:  nan" not in r.stdout and "inf" not in r.stdout


def test_help_documents_every_option():
    r = run("train", "--help")
    assert r.exit_code == 0
    for opt in ("--backend", "--device", "--n", "--d-in", "--hidden", "--d-out", "--epochs", "--lr", "--seed",
                "--dtype", "--loss", "--init", "--log-every", "--json", "--quiet"):
        assert opt in r.stdout
    assert run("--help").exit_code == 0 and run("--version").exit_code == 0


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("GPUNET_BACKEND", "cpu")
    r = CliRunner().invoke(cli, ["train", "--json", "--epochs", "10"])
    assert json.loads(r.stdout)["backend"] == "cpu"
    monkeypatch.setenv("GPUNET_BACKEND", "quantum")
    r = CliRunner().invoke(cli, ["train", "--epochs", "10"])
    assert r.exit_code == 2 and "--backend" in r.stderr
