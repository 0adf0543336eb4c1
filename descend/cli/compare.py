"""``descend compare``: train a task with the runs you choose and write a report.

Runs come from ``--opt SPEC`` flags (see :mod:`descend.cli.spec` for the syntax) and from a
TOML file's ``[[run]]`` tables (``--config``); flags given on the command line override the
file's ``task``, ``steps``, ``seed`` and ``device``.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch

from descend.cli import report as reports
from descend.cli.spec import (
    Config,
    RunSpec,
    SpecError,
    config_toml,
    parse_config,
    parse_run,
    unique_labels,
)
from descend.cli.tasks import TASKS, Task, get_task
from descend.cli.train import RunResult, prepare_runs, train_runs

DEFAULT_OUT = "descend-report"


# --------------------------------------------------------------------------------------
# Shared by the commands
# --------------------------------------------------------------------------------------


def count(minimum: int, name: str):
    """An argparse type: an integer >= ``minimum`` (the error names the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


def positive_number(name: str):
    """An argparse type: a finite number > 0 (the error names the option)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text}")
        return value

    return parse


def png_path(text: str) -> Path:
    """An argparse type: the path of a PNG file to write (its name must end in .png)."""
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"the figure is a PNG: name a .png file, got {text!r}")
    return Path(text)


def wrapped(text: str) -> str:
    """``text`` filled to 88 columns, for a description under a raw help formatter."""
    return textwrap.fill(text, 88)


def parse_device(text: str) -> torch.device:
    """The device named ``text``; :class:`SpecError` if torch does not know it or this
    machine does not have it."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise SpecError(f"--device: unknown device {text!r} (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {text}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SpecError(f"--device {text}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type not in ("cpu", "cuda"):
        raise SpecError(f"--device {text}: only cpu and cuda devices are supported")
    return device


def read_config(path: str) -> Config:
    """The configuration in the TOML file ``path``; :class:`SpecError` if it can't be read."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise SpecError(f"--config {path}: cannot read it: {reason}") from None
    return parse_config(text, where=path)


def task_named(name: str) -> Task:
    try:
        return get_task(name)
    except ValueError as error:
        raise SpecError(str(error)) from None


def settings(config: Config, args: argparse.Namespace) -> tuple[Task, int, int]:
    """The task, steps and seed of a comparison: the flags', else the config's, else the
    defaults (digits, the task's default steps, seed 0)."""
    task = task_named(_first(getattr(args, "task", None), config.task, "digits"))
    steps = _first(getattr(args, "steps", None), config.steps, task.default_steps)
    seed = _first(getattr(args, "seed", None), config.seed, 0)
    return task, steps, seed


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def prepare_out(text: str) -> Path:
    """The report folder ``text``, created now so that a bad one fails before training."""
    if not text:
        raise SpecError("--out: give a folder for the report, got ''")
    out = Path(text)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpecError(
            f"--out {text}: cannot make the folder: {error.strerror or error}"
        ) from None
    return out


def add_run_options(parser: argparse.ArgumentParser, default_out: str, steps: str) -> None:
    """``--steps``, ``--seed``, ``--device`` and ``--out``, as every training command has;
    ``steps`` says where the default number of steps comes from."""
    parser.add_argument(
        "--steps",
        type=count(1, "--steps"),
        metavar="N",
        help=f"training steps per run (default: {steps})",
    )
    parser.add_argument(
        "--seed",
        type=count(0, "--seed"),
        metavar="S",
        help="seed of the initial weights and the batches (default 0)",
    )
    parser.add_argument("--device", metavar="D", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=default_out,
        help=f"the report's folder (default {default_out})",
    )


def run_comparison(
    task: Task, runs: list[RunSpec], steps: int, seed: int, device: torch.device, out: str
) -> list[RunResult]:
    """Train ``runs`` on ``task`` with rich progress bars, print the summary table and
    write the report into ``out``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    runs = unique_labels(runs)
    prepared = prepare_runs(task, runs, steps, seed, device)
    folder = prepare_out(out)
    console = Console(file=sys.stdout)
    console.print(f"[bold]{task.name}[/bold]: {task.description}")
    plural = "run" if len(runs) == 1 else "runs"
    console.print(f"{steps} steps, seed {seed}, device {device}; {len(runs)} {plural}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars = [
            progress.add_task(reports.shorten(run.label, 40), total=steps, loss="-") for run in runs
        ]

        def advance(index: int, done: int, loss: float) -> None:
            progress.update(bars[index], completed=done, loss=f"{loss:.4g}")

        results = train_runs(task, runs, steps, seed, device, advance, prepared)
    summary = reports.Settings(
        task.name, task.description, steps, seed, str(device), tuple(task.metrics), task.log_loss
    )
    reports.print_table(console, summary, results)
    config = config_toml(task.name, steps, seed, str(device), runs)
    try:
        page = reports.write_report(folder, summary, results, config)
    except OSError as error:
        raise SpecError(
            f"--out {out}: cannot write the report: {error.strerror or error}"
        ) from None
    console.print(f"report: {page}")
    return results


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------

EPILOG = """\
SPEC: an optimizer, optionally called with key=value options; values may be numbers,
'strings', lists, schedules from descend.schedules (lower case) and arithmetic; `steps`
is the number of training steps; `label` names the run; `ema=DECAY` also evaluates an
exponential moving average of the weights. Examples:

  descend compare --opt "sgd(lr=cosine(0.1, steps), momentum=0.9)" \\
                  --opt "adamw(lr=warmup(cosine(3e-3, steps - 30), 30), ema=0.99)"
  descend compare --task charlm --opt adam --opt "rmsprop(lr=1e-3)" --steps 300
  descend compare --config runs.toml --out my-report

A config file holds task/steps/seed/device and [[run]] tables (optimizer = "adamw",
label, ema and the options; a string option is a SPEC value: lr = "cosine(0.1, steps)").
`descend demo --print-config` prints one to start from.
"""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``compare`` to the ``descend`` parser's ``commands``."""
    parser = commands.add_parser(
        "compare",
        help="compare optimizers and schedules of your choice on a task",
        description=wrapped(
            "Train one task with each run (an optimizer, its hyperparameters and "
            "schedules), print a summary table and write a report folder with plots."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="SPEC",
        help='a run, e.g. "adam(lr=1e-3)"; repeat for more runs',
    )
    parser.add_argument("--config", metavar="FILE", help="a TOML file with settings and runs")
    parser.add_argument(
        "--task", choices=list(TASKS), help="what to train (default: the config's, else digits)"
    )
    add_run_options(parser, DEFAULT_OUT, "the config's, else the task's")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``descend compare`` with parsed ``args``; returns the exit code."""
    config = read_config(args.config) if args.config else Config()
    compare(config, args)
    return 0


def compare(config: Config, args: argparse.Namespace) -> list[RunResult]:
    """Resolve the settings (flags over ``config`` over defaults), build the runs and run."""
    task, steps, seed = settings(config, args)
    device = parse_device(args.device or config.device or "cpu")
    runs = config.run_specs(steps) + [parse_run(text, steps) for text in args.opt]
    if not runs:
        raise SpecError("no runs: give one with --opt SPEC or a [[run]] table in --config FILE")
    return run_comparison(task, runs, steps, seed, device, args.out)
