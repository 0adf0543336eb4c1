"""Time one optimizer step on CPU: descend's implementations against torch.optim's.

Run from the repository root::

    .venv/bin/python benchmarks/step_time.py            # full run (a few minutes)
    .venv/bin/python benchmarks/step_time.py --quick    # smaller workloads, fewer repeats
    .venv/bin/python benchmarks/step_time.py --workload many-small --optimizers Adam \\
        --repeats 50 --json step_time.json

Every variant optimizes its own float32 copy of the same tensors, with the same random
gradients, drawn from a normal distribution and set once. Each variant takes its first step
(which allocates the state) and a few warm-up steps untimed; then every round times one
step of each variant with ``time.perf_counter``, rotating the order between rounds so that
drift in the machine's speed spreads evenly. The table gives the median over the rounds.
On a machine shared with other busy processes, pass ``--threads 1``: multi-threaded CPU
kernels stall whenever one of their threads is descheduled, which swamps the comparison.

Optimizers: SGD (momentum 0.9), Adam and AdamW by default; ``--optimizers`` also takes
Adadelta, Adafactor, Adagrad, Adamax, ASGD, NAdam, RAdam, RMSprop and Rprop (torch's
defaults). Variants: descend with its automatic choice (``impl=None``), ``impl="loop"`` and
``impl="foreach"``; torch.optim with
``foreach=False`` (for-loop), ``foreach=True`` and ``fused=True`` (where torch supports it
on CPU). Workloads: ``large``, ResNet-50's parameter shapes (161 tensors, 25.6M
parameters), and ``many-small``, 2,000 tensors of about 1,000 parameters each.

The ratio is a variant's median ms/step divided by that of the fastest torch.optim variant
for the same optimizer and workload: below 1.00 is faster than the best torch.optim offers,
above 1.00 slower (1.50 takes half again as long).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

import descend

Shape = tuple[int, ...]

OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], type[torch.optim.Optimizer], dict]] = {
    "SGD": (descend.SGD, torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
    "Adam": (descend.Adam, torch.optim.Adam, {"lr": 1e-3}),
    "AdamW": (descend.AdamW, torch.optim.AdamW, {"lr": 1e-3}),
    "Adadelta": (descend.Adadelta, torch.optim.Adadelta, {}),
    "Adafactor": (descend.Adafactor, torch.optim.Adafactor, {}),
    "Adagrad": (descend.Adagrad, torch.optim.Adagrad, {}),
    "Adamax": (descend.Adamax, torch.optim.Adamax, {}),
    "ASGD": (descend.ASGD, torch.optim.ASGD, {}),
    "NAdam": (descend.NAdam, torch.optim.NAdam, {}),
    "RAdam": (descend.RAdam, torch.optim.RAdam, {}),
    "RMSprop": (descend.RMSprop, torch.optim.RMSprop, {}),
    "Rprop": (descend.Rprop, torch.optim.Rprop, {}),
}
DEFAULT_OPTIMIZERS = ["SGD", "Adam", "AdamW"]
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "descend auto": ("descend", {}),
    "descend loop": ("descend", {"impl": "loop"}),
    "descend foreach": ("descend", {"impl": "foreach"}),
    "torch for-loop": ("torch", {"foreach": False}),
    "torch foreach": ("torch", {"foreach": True}),
    "torch fused": ("torch", {"fused": True}),
}


def resnet_shapes(width: int = 64, blocks: tuple[int, ...] = (3, 4, 6, 3)) -> list[Shape]:
    """Parameter shapes of a bottleneck ResNet (ResNet-50 with the defaults): convolution
    weights, batch-norm weights and biases, and the final fully connected layer."""
    shapes: list[Shape] = [(width, 3, 7, 7), (width,), (width,)]
    channels = width
    for stage, count in enumerate(blocks):
        inner = width * 2**stage
        for block in range(count):
            shapes += [(inner, channels, 1, 1), (inner,), (inner,)]
            shapes += [(inner, inner, 3, 3), (inner,), (inner,)]
            shapes += [(4 * inner, inner, 1, 1), (4 * inner,), (4 * inner,)]
            if block == 0:  # the projection shortcut
                shapes += [(4 * inner, channels, 1, 1), (4 * inner,), (4 * inner,)]
            channels = 4 * inner
    return shapes + [(1000, channels), (1000,)]


def many_small_shapes(count: int) -> list[Shape]:
    """``count`` tensors of about 1,000 elements each, in a few different shapes."""
    cycle: list[Shape] = [(1000,), (25, 40), (32, 32), (16, 8, 8)]
    return [cycle[i % len(cycle)] for i in range(count)]


def workload_shapes(name: str, quick: bool) -> list[Shape]:
    if name == "large":
        return resnet_shapes(32, (1, 1, 1, 1)) if quick else resnet_shapes()
    return many_small_shapes(500 if quick else 2000)


def make_params(shapes: list[Shape]) -> list[torch.Tensor]:
    """Parameters with random values and random gradients, the same for every call."""
    generator = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        param = torch.randn(shape, generator=generator).requires_grad_()
        param.grad = torch.randn(shape, generator=generator)
        params.append(param)
    return params


def build(optimizer: str, variant: str, shapes: list[Shape]) -> torch.optim.Optimizer | None:
    """The optimizer for one variant, over fresh parameters; None if torch lacks it on CPU."""
    descend_class, torch_class, options = OPTIMIZERS[optimizer]
    library, flags = VARIANTS[variant]
    cls = descend_class if library == "descend" else torch_class
    try:
        return cls(make_params(shapes), **options, **flags)
    except (RuntimeError, ValueError, TypeError):  # no such kernel or keyword in torch
        return None


@dataclass
class Result:
    optimizer: str
    workload: str
    implementation: str
    ms_per_step: float
    ratio_vs_best_torch: float = math.nan


def measure(
    optimizer: str, workload: str, shapes: list[Shape], repeats: int, warmup: int
) -> list[Result]:
    """Median ms/step of every variant, timed in interleaved rounds."""
    steps: dict[str, Callable[[], Any]] = {}
    for variant in VARIANTS:
        built = build(optimizer, variant, shapes)
        if built is None:
            continue
        try:
            for _ in range(1 + warmup):  # the first step allocates the state
                built.step()
        except RuntimeError:  # a variant torch accepts but cannot run on CPU
            continue
        steps[variant] = built.step
    times: dict[str, list[float]] = {variant: [] for variant in steps}
    order = list(steps)
    gc.collect()
    for round_ in range(repeats):
        shift = round_ % len(order)
        for variant in order[shift:] + order[:shift]:
            start = time.perf_counter()
            steps[variant]()
            times[variant].append((time.perf_counter() - start) * 1e3)
    results = [
        Result(optimizer, workload, variant, statistics.median(samples))
        for variant, samples in times.items()
    ]
    torch_times = [r.ms_per_step for r in results if r.implementation.startswith("torch")]
    for result in results:
        result.ratio_vs_best_torch = result.ms_per_step / min(torch_times, default=math.nan)
    return results


def print_table(results: list[Result]) -> None:
    header = f"{'optimizer':<10}{'workload':<12}{'implementation':<17}{'ms/step':>10}"
    print(f"{header}{'ratio vs best torch':>21}")
    print("-" * (len(header) + 21))
    previous = None
    for r in results:
        if previous is not None and (r.optimizer, r.workload) != previous:
            print()
        previous = (r.optimizer, r.workload)
        print(
            f"{r.optimizer:<10}{r.workload:<12}{r.implementation:<17}"
            f"{r.ms_per_step:>10.2f}{r.ratio_vs_best_torch:>21.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 5 repeats")
    parser.add_argument(
        "--workload", nargs="+", choices=["large", "many-small"], default=["large", "many-small"]
    )
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=DEFAULT_OPTIMIZERS
    )
    parser.add_argument("--repeats", type=int, help="timed rounds (default 20; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (default: torch's)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 20)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, descend {descend.__version__}, "
        f"threads: {torch.get_num_threads()}, median of {repeats} steps, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    results: list[Result] = []
    for workload in args.workload:
        shapes = workload_shapes(workload, args.quick)
        size = sum(math.prod(shape) for shape in shapes)
        print(f"{workload}: {len(shapes)} tensors, {size / 1e6:.2f}M parameters, float32")
        for optimizer in args.optimizers:
            results += measure(optimizer, workload, shapes, repeats, args.warmup)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
    print_table(results)
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        meta["load_average"] = os.getloadavg()[0]
        meta |= {"quick": args.quick, "repeats": repeats, "warmup": args.warmup}
        with open(args.json, "w") as file:
            json.dump({**meta, "results": [asdict(r) for r in results]}, file, indent=2)


if __name__ == "__main__":
    main()
