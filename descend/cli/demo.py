"""``descend demo``: SGD, Adam and AdamW train the same small network on two spirals.

Everything is generated here (no downloads): two interleaved spirals of points, one per
class, and an MLP 2-32-32-2 with tanh. Each optimizer trains its own copy of the same
initial network on the full batch, in lockstep, and the demo prints the training loss as
it falls, then each optimizer's final loss, training accuracy and time per step. Two of
the learning rates are schedules from :mod:`descend.schedules`, passed as ``lr``.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

import torch
from torch import nn
from torch.nn import functional as F

import descend
from descend.schedules import Cosine, Linear

DEFAULT_STEPS = 1000
POINTS_PER_CLASS = 200
TURNS = 1.25  # how many times each spiral winds around the origin
NOISE = 0.05  # standard deviation of the noise added to each point (the spirals reach radius 1)
ROWS = 10  # loss rows printed during training (plus the final one)

OPTIMIZERS = {
    "SGD": "lr 0.1 with cosine decay to 0, momentum 0.9, Nesterov",
    "Adam": "lr 0.01",
    "AdamW": "lr 0.01 after a linear warmup over the first 10% of steps, weight decay 0.01",
}
"""The demo's optimizers, by name, with what :func:`make_optimizer` gives each."""


def two_spirals(
    points_per_class: int = POINTS_PER_CLASS, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved noisy spirals: inputs of shape (2n, 2) and labels 0 or 1 of shape (2n,).

    Class 1 is class 0 rotated by half a turn. The points depend on ``seed`` only (a
    private :class:`torch.Generator`; the global random state is left alone).
    """
    generator = torch.Generator().manual_seed(seed)
    # sqrt spreads the points evenly along the spiral's length rather than its angle
    fraction = torch.rand(points_per_class, generator=generator).sqrt()
    angle = fraction * TURNS * 2 * math.pi
    arm = torch.stack([fraction * angle.cos(), fraction * angle.sin()], dim=1)
    inputs = torch.cat([arm, -arm])
    inputs = inputs + NOISE * torch.randn(inputs.shape, generator=generator)
    labels = torch.arange(2).repeat_interleave(points_per_class)
    return inputs, labels


def make_model(seed: int = 0) -> nn.Module:
    """The MLP 2-32-32-2 with tanh, its weights drawn from ``seed`` (global state kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2)
        )


def make_optimizer(name: str, params: Iterable[nn.Parameter], steps: int) -> descend.Optimizer:
    """The demo's optimizer ``name`` (a key of :data:`OPTIMIZERS`) for a run of ``steps``."""
    if name == "SGD":
        return descend.SGD(params, lr=Cosine(0.1, steps), momentum=0.9, nesterov=True)
    if name == "Adam":
        return descend.Adam(params, lr=0.01)
    if name == "AdamW":
        # from 0.01 / w at step 0 to 0.01 at step w - 1, then 0.01
        w = max(1, round(steps / 10))
        warmup = Linear(0.01 / w, 0.01, max(1, w - 1))
        return descend.AdamW(params, lr=warmup, weight_decay=0.01)
    raise ValueError(f"unknown optimizer {name!r}; the demo has {', '.join(OPTIMIZERS)}")


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, labels: torch.Tensor
) -> float:
    """One full-batch step; returns the loss before the update."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(inputs), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The model's loss and accuracy (a fraction) on ``inputs``."""
    with torch.no_grad():
        logits = model(inputs)
        loss = F.cross_entropy(logits, labels).item()
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    return loss, accuracy


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block, restoring the count after.

    The demo's tensors are tiny, so more threads gain nothing, and on a busy machine
    they cost a great deal: each op waits for its slowest thread to be scheduled
    (measured on 2 cores beside another busy process: 0.55 ms a step on one thread,
    over 100 ms on two).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_demo(
    steps: int = DEFAULT_STEPS, seed: int = 0, out: TextIO | None = None
) -> dict[str, dict[str, float]]:
    """Train the demo's network with each optimizer for ``steps`` steps, printing to ``out``
    (default: ``sys.stdout``).

    Returns, for each optimizer name, ``initial_loss`` (the same for all: the shared initial
    network's), ``final_loss`` (after the last step), ``accuracy`` (on the training points,
    a fraction in [0, 1]) and ``ms_per_step`` (median time of one step: forward, backward
    and update). ``seed`` fixes the data and the initial weights. Torch runs on one
    thread meanwhile (see :func:`single_threaded`).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    with single_threaded():
        return _train_and_report(steps, seed, sys.stdout if out is None else out)


def _train_and_report(steps: int, seed: int, out: TextIO) -> dict[str, dict[str, float]]:
    inputs, labels = two_spirals(POINTS_PER_CLASS, seed)
    initial = make_model(seed)
    initial_loss, _ = evaluate(initial, inputs, labels)
    models = {name: copy.deepcopy(initial) for name in OPTIMIZERS}
    optimizers = {name: make_optimizer(name, models[name].parameters(), steps) for name in models}
    seconds: dict[str, list[float]] = {name: [] for name in models}

    name_width = max(len(name) for name in OPTIMIZERS)
    print(
        f"descend demo: two spirals ({len(labels)} points), an MLP 2-32-32-2 with tanh, "
        "full-batch cross-entropy",
        file=out,
    )
    print(
        f"{steps} steps, seed {seed}; each optimizer trains a copy of the same initial network:",
        file=out,
    )
    for name, description in OPTIMIZERS.items():
        print(f"  {name:<{name_width}}  {description}", file=out)
    print(file=out)
    print("training loss", file=out)
    print(f"{'step':>8}" + "".join(f"{name:>10}" for name in OPTIMIZERS), file=out)

    def print_row(step: int, losses: dict[str, float]) -> None:
        print(f"{step:>8}" + "".join(f"{losses[name]:>10.4f}" for name in OPTIMIZERS), file=out)

    report_at = {round(row * steps / ROWS) for row in range(ROWS)}
    for step in range(steps):
        losses = {}
        for name, model in models.items():
            start = time.perf_counter()
            losses[name] = train_step(model, optimizers[name], inputs, labels)
            seconds[name].append(time.perf_counter() - start)
        if step in report_at:
            print_row(step, losses)
            out.flush()

    results = {}
    for name, model in models.items():
        final_loss, accuracy = evaluate(model, inputs, labels)
        results[name] = {
            "initial_loss": initial_loss,
            "final_loss": final_loss,
            "accuracy": accuracy,
            "ms_per_step": 1e3 * statistics.median(seconds[name]),
        }
    print_row(steps, {name: result["final_loss"] for name, result in results.items()})
    print(file=out)
    print(f"{'optimizer':<10}{'final loss':>12}{'accuracy':>10}{'ms/step':>10}", file=out)
    for name, result in results.items():
        print(
            f"{name:<10}{result['final_loss']:>12.4f}{result['accuracy']:>10.1%}"
            f"{result['ms_per_step']:>10.3f}",
            file=out,
        )
    print(
        "(accuracy on the training points; ms/step: median of forward + backward + update)",
        file=out,
    )
    return results


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command to the ``descend`` parser's ``commands``."""
    parser = commands.add_parser(
        "demo",
        help="train a small network with descend's SGD, Adam and AdamW",
        description="SGD, Adam and AdamW train the same small network on two generated "
        "spirals; prints the loss as it falls, then each one's final loss, accuracy and speed.",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        metavar="N",
        help=f"training steps per optimizer, at least 1 (default {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for the data and the initial weights, at least 0 (default 0)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``descend demo`` with parsed ``args``; returns the exit code."""
    if args.steps < 1:
        return _usage_error(f"--steps must be at least 1, got {args.steps}")
    if args.seed < 0:
        return _usage_error(f"--seed must be at least 0, got {args.seed}")
    run_demo(args.steps, args.seed)
    return 0


def _usage_error(message: str) -> int:
    print(f"descend demo: error: {message}", file=sys.stderr)
    return 2
