"""What the direct call of compiled kernels saves on tensors outside flat buffers.

descend's compiled kernel runs once per tensor. Called through torch.compile, each call
first runs dynamo's guards and wrappers; once the graph for dense tensors exists, descend
calls it directly (:class:`descend.compiled._Compiled`). This script times one step on
ResNet-50's parameter shapes (the ``large`` workload of ``descend bench``) three ways,
interleaved step by step in one process so that the machine's noise hits all alike:

- ``direct``: ``impl="compiled"`` as shipped;
- ``through torch.compile``: the same kernels with the direct call switched off;
- ``torch``: torch.optim's fused implementation where it has one, else its for-loop.

Run from the repository root::

    .venv/bin/python benchmarks/compiled_overhead.py                 # Adam, Adagrad, RMSprop
    .venv/bin/python benchmarks/compiled_overhead.py --optimizers NAdam --steps 60
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import descend
import descend.compiled
from descend.cli.bench import make_params, resnet_shapes

FUSED = {"Adam", "AdamW", "SGD", "Adagrad"}


def measure(name: str, steps: int) -> dict[str, float]:
    """Median CPU milliseconds per step of each variant."""
    shapes = resnet_shapes()
    direct_params, slow_params = ([p for p, _ in make_params(shapes)] for _ in range(2))
    for params in (direct_params, slow_params):
        for p in params:
            p.grad = torch.randn_like(p)
    cls = getattr(descend, name)
    kernel = cls.compiled_kernel
    kernel._compiled.clear()
    direct = cls(direct_params, lr=1e-3, impl="compiled")
    direct.step()  # compiles, and calls directly from the next step on
    direct_entries = dict(kernel._compiled)
    recipe = descend.compiled._recipe
    descend.compiled._recipe = lambda graph_module: None  # no direct call
    try:
        kernel._compiled.clear()
        slow = cls(slow_params, lr=1e-3, impl="compiled")
        slow.step()
    finally:
        descend.compiled._recipe = recipe
    slow_entries = dict(kernel._compiled)
    options = {"fused": True} if name in FUSED else {"foreach": False}
    oracle = getattr(torch.optim, name)(direct_params, lr=1e-3, **options)

    def with_entries(optimizer, entries):
        def step():
            kernel._compiled.clear()
            kernel._compiled.update(entries)
            optimizer.step()

        return step

    variants = {
        "direct": with_entries(direct, direct_entries),
        "through torch.compile": with_entries(slow, slow_entries),
        "torch": oracle.step,
    }
    times: dict[str, list[float]] = {label: [] for label in variants}
    for step in range(steps):
        for label, run in variants.items():
            start = time.process_time()
            run()
            if step >= 5:
                times[label].append(time.process_time() - start)
    return {label: 1e3 * statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=["Adam", "Adagrad", "RMSprop"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'optimizer':<10} {'direct':>8} {'via compile':>12} {'torch':>8}  (CPU ms per step)")
    for name in args.optimizers:
        result = measure(name, args.steps)
        print(
            f"{name:<10} {result['direct']:>8.2f} {result['through torch.compile']:>12.2f} "
            f"{result['torch']:>8.2f}"
        )


if __name__ == "__main__":
    main()
