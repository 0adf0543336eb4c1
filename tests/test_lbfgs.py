"""LBFGS beyond the generic table: closures, one group, hooks, the line search, models."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.optim.lbfgs import _cubic_interpolate, _strong_wolfe
from torch.optim.optimizer import register_optimizer_step_pre_hook

from descend.optim.lbfgs import LBFGS, cubic_minimizer, strong_wolfe
from tests.problem import assert_same_state, assert_same_trajectory, make_params

pytestmark = pytest.mark.usefixtures("float64_default")


def _closure(optimizer, loss_fn):
    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    return closure


def _rosenbrock(xy: torch.Tensor) -> torch.Tensor:
    return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_rosenbrock_matches_torch(line_search_fn):
    runs = []
    for cls in (LBFGS, torch.optim.LBFGS):
        xy = torch.tensor([-1.5, 2.0], requires_grad=True)
        optimizer = cls([xy], lr=1 if line_search_fn else 0.05, line_search_fn=line_search_fn)
        closure = _closure(optimizer, lambda xy=xy: _rosenbrock(xy))
        losses = [float(optimizer.step(closure).detach()) for _ in range(25)]
        runs.append((xy.detach().clone(), losses, optimizer))
    (ours, our_losses, ours_opt), (theirs, their_losses, theirs_opt) = runs
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(our_losses, their_losses, rtol=1e-10, atol=1e-13)
    assert_same_state(ours_opt, theirs_opt)
    if line_search_fn:
        torch.testing.assert_close(ours, torch.tensor([1.0, 1.0]), rtol=0, atol=1e-4)


def test_step_returns_the_first_loss_and_counts_steps():
    params = make_params()
    optimizer = LBFGS(params, line_search_fn="strong_wolfe", max_iter=5)
    returned = []

    def closure():
        optimizer.zero_grad()
        loss = sum(p.pow(2).sum() for p in params)
        loss.backward()
        returned.append(loss)
        return loss

    loss = optimizer.step(closure)
    assert loss is returned[0] and len(returned) > 1
    assert optimizer.param_groups[0]["step"] == 1
    optimizer.step(closure)
    assert optimizer.param_groups[0]["step"] == 2
    state = optimizer.state[params[0]]
    assert state["func_evals"] == len(returned)
    assert set(state) == {
        "func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
        "prev_flat_grad", "prev_loss", "al",
    }  # fmt: skip


def test_step_needs_a_closure():
    params = make_params()
    optimizer = LBFGS(params)
    with pytest.raises(TypeError, match=r"LBFGS\.step needs a closure"):
        optimizer.step()
    assert optimizer.param_groups[0]["step"] == 0 and not optimizer.state


def test_a_second_group_is_refused():
    params = make_params()
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        LBFGS([{"params": params[:2]}, {"params": params[2:]}])
    optimizer = LBFGS(params[:2])
    before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optimizer.add_param_group({"params": params[2:]})
    assert optimizer.state_dict() == before and len(optimizer.param_groups) == 1


def test_defaults_and_max_eval():
    group = LBFGS(make_params()).param_groups[0]
    assert group["max_eval"] == 25 and group["lr"] == 1 and group["line_search_fn"] is None
    assert LBFGS(make_params(), max_iter=7).param_groups[0]["max_eval"] == 8
    assert LBFGS(make_params(), max_iter=7, max_eval=3).param_groups[0]["max_eval"] == 3


def test_step_hooks_fire_around_the_overridden_step():
    params = make_params()
    optimizer = LBFGS(params, max_iter=3)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: calls.append("global"))
    try:
        closure = _closure(optimizer, lambda: sum(p.pow(2).sum() for p in params))
        optimizer.step(closure)
        optimizer.step(closure)
    finally:
        handle.remove()
    assert calls == ["global", "pre", "post"] * 2


def test_model_with_sparse_embedding_matches_torch():
    """A small model, one of whose gradients is sparse (LBFGS densifies it), as torch does."""
    runs = []
    for cls in (LBFGS, torch.optim.LBFGS):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Embedding(12, 4, sparse=True), torch.nn.Flatten(), torch.nn.Linear(8, 1)
        )
        optimizer = cls(model.parameters(), line_search_fn="strong_wolfe", history_size=5)
        tokens = torch.tensor([[1, 3], [4, 7], [2, 2], [9, 0]])
        targets = torch.tensor([[0.5], [-1.0], [0.2], [1.5]])

        def loss_fn(model=model, tokens=tokens, targets=targets):
            ridge = sum(p.pow(2).sum() for p in model.parameters())
            return (model(tokens) - targets).pow(2).mean() + 0.01 * ridge

        closure = _closure(optimizer, loss_fn)
        losses = [float(optimizer.step(closure).detach()) for _ in range(20)]
        runs.append(([p.detach().clone() for p in model.parameters()], losses))
    assert_same_trajectory([runs[0][0]], [runs[1][0]])
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=1e-10, atol=1e-13)


def test_float32_matches_torch():
    runs = []
    for cls in (LBFGS, torch.optim.LBFGS):
        params = [p.detach().float().requires_grad_() for p in make_params()]
        optimizer = cls(params, line_search_fn="strong_wolfe", max_iter=8)
        for _ in range(10):
            optimizer.step(
                _closure(optimizer, lambda ps=params: sum((p.sin() ** 2).sum() for p in ps))
            )
        runs.append([p.detach().clone() for p in params])
    assert_same_trajectory([runs[0]], [runs[1]], rtol=1e-6)


def test_cubic_minimizer_matches_torch():
    generator = torch.Generator().manual_seed(7)
    for _ in range(300):
        x1, f1, x2, f2 = (float(v) for v in torch.randn(4, generator=generator))
        g1, g2 = torch.randn(2, generator=generator)
        bounds = None
        if torch.rand((), generator=generator) < 0.5:
            low = min(x1, x2) + float(torch.randn((), generator=generator))
            bounds = (low, low + float(torch.rand((), generator=generator)) * 3)
        ours = cubic_minimizer(x1, f1, g1, x2, f2, g2, bounds)
        theirs = _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds)
        assert type(ours) is type(theirs)
        assert float(ours) == float(theirs) or (math.isnan(ours) and math.isnan(theirs))


@pytest.mark.parametrize("seed", range(40))
def test_strong_wolfe_matches_torch(seed):
    """Line searches on wiggly functions from many starting steps: the same point, loss,
    gradient and evaluation count as torch's line search."""
    generator = torch.Generator().manual_seed(seed)
    centre = torch.randn(3, generator=generator)
    freq = 1 + 4 * torch.rand(3, generator=generator)
    x0 = torch.randn(3, generator=generator)
    t0 = float(10 ** (4 * torch.rand((), generator=generator) - 2))
    max_ls = int(torch.randint(1, 30, (), generator=generator))

    def loss_and_grad(x):
        x = x.detach().requires_grad_()
        loss = ((x - centre) ** 2).sum() + torch.sin(freq * x).sum() + 0.05 * (x**4).sum()
        (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad

    f0, g0 = loss_and_grad(x0)
    direction = -g0
    slope = g0.dot(direction)

    def along(x, t, d):
        return loss_and_grad(x + t * d)

    options = dict(c2=(0.9, 1e-4)[seed // 2 % 2], tolerance_change=(1e-9, 0.3)[seed % 2])
    theirs = _strong_wolfe(along, x0, t0, direction, f0, g0, slope, max_ls=max_ls, **options)
    ours = strong_wolfe(
        lambda t: along(x0, t, direction), t0, direction, f0, g0, slope, max_ls=max_ls, **options
    )
    assert ours[0] == theirs[0] and ours[3] == theirs[3]
    assert torch.equal(ours[1], theirs[1])
    assert type(ours[2]) is type(theirs[2]) and float(ours[2]) == float(theirs[2])
