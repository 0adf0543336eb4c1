"""Resident memory over many optimizer steps: it must stay flat after a warm-up.

Run from the repository root::

    .venv/bin/python benchmarks/memory_leak.py                  # 10,000 steps per case
    .venv/bin/python benchmarks/memory_leak.py --steps 2000     # a quicker look
    .venv/bin/python benchmarks/memory_leak.py --cases adam ema --threshold-mib 8

Each case trains a small model on random batches, one ``step()`` after another, and
reads the process's resident set size (``/proc/self/statm``; ``resource``'s peak where
there is no ``/proc``) and the number of objects the garbage collector tracks, after a
``gc.collect()``, ten times over the run. The first ``--warmup`` fraction of the steps
(allocator pools, lazily created state, torch.compile's caches) is not judged; after it,
a case fails if its resident memory grows by more than ``--threshold-mib`` MiB or its
tracked objects by more than ``--objects-threshold``. The exit status is 1 when a case
fails.

Cases: ``adam`` (descend.Adam, the default implementation), ``adam-flat-compiled``
(descend.Adam with ``impl="compiled"`` on a model flattened by ``descend.flatten``),
``sgd-scheduler`` (SGD with momentum, a ``descend.lr_scheduler.OneCycleLR`` stepped every
step), ``ema`` (AdamW and an exponential moving average of the weights,
``descend.AveragedModel`` with ``get_ema_multi_avg_fn``) and ``skip-nonfinite`` (Adam with
``skip_nonfinite=True``, every tenth gradient NaN).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import descend

MIB = 2**20


def resident_bytes() -> int:
    """The resident set size of this process, in bytes (the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB else


def _model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(32, 64),
            torch.nn.Tanh(),
            torch.nn.Linear(64, 64),
            torch.nn.Tanh(),
            torch.nn.Linear(64, 4),
        )


Step = Callable[[int], None]


def _trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    after: Callable[[], None] | None = None,
    poison_every: int = 0,
) -> Step:
    """One training step on a random batch (the same batches every run)."""
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(64, 32, generator=generator)
    targets = torch.randn(64, 4, generator=generator)

    def step(index: int) -> None:
        optimizer.zero_grad()
        rows = (index * 8) % 64
        loss = (model(inputs[rows : rows + 8]) - targets[rows : rows + 8]).pow(2).mean()
        loss.backward()
        if poison_every and index % poison_every == poison_every - 1:
            next(iter(model.parameters())).grad[0, 0] = float("nan")
        optimizer.step()
        if after is not None:
            after()

    return step


def adam() -> Step:
    model = _model()
    return _trainer(model, descend.Adam(model.parameters(), lr=1e-3))


def adam_flat_compiled() -> Step:
    model = _model()
    descend.flatten(model)
    return _trainer(model, descend.Adam(model.parameters(), lr=1e-3, impl="compiled"))


def sgd_scheduler() -> Step:
    model = _model()
    optimizer = descend.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # a cycle far longer than any run: OneCycleLR refuses steps past total_steps
    scheduler = descend.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=10**7)
    return _trainer(model, optimizer, after=scheduler.step)


def ema() -> Step:
    model = _model()
    average = descend.AveragedModel(model, multi_avg_fn=descend.get_ema_multi_avg_fn(0.999))
    optimizer = descend.AdamW(model.parameters(), lr=1e-3)
    return _trainer(model, optimizer, after=lambda: average.update_parameters(model))


def skip_nonfinite() -> Step:
    model = _model()
    optimizer = descend.Adam(model.parameters(), lr=1e-3, skip_nonfinite=True)
    return _trainer(model, optimizer, poison_every=10)


CASES: dict[str, Callable[[], Step]] = {
    "adam": adam,
    "adam-flat-compiled": adam_flat_compiled,
    "sgd-scheduler": sgd_scheduler,
    "ema": ema,
    "skip-nonfinite": skip_nonfinite,
}


@dataclass
class Result:
    """One case's readings: (steps taken, resident bytes, tracked objects)."""

    name: str
    readings: list[tuple[int, int, int]]
    warmup_steps: int
    seconds: float

    def _after_warmup(self) -> list[tuple[int, int, int]]:
        return [r for r in self.readings if r[0] >= self.warmup_steps]

    @property
    def growth_bytes(self) -> int:
        """Resident memory at the end of the run (the largest reading after the warm-up)
        less the reading at the end of the warm-up."""
        after = self._after_warmup()
        return max(r[1] for r in after) - after[0][1]

    @property
    def growth_objects(self) -> int:
        after = self._after_warmup()
        return max(r[2] for r in after) - after[0][2]


def _reading(steps: int) -> tuple[int, int, int]:
    gc.collect()
    return steps, resident_bytes(), len(gc.get_objects())


def measure(name: str, steps: int, warmup: float = 0.2, readings: int = 10) -> Result:
    """Run case ``name`` for ``steps`` steps; read memory at the end of the warm-up and at
    ``readings`` points after it."""
    step = CASES[name]()
    warmup_steps = max(1, int(steps * warmup))
    points = sorted(
        {warmup_steps}
        | {warmup_steps + (steps - warmup_steps) * i // readings for i in range(1, readings + 1)}
    )
    taken, results = 0, []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        for point in points:
            while taken < point:
                step(taken)
                taken += 1
            results.append(_reading(taken))
    return Result(name, results, warmup_steps, time.perf_counter() - start)


def check(
    steps: int = 10_000,
    cases: list[str] | None = None,
    warmup: float = 0.2,
    threshold_mib: float = 16.0,
    objects_threshold: int = 2_000,
    report: Callable[[str], None] | None = print,
    threads: int = 1,
) -> list[tuple[Result, bool]]:
    """Measure each case; a case passes when neither its resident memory nor its tracked
    objects grow past the thresholds after the warm-up.

    ``threads``: torch's intra-op threads during the run (restored after). One by default:
    on a model this small, more threads only wait for each other, and on a busy machine
    they make every step tens of times slower.
    """
    outcomes = []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in cases or list(CASES):
            outcomes.append(_judge(name, steps, warmup, threshold_mib, objects_threshold, report))
    finally:
        torch.set_num_threads(previous)
    return outcomes


def _judge(
    name: str,
    steps: int,
    warmup: float,
    threshold_mib: float,
    objects_threshold: int,
    report: Callable[[str], None] | None,
) -> tuple[Result, bool]:
    result = measure(name, steps, warmup)
    ok = result.growth_bytes <= threshold_mib * MIB and result.growth_objects <= objects_threshold
    if report is not None:
        first = result._after_warmup()[0]
        report(
            f"{name:20s} {steps:7d} steps {result.seconds:7.1f} s   RSS after warm-up "
            f"{first[1] / MIB:8.1f} MiB, growth {result.growth_bytes / MIB:+7.2f} MiB   "
            f"objects {first[2]:7d}, growth {result.growth_objects:+6d}   "
            f"{'ok' if ok else 'GROWS'}"
        )
    return result, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="steps per case")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), help="cases to run")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction not judged")
    parser.add_argument("--threshold-mib", type=float, default=16.0)
    parser.add_argument("--objects-threshold", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1, help="torch's intra-op threads")
    args = parser.parse_args(argv)
    outcomes = check(
        args.steps,
        args.cases,
        args.warmup,
        args.threshold_mib,
        args.objects_threshold,
        threads=args.threads,
    )
    return 0 if all(ok for _, ok in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
