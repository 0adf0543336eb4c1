"""Tests of the ``descend`` command line and its ``demo`` (descend/cli)."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import torch

from descend.cli import main
from descend.cli.demo import (
    DEFAULT_STEPS,
    OPTIMIZERS,
    ROWS,
    make_optimizer,
    run_demo,
    two_spirals,
)

NAMES = ("SGD", "Adam", "AdamW")


def _quiet_demo(steps: int, seed: int = 0) -> dict[str, dict[str, float]]:
    return run_demo(steps, seed, out=io.StringIO())


def test_the_demo_trains_three_optimizers():
    assert tuple(OPTIMIZERS) == NAMES


def test_default_run_fits_the_spirals():
    """With the default steps (about 2 s on a 2-core CPU), every optimizer fits the
    training set: seed 0 gives SGD 99.3% (loss 0.03), Adam and AdamW 100% (loss < 1e-3)."""
    results = _quiet_demo(DEFAULT_STEPS)
    assert set(results) == set(NAMES)
    initial = results["SGD"]["initial_loss"]
    assert abs(initial - math.log(2)) < 0.1  # an untrained two-class network
    for name, result in results.items():
        assert result["initial_loss"] == initial, name  # the same initial network
        assert result["final_loss"] < 0.1 * initial, name
        assert result["accuracy"] >= 0.95, name
        assert result["ms_per_step"] > 0, name
    assert results["Adam"]["final_loss"] < 0.01
    assert results["AdamW"]["final_loss"] < 0.01


def test_short_run_losses_fall():
    """After 200 steps (seed 0): SGD 0.71 -> 0.56 (its lr decays over the short run),
    Adam and AdamW above 99% accuracy."""
    results = _quiet_demo(200)
    for name, result in results.items():
        assert result["final_loss"] < result["initial_loss"], name
        assert 0.0 <= result["accuracy"] <= 1.0, name
    assert results["Adam"]["accuracy"] >= 0.95
    assert results["AdamW"]["accuracy"] >= 0.95


def test_demo_is_deterministic():
    first, second = _quiet_demo(30, seed=3), _quiet_demo(30, seed=3)
    for name in NAMES:
        for key in ("initial_loss", "final_loss", "accuracy"):
            assert first[name][key] == second[name][key], (name, key)
    other = _quiet_demo(30, seed=4)
    assert other["Adam"]["initial_loss"] != first["Adam"]["initial_loss"]


def test_demo_leaves_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _quiet_demo(2)
    assert torch.equal(torch.rand(3), expected)


def test_demo_restores_the_thread_count():
    threads = torch.get_num_threads()
    _quiet_demo(2)
    assert torch.get_num_threads() == threads


def test_two_spirals():
    inputs, labels = two_spirals(50, seed=0)
    assert inputs.shape == (100, 2)
    assert labels.tolist() == [0] * 50 + [1] * 50
    assert inputs.norm(dim=1).max() < 1.5
    assert torch.equal(inputs, two_spirals(50, seed=0)[0])
    assert not torch.equal(inputs, two_spirals(50, seed=1)[0])


def test_the_demo_schedules():
    params = [torch.zeros(3, requires_grad=True)]
    sgd = make_optimizer("SGD", params, 100)
    assert [sgd.hyperparameters(0, step=t)["lr"] for t in (0, 50, 100, 500)] == pytest.approx(
        [0.1, 0.05, 0.0, 0.0], abs=1e-15
    )
    adamw = make_optimizer("AdamW", [torch.zeros(3, requires_grad=True)], 100)
    lrs = [adamw.hyperparameters(0, step=t)["lr"] for t in (0, 4, 9, 1000)]
    assert lrs == pytest.approx([0.001, 0.005, 0.01, 0.01], rel=1e-12)


def test_run_demo_rejects_no_steps():
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        run_demo(0, 0, out=io.StringIO())


def test_demo_command_prints_the_loss_table(capsys):
    assert main(["demo", "--steps", "20", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert "20 steps, seed 1" in captured.out
    for name in NAMES:
        # its description, then its summary
        assert sum(line.split()[:1] == [name] for line in lines) == 2, name
    header = lines.index("training loss") + 1
    assert lines[header].split() == ["step", *NAMES]
    rows = [line.split() for line in lines[header + 1 : header + 2 + ROWS]]
    assert [int(row[0]) for row in rows] == list(range(0, 21, 2))
    assert all(len(row) == 1 + len(NAMES) for row in rows)
    assert rows[0][1] == rows[0][2] == rows[0][3]  # step 0: the shared initial network
    for column in range(1, 4):
        assert float(rows[-1][column]) < float(rows[0][column])


def test_demo_command_with_one_step(capsys):
    assert main(["demo", "--steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index("training loss") + 1
    assert [line.split()[0] for line in lines[header + 1 : header + 3]] == ["0", "1"]


@pytest.mark.parametrize(
    ("option", "value"), [("--steps", "0"), ("--steps", "-3"), ("--seed", "-1")]
)
def test_bad_values_exit_2_with_one_line(capsys, option, value):
    assert main(["demo", option, value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"descend demo: error: {option} must be at least ")
    assert captured.err.rstrip().endswith(f"got {value}")


@pytest.mark.parametrize("argv", [["demo", "--steps", "ten"], ["demo", "--bogus"], [], ["nope"]])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: descend" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--help"], ["demo"]), (["demo", "--help"], ["--steps", "--seed", str(DEFAULT_STEPS)])],
)
def test_help(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: descend")
    for text in expected:
        assert text in out


def test_console_script_is_main():
    (script,) = entry_points(group="console_scripts", name="descend")
    assert script.load() is main


def test_python_dash_m_passes_the_exit_code():
    process = subprocess.run(
        [sys.executable, "-m", "descend.cli", "demo", "--steps", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert process.stdout == ""
    assert process.stderr == "descend demo: error: --steps must be at least 1, got 0\n"
