"""Multi-process test harness: run a function in a pair of processes joined by
torch.distributed (gloo, on CPU), and the model, data and training loop that the
distributed runs and their single-process references share.

The processes meet through a file (``init_method="file://..."``): no network, no port.
Starting a pair costs a few seconds (each process imports torch), so a test module
starts one pair and runs all its scenarios in it; :func:`attempt` keeps a scenario that
raises from hiding the others.
"""

from __future__ import annotations

import datetime
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import Shard

WORLD_SIZE = 2
BATCH = 8
"""Samples in the global batch of a step; each of the two processes takes half."""
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=120)
"""How long a collective waits for the other process before failing (instead of hanging)."""


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


def run_in_processes(
    function: Callable[..., Any],
    directory: Path,
    *args: Any,
    world_size: int = WORLD_SIZE,
    timeout: float = 900.0,
) -> list[Any]:
    """Call ``function(*args)`` in ``world_size`` new processes that form the default
    process group (gloo); return what each rank's call returned, by rank.

    ``function`` and ``args`` must pickle (a module-level function: the processes are
    spawned, not forked). The return values travel back through ``torch.save`` files in
    ``directory``, which also holds the rendezvous file. An exception in a process is
    raised here with that process's traceback; a pair still running after ``timeout``
    seconds is killed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(
        _process_main,
        args=(world_size, str(directory), function, args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.0, deadline - time.monotonic()), grace_period=5):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the {world_size} processes ran past {timeout:g} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()
    return [
        torch.load(directory / f"result-{rank}.pt", weights_only=False)
        for rank in range(world_size)
    ]


def _process_main(
    rank: int, world_size: int, directory: str, function: Callable, args: tuple
) -> None:
    torch.set_num_threads(1)  # two processes share the machine's cores
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(directory, 'rendezvous')}",
        rank=rank,
        world_size=world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        result = function(*args)
        torch.save(result, os.path.join(directory, f"result-{rank}.pt"))
    finally:
        dist.destroy_process_group()


@dataclass
class Failed:
    """A scenario that raised in a process: the exception's type, message and traceback."""

    error: str
    message: str
    traceback: str


def attempt(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, or a :class:`Failed` record of what it raised."""
    try:
        return function(*args, **kwargs)
    except Exception as error:
        return Failed(type(error).__name__, str(error), traceback.format_exc())


def unwrap(result: Any, what: str = "") -> Any:
    """A scenario's result; fails the test with the process's traceback if it raised."""
    if isinstance(result, Failed):
        raise AssertionError(f"{what} raised in a process:\n{result.traceback}")
    return result


# --------------------------------------------------------------------------------------
# Model, data and training loop
# --------------------------------------------------------------------------------------


class Mixer(nn.Module):
    """A complex 2x2 matrix mixing the first two inputs: a module of its own, since FSDP2
    shards the parameters of one module in one dtype."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.phase = nn.Parameter(torch.randn(2, 2, generator=generator, dtype=torch.complex128))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        mixed = inputs[:, :2].to(torch.complex128) @ self.phase
        return 0.3 * mixed.abs().pow(2).sum(1)


class Net(nn.Module):
    """A small two-layer model in float64, the same every time it is built.

    Its parameters cover what optimizers and sharding treat differently: matrices,
    vectors, a 0-d scale (``scalar=True``; FSDP2 cannot shard one), a complex matrix
    (``complex=True``), matrices with 3 rows and 1 row (sharded unevenly over two
    processes under FSDP2, the 1-row one leaving rank 1 an empty shard), and a wide
    matrix of 16,640 elements (``wide=True``) for which ``impl=None`` picks the
    per-tensor loop on CPU where it picks the multi-tensor path for the small ones.
    ``kind="matrices"`` keeps the matrices only (for Muon); ``kind="tables"`` is an
    embedding with sparse gradients (for SparseAdam).
    """

    def __init__(
        self,
        kind: str = "dense",
        *,
        scalar: bool = True,
        complex: bool = False,
        wide: bool = False,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1234)

        def parameter(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(shape, generator=generator, dtype=torch.float64))

        self.kind = kind
        if kind == "tables":
            self.table = nn.Embedding(10, 3, sparse=True, dtype=torch.float64)
            with torch.no_grad():
                self.table.weight.copy_(torch.randn(10, 3, generator=generator))
            return
        self.first = parameter(3, 4)
        self.second = parameter(5, 3)
        self.gate = parameter(1, 5)
        if kind == "dense":
            self.bias = parameter(3)
            if scalar:
                self.scale = parameter()
            if complex:
                self.mixer = Mixer(generator)
            if wide:
                self.wide = nn.Parameter(0.05 * torch.randn(128, 130, generator=generator))

    def forward(self, inputs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self.kind == "tables":
            picked = self.table(rows)
            return torch.tanh(picked).sum(1) + 0.1 * picked.pow(2).sum(1)
        hidden = inputs @ self.first.T
        if self.kind == "dense":
            hidden = hidden + self.bias
        hidden = torch.tanh(torch.tanh(hidden) @ self.second.T)
        out = (hidden * self.gate).sum(1)
        if hasattr(self, "scale"):
            out = out * F.softplus(self.scale)
        if hasattr(self, "mixer"):
            out = out + self.mixer(inputs)
        if hasattr(self, "wide"):
            out = out + torch.tanh(inputs.repeat(1, 32) @ self.wide).mean(1)
        return out


def shard(model: Net) -> Net:
    """Shard the model's parameters over the processes with FSDP2 (``fully_shard``): the
    complex mixer as a module of its own, the rest as the root module."""
    if hasattr(model, "mixer"):
        fully_shard(model.mixer)
    fully_shard(model)
    return model


def batch(step: int, rank: int | None = None) -> tuple[torch.Tensor, ...]:
    """The global batch of ``step`` (inputs, row indices, targets), or ``rank``'s half."""
    generator = torch.Generator().manual_seed(1000 + step)
    inputs = torch.randn(BATCH, 4, generator=generator, dtype=torch.float64)
    rows = torch.randint(0, 10, (BATCH,), generator=generator)
    targets = torch.randn(BATCH, generator=generator, dtype=torch.float64)
    if rank is None:
        return inputs, rows, targets
    return tuple(t.chunk(WORLD_SIZE)[rank] for t in (inputs, rows, targets))


def snapshot(model: nn.Module) -> list[torch.Tensor]:
    """Copies of the model's parameters, whole (a sharded DTensor is gathered: on every
    rank at once, as a collective)."""
    return [
        p.full_tensor() if hasattr(p, "full_tensor") else p.detach().clone()
        for p in model.parameters()
    ]


def _local_copies(model: nn.Module) -> list[torch.Tensor]:
    """Copies of this process's part of each parameter (all of a plain tensor)."""
    return [
        p.to_local().clone() if hasattr(p, "to_local") else p.detach().clone()
        for p in model.parameters()
    ]


def _whole(model: nn.Module, history: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """The parameters after each step, whole, from each process's parts: one collective
    for the whole history rather than one per parameter and step. FSDP2 shards along the
    first dimension in rank order (as ``torch.chunk``), so the parts concatenate."""
    sharded = [hasattr(p, "placements") for p in model.parameters()]
    if not any(sharded):
        return history
    for p in model.parameters():
        if hasattr(p, "placements") and tuple(p.placements) != (Shard(0),):
            raise ValueError(f"only parameters sharded as (Shard(0),), got {p.placements}")
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, history)
    return [
        [
            torch.cat([rank[step][i] for rank in parts]) if sharded[i] else value
            for i, value in enumerate(params)
        ]
        for step, params in enumerate(history)
    ]


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    start: int = 0,
    distributed: bool = False,
    closure: bool = False,
    module: nn.Module | None = None,
) -> list[list[torch.Tensor]]:
    """``steps`` steps on the mean squared error of each step's batch; the parameters of
    ``module`` (default ``model``; the wrapped module under DDP) after each step.

    ``distributed``: each process takes its half of the global batch (DDP, FSDP2 and
    ZeRO average the gradients), and a closure returns the loss averaged over the
    processes, the global batch's loss, as LBFGS compares losses between evaluations.

    On one process the loss is the mean of the two halves' mean losses: the global
    batch's mean, with its terms summed in the order the processes sum them. Summed in
    another order, the gradients differ by rounding (1e-16 relative), which some
    optimizers amplify: LBFGS's line search turns it into 1e-11 within a step and into
    differences of order one within six on this problem.
    """
    rank = dist.get_rank() if distributed else None
    history = []
    for step in range(start, start + steps):
        inputs, rows, targets = batch(step, rank)

        def evaluate(inputs=inputs, rows=rows, targets=targets) -> torch.Tensor:
            optimizer.zero_grad()
            if distributed:
                loss = F.mse_loss(model(inputs, rows), targets)
            else:
                halves = zip(*(t.chunk(WORLD_SIZE) for t in (inputs, rows, targets)))
                losses = [F.mse_loss(model(x, r), y) for x, r, y in halves]
                loss = sum(losses[1:], losses[0]) / WORLD_SIZE
            loss.backward()
            loss = loss.detach()
            if distributed:
                loss = loss.clone()
                dist.all_reduce(loss)
                loss /= dist.get_world_size()
            return loss

        if closure:
            optimizer.step(evaluate)
        else:
            evaluate()
            optimizer.step()
        history.append(_local_copies(module or model))
    return _whole(module or model, history)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` inside the block (tensor hyperparameters
    of the test table are built under float64)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
