"""descend.lr_scheduler against torch.optim.lr_scheduler 2.13, the oracle.

Every scheduler runs on a grid of arguments for 300 steps beside torch's own, driving the
same kind of optimizer (torch's and descend's), alone, two back to back, in a
ChainedScheduler and in a SequentialLR; learning rates and cycled momenta must agree to a
relative 1e-12 at every step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as T

import descend
from descend import lr_scheduler as D
from descend.schedules import Exponential

STEPS = 300
REL = 1e-12


def warm_then_decay(step: int) -> float:
    """A picklable lr_lambda: 10 warmup steps, then 1% decay per step."""
    return min(1.0, (step + 1) / 10) * 0.99 ** max(step - 10, 0)


def gentle(step: int) -> float:
    """A picklable MultiplicativeLR lambda."""
    return 0.995 if step % 3 else 1.01


def cube_root_scale(x: float) -> float:
    """A picklable CyclicLR scale_fn."""
    return 1.0 / (1.0 + x) ** (1 / 3)


# name -> list of (label, factory(module, optimizer) -> scheduler)
Factory = Callable[[Any, torch.optim.Optimizer], Any]

GRID: dict[str, list[tuple[str, Factory]]] = {
    "LambdaLR": [
        ("function", lambda m, o: m.LambdaLR(o, warm_then_decay)),
        ("per-group", lambda m, o: m.LambdaLR(o, [warm_then_decay, Exponential(1.0, 7, 0.5)])),
    ],
    "MultiplicativeLR": [
        ("function", lambda m, o: m.MultiplicativeLR(o, gentle)),
        ("constant", lambda m, o: m.MultiplicativeLR(o, lambda t: 0.99)),
    ],
    "StepLR": [
        ("7, 0.5", lambda m, o: m.StepLR(o, 7, 0.5)),
        ("1, 0.99", lambda m, o: m.StepLR(o, 1, 0.99)),
        ("100 default", lambda m, o: m.StepLR(o, 100)),
    ],
    "MultiStepLR": [
        ("repeated", lambda m, o: m.MultiStepLR(o, [3, 50, 50, 200], 0.3)),
        ("unsorted", lambda m, o: m.MultiStepLR(o, [250, 10], 2.0)),
    ],
    "ConstantLR": [
        ("default", lambda m, o: m.ConstantLR(o)),
        ("0.25, 40", lambda m, o: m.ConstantLR(o, 0.25, 40)),
        ("1.0, 3", lambda m, o: m.ConstantLR(o, 1.0, 3)),
    ],
    "LinearLR": [
        ("default", lambda m, o: m.LinearLR(o)),
        ("0.1 to 0.9 over 120", lambda m, o: m.LinearLR(o, 0.1, 0.9, 120)),
        ("decay to 0", lambda m, o: m.LinearLR(o, 1.0, 0.0, 299)),
    ],
    "ExponentialLR": [
        ("0.97", lambda m, o: m.ExponentialLR(o, 0.97)),
        ("1.01", lambda m, o: m.ExponentialLR(o, 1.01)),
    ],
    "PolynomialLR": [
        ("default", lambda m, o: m.PolynomialLR(o)),
        ("250, 2", lambda m, o: m.PolynomialLR(o, 250, 2.0)),
        ("100, 0.5", lambda m, o: m.PolynomialLR(o, 100, 0.5)),
    ],
    "CosineAnnealingLR": [
        ("100, floor", lambda m, o: m.CosineAnnealingLR(o, 100, 0.001)),
        ("37, past T_max", lambda m, o: m.CosineAnnealingLR(o, 37)),
        ("300", lambda m, o: m.CosineAnnealingLR(o, 300, 1e-4)),
    ],
    "CosineAnnealingWarmRestarts": [
        ("10, x2, floor", lambda m, o: m.CosineAnnealingWarmRestarts(o, 10, 2, 0.001)),
        ("7", lambda m, o: m.CosineAnnealingWarmRestarts(o, 7)),
        ("3, x3", lambda m, o: m.CosineAnnealingWarmRestarts(o, 3, 3)),
    ],
    "CyclicLR": [
        ("triangular", lambda m, o: m.CyclicLR(o, 0.01, 0.1, 20)),
        ("triangular2 20/13", lambda m, o: m.CyclicLR(o, 0.01, 0.1, 20, 13, "triangular2")),
        (
            "exp_range per group",
            lambda m, o: m.CyclicLR(o, [0.01, 0.02], [0.1, 0.3], 15, mode="exp_range", gamma=0.99),
        ),
        (
            "scale_fn iterations",
            lambda m, o: m.CyclicLR(
                o, 0.01, 0.1, 9, scale_fn=cube_root_scale, scale_mode="iterations"
            ),
        ),
        (
            "scale_fn cycle, momentum",
            lambda m, o: m.CyclicLR(
                o, 0.01, 0.1, 9, 4, scale_fn=cube_root_scale, base_momentum=0.7
            ),
        ),
        ("no momentum", lambda m, o: m.CyclicLR(o, 0.01, 0.1, 11, cycle_momentum=False)),
    ],
    "OneCycleLR": [
        ("default", lambda m, o: m.OneCycleLR(o, 0.1, STEPS)),
        (
            "three phase linear",
            lambda m, o: m.OneCycleLR(
                o, [0.1, 0.2], STEPS, three_phase=True, anneal_strategy="linear"
            ),
        ),
        (
            "epochs, pct 0.25",
            lambda m, o: m.OneCycleLR(
                o, 0.3, epochs=10, steps_per_epoch=31, pct_start=0.25, div_factor=10.0
            ),
        ),
        (
            "momenta per group",
            lambda m, o: m.OneCycleLR(
                o, 0.1, STEPS, base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.99]
            ),
        ),
    ],
}

# Schedulers whose effect is a factor of the current lr, so that torch composes them.
CHAINABLE = [
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "MultiplicativeLR",
]

OPTIMIZERS = {
    "torch SGD": lambda groups: torch.optim.SGD(groups, momentum=0.9),
    "descend SGD": lambda groups: descend.SGD(groups, momentum=0.9),
    "torch Adam": lambda groups: torch.optim.Adam(groups),
    "descend Adam": lambda groups: descend.Adam(groups),
}


def make_groups() -> list[dict[str, Any]]:
    return [
        {"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "lr": 0.1},
        {"params": [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], "lr": 0.05},
    ]


def group_values(optimizer: torch.optim.Optimizer) -> list[float]:
    """Every group's lr and momentum (or beta1), as numbers."""
    values = []
    for group in optimizer.param_groups:
        values.append(float(group["lr"]))
        if "momentum" in group:
            values.append(float(group["momentum"]))
        else:
            values.append(float(group["betas"][0]))
    return values


class BackToBack:
    """Steps several schedulers one after the other, as a training loop would."""

    def __init__(self, *schedulers: Any) -> None:
        self.schedulers = schedulers

    def step(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()


def trajectory(
    module: Any, factory: Factory, optimizer_name: str, steps: int = STEPS
) -> list[list[float]]:
    """The group values after construction and after each of ``steps`` steps."""
    optimizer = OPTIMIZERS[optimizer_name](make_groups())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notes are not under test
        scheduler = factory(module, optimizer)
        values = [group_values(optimizer)]
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
            values.append(group_values(optimizer))
    return values


def assert_same(ours: list[list[float]], theirs: list[list[float]]) -> None:
    assert len(ours) == len(theirs)
    for step, (mine, expected) in enumerate(zip(ours, theirs)):
        for position, (a, b) in enumerate(zip(mine, expected)):
            assert math.isclose(a, b, rel_tol=REL, abs_tol=0.0) or a == b, (
                f"step {step}, value {position}: descend {a!r}, torch {b!r}"
            )


STANDALONE = [
    pytest.param(name, factory, id=f"{name}-{label}")
    for name, cases in GRID.items()
    for label, factory in cases
]


def test_the_grid_covers_every_torch_scheduler():
    composite = {"LRScheduler", "ChainedScheduler", "SequentialLR", "ReduceLROnPlateau"}
    assert set(GRID) | composite == set(T.__all__)
    assert set(D.__all__) == set(T.__all__)


@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
@pytest.mark.parametrize(("name", "factory"), STANDALONE)
def test_standalone_values_equal_torch(name, factory, optimizer_name):
    ours = trajectory(D, factory, optimizer_name)
    theirs = trajectory(T, factory, optimizer_name)
    assert_same(ours, theirs)


PAIRS = [
    ("StepLR", "ExponentialLR"),
    ("CosineAnnealingLR", "LinearLR"),
    ("ConstantLR", "PolynomialLR"),
    ("MultiStepLR", "CosineAnnealingLR"),
    ("LinearLR", "MultiplicativeLR"),
    ("ExponentialLR", "ConstantLR"),
]


def first(name: str) -> Factory:
    return GRID[name][0][1] if name != "LinearLR" else GRID[name][1][1]


@pytest.mark.parametrize("optimizer_name", ["torch SGD", "descend SGD"])
@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_schedulers_back_to_back_equal_torch(a, b, optimizer_name):
    def factory(m, o):
        return BackToBack(first(a)(m, o), first(b)(m, o))

    assert_same(trajectory(D, factory, optimizer_name), trajectory(T, factory, optimizer_name))


@pytest.mark.parametrize("optimizer_name", ["torch SGD", "descend Adam"])
@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_chained_scheduler_equals_torch(a, b, optimizer_name):
    def factory(m, o):
        return m.ChainedScheduler([first(a)(m, o), first(b)(m, o), m.StepLR(o, 60, 0.5)])

    assert_same(trajectory(D, factory, optimizer_name), trajectory(T, factory, optimizer_name))


SEQUENCES: list[tuple[str, Factory]] = [
    (
        "warmup, cosine, exponential",
        lambda m, o: m.SequentialLR(
            o,
            [m.LinearLR(o, 0.2, 1.0, 30), m.CosineAnnealingLR(o, 100), m.ExponentialLR(o, 0.98)],
            [30, 150],
        ),
    ),
    (
        "constant, one-cycle, step",
        lambda m, o: m.SequentialLR(
            o, [m.ConstantLR(o, 0.1, 10), m.OneCycleLR(o, 0.3, 200), m.StepLR(o, 5, 0.9)], [20, 220]
        ),
    ),
    (
        "lambda, cyclic, polynomial",
        lambda m, o: m.SequentialLR(
            o,
            [
                m.LambdaLR(o, warm_then_decay),
                m.CyclicLR(o, 0.01, 0.1, 10),
                m.PolynomialLR(o, 80, 2.0),
            ],
            [40, 200],
        ),
    ),
    (
        "multistep, cosine with floor",
        lambda m, o: m.SequentialLR(
            o, [m.MultiStepLR(o, [5, 9], 0.5), m.CosineAnnealingLR(o, 40, 0.01)], [12]
        ),
    ),
]


@pytest.mark.parametrize("optimizer_name", ["torch SGD", "descend SGD", "descend Adam"])
@pytest.mark.parametrize(("label", "factory"), SEQUENCES, ids=[s[0] for s in SEQUENCES])
def test_sequential_lr_equals_torch(label, factory, optimizer_name):
    assert_same(trajectory(D, factory, optimizer_name), trajectory(T, factory, optimizer_name))


@pytest.mark.parametrize(
    ("mode", "threshold_mode", "cooldown", "min_lr"),
    [("min", "rel", 0, 0.0), ("max", "abs", 3, [0.01, 0.002]), ("min", "abs", 1, 0.02)],
)
def test_reduce_on_plateau_equals_torch(mode, threshold_mode, cooldown, min_lr):
    metrics = [math.sin(i / 7) + (i % 11) / 20 - i / 500 for i in range(STEPS)]

    def run(module):
        optimizer = torch.optim.SGD(make_groups(), momentum=0.9)
        scheduler = module.ReduceLROnPlateau(
            optimizer, mode, 0.5, 4, 1e-3, threshold_mode, cooldown, min_lr
        )
        values = []
        for metric in metrics:
            optimizer.step()
            scheduler.step(metric)
            values.append(group_values(optimizer) + [scheduler.num_bad_epochs, scheduler.best])
        return values

    assert run(D) == run(T)


def test_step_with_an_epoch_uses_the_closed_form_as_torch():
    def run(module):
        optimizer = torch.optim.SGD(make_groups())
        scheduler = module.StepLR(optimizer, 3, 0.5)
        values = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for epoch in (5, 2, 11):
                optimizer.step()
                scheduler.step(epoch)
                values.append(scheduler.get_last_lr())
        assert any("deprecated" in str(w.message) for w in caught)
        return values

    assert run(D) == run(T)


def test_cosine_warm_restarts_fractional_epochs_match_torch():
    def run(module):
        optimizer = torch.optim.SGD(make_groups())
        scheduler = module.CosineAnnealingWarmRestarts(optimizer, 10, 2, 0.001)
        values = []
        for epoch in [0.5, 1.25, 9.9, 10.0, 12.5, 29.99, 31.0]:
            optimizer.step()
            scheduler.step(epoch)
            values.append([*scheduler.get_last_lr(), scheduler.T_cur, scheduler.T_i])
        return values

    for ours, theirs in zip(run(D), run(T)):
        assert ours == pytest.approx(theirs, rel=REL)


@pytest.mark.parametrize("name", sorted(set(D.__all__) - {"LRScheduler"}))
def test_every_scheduler_is_a_torch_lr_scheduler(name):
    assert issubclass(getattr(D, name), T.LRScheduler)


def test_reduce_on_plateau_is_torch_s_for_tools_that_check():
    assert issubclass(D.ReduceLROnPlateau, T.ReduceLROnPlateau)


def test_get_last_lr_is_a_copy_of_what_was_set():
    optimizer = descend.SGD(make_groups())
    scheduler = D.ExponentialLR(optimizer, 0.5)
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [0.05, 0.025]
    scheduler.get_last_lr()[0] = 1.0
    assert optimizer.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize("lr", [Exponential(0.1, 1, 0.9), [0.1, 0.09, 0.08]])
def test_an_lr_that_is_already_scheduled_is_refused_clearly(lr):
    optimizer = descend.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    message = r"param group 0's lr is (Exponential|list) .*use that or the scheduler, not both"
    with pytest.raises(TypeError, match=message):
        D.StepLR(optimizer, 3)
    assert optimizer.param_groups[0]["lr"] == lr
    assert "initial_lr" not in optimizer.param_groups[0]


BAD_ARGUMENTS = [
    (lambda o: D.StepLR(o, 0), ValueError, "step_size must be an integer >= 1, got 0"),
    (lambda o: D.ConstantLR(o, factor=1.5), ValueError, r"factor must be in \[0, 1\], got 1.5"),
    (lambda o: D.LinearLR(o, start_factor=0), ValueError, r"start_factor must be in \(0, 1\]"),
    (lambda o: D.LinearLR(o, total_iters=0), ValueError, "total_iters must be an integer >= 1"),
    (lambda o: D.PolynomialLR(o, total_iters=-2), ValueError, "total_iters must be an integer"),
    (lambda o: D.CosineAnnealingLR(o, 0), ValueError, "T_max must be > 0, got 0"),
    (lambda o: D.CosineAnnealingWarmRestarts(o, 0), ValueError, "T_0 must be an integer >= 1"),
    (lambda o: D.CosineAnnealingWarmRestarts(o, 5, 0), ValueError, "T_mult must be an integer"),
    (lambda o: D.LambdaLR(o, [abs, abs, abs]), ValueError, "lr_lambda has 3 functions but"),
    (lambda o: D.MultiplicativeLR(o, 0.9), TypeError, "lr_lambda must be callable, got float"),
    (lambda o: D.CyclicLR(o, 0.1, 1.0, mode="up"), ValueError, "mode must be 'triangular'"),
    (lambda o: D.CyclicLR(o, 0.1, [1.0] * 3), ValueError, "max_lr has 3 values but the"),
    (
        lambda o: D.CyclicLR(o, 0.1, 1.0, base_momentum=[0.8] * 3),
        ValueError,
        "base_momentum has 3 values",
    ),
    (lambda o: D.OneCycleLR(o, 0.1), ValueError, "OneCycleLR needs total_steps, or epochs"),
    (lambda o: D.OneCycleLR(o, 0.1, 10, pct_start=1.5), ValueError, "pct_start must be a float"),
    (
        lambda o: D.OneCycleLR(o, 0.1, 10, max_momentum=[0.9] * 3),
        ValueError,
        "max_momentum has 3 values",
    ),
    (lambda o: D.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor must be < 1, got 1.0"),
    (lambda o: D.ReduceLROnPlateau(o, mode="up"), ValueError, "mode must be 'min' or 'max'"),
    (lambda o: D.SequentialLR(o, [], []), ValueError, "SequentialLR needs a non-empty list"),
    (
        lambda o: D.SequentialLR(o, [D.StepLR(o, 2), D.StepLR(o, 3)], []),
        ValueError,
        "one milestone fewer than schedulers",
    ),
    (
        lambda o: D.ChainedScheduler([T.StepLR(o, 2)]),
        TypeError,
        r"schedulers\[0\] must be a descend.lr_scheduler scheduler, got StepLR",
    ),
    (lambda o: D.StepLR(object(), 2), TypeError, "optimizer must be a torch.optim.Optimizer"),
]


@pytest.mark.parametrize(("factory", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_and_change_nothing(factory, error, message):
    optimizer = descend.SGD(make_groups(), momentum=0.9)
    before = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    with pytest.raises(error, match=message):
        factory(optimizer)
    after = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    if "descend.lr_scheduler scheduler" not in message and "milestone" not in message:
        assert after == before
