"""torch.compile'd steps with a learning rate that changes every step.

torch.optim's SGD, Adadelta and RMSprop (and ASGD) take a float ``lr`` into the compiled
graph as a constant, so every new value recompiles the step (until dynamo's recompile
limit, after which the step runs eagerly). descend's tensor-lr mode does not: given
``lr=torch.tensor(...)``, changed in place (as torch's LR schedulers do for a tensor lr),
the compiled step reads the tensor, and the per-parameter step counts, at run time, and
advances its integer counters outside the graph; after the first two steps (the first
creates the state) no step compiles anything.

Counting: a backend that counts the graphs it compiles
(``torch._dynamo.testing.CompileCounterWithBackend``); a recompile adds graphs. The
parameters are at least 1-D: torch 2.13 drops in-place methods (``p.add_(...)``,
``p.mul_(...)``) on a 0-d float64 CPU tensor from graphs compiled through AOTAutograd
(``aot_eager`` and ``inductor``), for torch.optim as for descend.
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import descend
from tests.problem import float32_loss_at, make_params

STEPS = 10
WARMUP = 2
"""Steps that may compile: the first (empty state), then once more with the state."""
LR = 0.05

pytestmark = [
    pytest.mark.usefixtures("float64_default"),
    # raised inside torch's compiler stack when it first loads, not by descend
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _factor(epoch: int) -> float:
    """LambdaLR's factor: a new lr at every step."""
    return 1 / (1 + 0.5 * epoch)


def _params() -> list[torch.Tensor]:
    return [p for p in make_params() if p.dim() > 0]  # (4, 3), (3,), (5,)


def _run(make, backend: str | None) -> tuple[list, list[int], list[float]]:
    """STEPS steps driven by torch's LambdaLR, compiled with ``backend`` (eagerly if None):
    the parameters after each step, the graphs compiled so far and the lr each used."""
    params = _params()
    optimizer = make(params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _factor)
    counter = CompileCounterWithBackend(backend or "eager")

    def step() -> None:
        optimizer.step()

    if backend is not None:
        step = torch.compile(step, backend=counter)
    history, counts, lrs = [], [], []
    for index in range(STEPS):
        optimizer.zero_grad()
        float32_loss_at(params, index).backward()
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        step()
        scheduler.step()
        history.append([p.detach().clone() for p in params])
        counts.append(counter.frame_count)
    return history, counts, lrs


@pytest.mark.parametrize(
    "cls",
    [
        torch.optim.SGD,
        pytest.param(torch.optim.Adadelta, marks=pytest.mark.slow),
        pytest.param(torch.optim.RMSprop, marks=pytest.mark.slow),
    ],
    ids=lambda c: c.__name__,
)
def test_torch_recompiles_its_step_whenever_a_float_lr_changes(cls):
    # These take the lr as the ``alpha=``/``value=`` of an in-place op, which dynamo can
    # only specialize on. (torch's Adam family computes with it next to the step count,
    # a tensor there, and gets away without recompiles.)
    with torch._dynamo.config.patch(recompile_limit=64):
        _, counts, lrs = _run(lambda params: cls(params, lr=LR), backend="aot_eager")
    assert lrs == [LR * _factor(s) for s in range(STEPS)]
    new_graphs = [b - a for a, b in itertools.pairwise(counts)]
    assert all(n >= 1 for n in new_graphs), counts  # every step after the first recompiles


CASES = [
    pytest.param(
        cls,
        kwargs,
        impl,
        backend,
        id=f"{cls.__name__}-{impl}-{backend}",
        marks=[pytest.mark.slow] if backend != "inductor" else [],
    )
    for cls, kwargs, backend in [
        # torch.compile's default backend for the three the issue names; the others through
        # AOTAutograd only (recompiles are dynamo's decision, whichever the backend), and
        # marked slow: the whole file takes over a minute on two cores
        (descend.SGD, {"momentum": 0.9}, "inductor"),
        (descend.Adam, {}, "inductor"),
        (descend.AdamW, {"weight_decay": 0.1}, "inductor"),
        (descend.Adadelta, {"weight_decay": 0.1}, "aot_eager"),
        (descend.Adagrad, {"lr_decay": 0.1}, "aot_eager"),
        (descend.Adamax, {}, "aot_eager"),
        (descend.NAdam, {"momentum_decay": 0.01}, "aot_eager"),
        (descend.RMSprop, {"momentum": 0.5, "centered": True}, "aot_eager"),
    ]
    for impl in ("loop", "foreach")
]


@pytest.mark.parametrize(("cls", "kwargs", "impl", "backend"), CASES)
def test_tensor_lr_changing_every_step_compiles_once_and_matches_eager(cls, kwargs, impl, backend):
    lr = torch.tensor(LR)
    compiled, counts, lrs = _run(lambda p: cls(p, lr=lr, impl=impl, **kwargs), backend)
    assert lrs == [LR * _factor(s) for s in range(STEPS)]  # LambdaLR filled the tensor in
    assert counts[WARMUP - 1 :] == [counts[WARMUP - 1]] * (STEPS - WARMUP + 1), counts

    eager, _, _ = _run(lambda p: cls(p, lr=LR, impl=impl, **kwargs), backend=None)
    eager_tensor, _, _ = _run(lambda p: cls(p, lr=torch.tensor(LR), impl=impl, **kwargs), None)
    # Eagerly a tensor lr is read as the float: bit for bit the float-lr run. Compiled, the
    # scalars are 0-d tensors and the graph computes them in its own order (tensor pow for
    # bias corrections, a multiply and an add where eager fuses a multiply-add), so it
    # agrees to round-off only.
    for step, (a, b, c) in enumerate(zip(compiled, eager, eager_tensor)):
        for index, (x, y, z) in enumerate(zip(a, b, c)):
            where = f"step {step + 1}, parameter {index}"
            assert torch.equal(z, y), where
            torch.testing.assert_close(
                x, y, rtol=1e-13, atol=1e-15, msg=lambda m, where=where: f"{where}: {m}"
            )


GLOBAL_OPTIMIZER: descend.Optimizer | None = None


def _global_step() -> None:
    GLOBAL_OPTIMIZER.step()


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_an_optimizer_reached_through_a_global_does_not_recompile_either(impl):
    # torch's tutorial pattern: a module-level optimizer and a compiled function calling its
    # step. Dynamo specializes a graph on every integer it reads through a global, so
    # descend advances its integer step counters outside the graph.
    global GLOBAL_OPTIMIZER
    lr = torch.tensor(LR)
    params = _params()
    GLOBAL_OPTIMIZER = descend.AdamW(params, lr=lr, impl=impl)
    counter = CompileCounterWithBackend("aot_eager")
    step = torch.compile(_global_step, backend=counter)
    counts = []
    try:
        for index in range(STEPS):
            GLOBAL_OPTIMIZER.zero_grad()
            float32_loss_at(params, index).backward()
            step()
            lr.fill_(LR * _factor(index + 1))  # by hand, as a scheduler would
            counts.append(counter.frame_count)
        assert counts[WARMUP - 1 :] == [counts[WARMUP - 1]] * (STEPS - WARMUP + 1), counts
        assert GLOBAL_OPTIMIZER.param_groups[0]["step"] == STEPS
        assert (GLOBAL_OPTIMIZER.steps_taken, GLOBAL_OPTIMIZER.steps_skipped) == (STEPS, 0)
        assert all(float(GLOBAL_OPTIMIZER.state[p]["step"]) == STEPS for p in params)
    finally:
        GLOBAL_OPTIMIZER = None


def test_tensor_values_are_checked_in_eager_steps_but_not_in_compiled_ones():
    lr = torch.tensor(LR)
    params = _params()
    optimizer = descend.SGD(params, lr=lr)
    float32_loss_at(params, 0).backward()
    lr.fill_(-1.0)
    with pytest.raises(ValueError, match=re.escape("lr must be >= 0, got -1.0")):
        optimizer.step()
    before = [p.detach().clone() for p in params]
    torch.compile(optimizer.step, backend="eager")()  # reading lr would break the graph
    for p, q in zip(params, before):
        torch.testing.assert_close(p.detach(), q + p.grad, rtol=1e-15, atol=0)
