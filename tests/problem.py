"""A small non-quadratic problem on which optimizers are compared step by step, in float64."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def make_params(complex_param: bool = False) -> list[torch.Tensor]:
    """Fresh float64 parameters, the same every call: a matrix, a vector, a 0-d scalar, a
    vector that gets a gradient only on even steps, and optionally a complex matrix."""
    generator = torch.Generator().manual_seed(1234)
    shapes = [(4, 3), (3,), (), (5,)]
    params = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    if complex_param:
        params.append(torch.randn((2, 2), generator=generator, dtype=torch.complex128))
    return [p.requires_grad_() for p in params]


def make_float32_params() -> list[torch.Tensor]:
    """The dense problem's parameters (with the complex one) in float32 and complex64."""
    return [
        p.detach().to(torch.complex64 if p.is_complex() else torch.float32).requires_grad_()
        for p in make_params(complex_param=True)
    ]


def float32_loss_at(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """A loss of any dtype (the other problems are float64 only); the fourth parameter and
    the fifth count only on even steps."""
    total = 0
    for p in params[: 3 if step % 2 else len(params)]:
        x = torch.view_as_real(p) if p.is_complex() else p
        total = total + (torch.sin(3 * x) + x * x).sum()
    return total


_generator = torch.Generator().manual_seed(99)
_INPUTS = torch.randn(8, 4, generator=_generator, dtype=torch.float64)
_TARGETS = torch.randn(8, generator=_generator, dtype=torch.float64)


def loss_at(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """A smooth non-quadratic loss; the fourth parameter only counts on even steps."""
    weight, bias, scale, sometimes = params[:4]
    inputs, targets = _INPUTS.to(weight.device), _TARGETS.to(weight.device)
    hidden = torch.tanh(inputs @ weight + bias)
    loss = (hidden.sum(1) * F.softplus(scale) - targets).pow(2).mean()
    loss = loss + 0.01 * torch.log(torch.cosh(3 * weight)).sum()
    if step % 2 == 0:
        loss = loss + torch.sin(sometimes).pow(2).sum() + 0.1 * sometimes.pow(4).sum()
    if len(params) > 4:
        z = params[4]
        loss = loss + (z.abs() ** 3).sum() * 0.1 + (z * z.conj()).real.sum()
    return loss


def make_matrices(complex_param: bool = False) -> list[torch.Tensor]:
    """Fresh float64 2-D parameters only (for optimizers such as Muon), the same every call;
    the third gets a gradient only on even steps."""
    generator = torch.Generator().manual_seed(4321)
    shapes = [(4, 3), (3, 5), (2, 6)]
    return [
        torch.randn(s, generator=generator, dtype=torch.float64).requires_grad_() for s in shapes
    ]


def matrices_loss_at(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """A smooth non-quadratic loss of two stacked layers; the third matrix counts on even steps."""
    first, second, sometimes = params
    inputs, targets = _INPUTS.to(first.device), _TARGETS.to(first.device)
    hidden = torch.tanh(torch.tanh(inputs @ first) @ second)
    loss = (hidden.sum(1) - targets).pow(2).mean() + 0.01 * torch.log(torch.cosh(3 * first)).sum()
    if step % 2 == 0:
        loss = loss + torch.sin(sometimes).pow(2).sum() + 0.1 * sometimes.pow(4).sum()
    return loss


def make_tables(complex_param: bool = False) -> list[torch.Tensor]:
    """Fresh float64 embedding tables (for sparse-gradient optimizers), the same every call."""
    generator = torch.Generator().manual_seed(2468)
    shapes = [(10, 3), (6, 2)]
    return [
        torch.randn(s, generator=generator, dtype=torch.float64).requires_grad_() for s in shapes
    ]


def tables_loss_at(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """A loss whose gradients are sparse: each step looks up a few rows of each table."""
    first, second = params
    rows = torch.tensor([step % 10, (3 * step + 1) % 10, 7], device=first.device)
    picked = F.embedding(rows, first, sparse=True)
    loss = torch.tanh(picked).pow(2).sum() + 0.1 * picked.pow(4).sum()
    other = F.embedding(rows % 6, second, sparse=True)
    return loss + torch.log(torch.cosh(2 * other)).sum()


def ridge_loss_at(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """The dense loss plus a ridge ``0.1 |p|^2`` over the parameters that count at ``step``:
    bounded below, so that full second-order steps (LBFGS at torch's default lr=1 and 20
    iterations a step) stay finite."""
    counted = [p for i, p in enumerate(params) if i != 3 or step % 2 == 0]
    return loss_at(params, step) + 0.1 * sum((p * p.conj()).real.sum() for p in counted)


PROBLEMS: dict[str, tuple[Callable[[bool], list[torch.Tensor]], Callable]] = {
    "dense": (make_params, loss_at),
    "ridge": (make_params, ridge_loss_at),
    "matrices": (make_matrices, matrices_loss_at),
    "sparse": (make_tables, tables_loss_at),
}
"""Test problems by name: (make the parameters, the loss at a step)."""


def trajectory(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    steps: int,
    start: int = 0,
    before_step: Callable[[torch.optim.Optimizer, int], None] | None = None,
    loss: Callable[[list[torch.Tensor], int], torch.Tensor] = loss_at,
    closure: bool = False,
) -> list[list[torch.Tensor]]:
    """Run ``steps`` steps; return a copy of the parameters after each.

    With ``closure``, each step is ``optimizer.step(closure)`` (as LBFGS needs), the
    closure zeroing the gradients, evaluating ``loss`` and back-propagating.
    """
    history = []
    for step in range(start, start + steps):

        def evaluate(step: int = step) -> torch.Tensor:
            optimizer.zero_grad()
            value = loss(params, step)
            value.backward()
            return value

        if before_step is not None:
            before_step(optimizer, step)
        if closure:
            optimizer.step(evaluate)
        else:
            evaluate()
            optimizer.step()
        history.append([p.detach().clone() for p in params])
    return history


def assert_close(actual, expected, rtol: float = 1e-10, what: str = "") -> None:
    """Relative agreement to ``rtol`` (absolute 1e-13 near zero)."""
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=1e-13, msg=lambda m: f"{what}: {m}"
    )


def assert_same_trajectory(ours, theirs, rtol: float = 1e-10) -> None:
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for index, (x, y) in enumerate(zip(a, b)):
            assert torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all(), (
                f"step {step + 1}, parameter {index}: the reference diverged; pick a tamer config"
            )
            assert_close(x, y, rtol, what=f"step {step + 1}, parameter {index}")


def assert_same_state(
    ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, rtol: float = 1e-10
) -> None:
    """Same state keys for every parameter, and the same values."""
    ours_params = [p for g in ours.param_groups for p in g["params"]]
    theirs_params = [p for g in theirs.param_groups for p in g["params"]]
    for index, (p, q) in enumerate(zip(ours_params, theirs_params)):
        a, b = ours.state.get(p, {}), theirs.state.get(q, {})
        assert set(a) == set(b), f"parameter {index}: state keys {sorted(a)} != {sorted(b)}"
        for key in a:
            x, y = a[key], b[key]
            if key == "step":
                assert float(x) == float(y), f"parameter {index}: step {x} != {y}"
            else:
                assert_close(x, y, rtol, what=f"parameter {index}, state {key!r}")
