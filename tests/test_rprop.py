"""Rprop specifics: step sizes grow, shrink and skip by the gradient's sign, by hand;
torch's state dtypes under float32."""

from __future__ import annotations

import pytest
import torch

from descend.optim.rprop import Rprop
from tests.problem import (
    assert_same_trajectory,
    float32_loss_at,
    make_float32_params,
    trajectory,
)

GRADS = [[1.0, 1.0, 0.0], [2.0, -1.0, 1.0], [1.0, -1.0, 1.0]]
# lr 0.1, etas (0.5, 1.2), step sizes clamped to [0.06, 0.13]:
# step 1: no previous gradient, sizes stay 0.1;
# step 2: same sign x1.2, flipped x0.5 -> 0.06 (clamped) and that element does not move;
# step 3: the flipped element's previous gradient was forgotten, so its size stays.
PARAMS = [[-0.1, -0.1, 0.0], [-0.22, -0.1, -0.1], [-0.35, -0.04, -0.22]]
STEP_SIZES = [0.13, 0.06, 0.12]


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("impl", ["loop", "foreach", "torch"])
def test_step_sizes_follow_the_gradient_signs(impl, maximize):
    param = torch.zeros(3, requires_grad=True)
    kwargs = {"lr": 0.1, "etas": (0.5, 1.2), "step_sizes": (0.06, 0.13), "maximize": maximize}
    if impl == "torch":
        optimizer = torch.optim.Rprop([param], **kwargs)
    else:
        optimizer = Rprop([param], **kwargs, impl=impl)
    sign = -1 if maximize else 1
    for grad, expected in zip(GRADS, PARAMS):
        param.grad = sign * torch.tensor(grad)
        optimizer.step()
        torch.testing.assert_close(param.detach(), torch.tensor(expected), rtol=0, atol=1e-15)
    state = optimizer.state[param]
    torch.testing.assert_close(state["step_size"], torch.tensor(STEP_SIZES), rtol=0, atol=1e-15)
    # prev is the gradient of the objective descended: the negated one when maximizing
    torch.testing.assert_close(state["prev"], torch.tensor(GRADS[-1]))
    assert float(state["step"]) == 3


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_float32_state_has_torchs_dtypes_and_devices(impl):
    assert torch.get_default_dtype() == torch.float32
    runs = []
    for make in (lambda p: Rprop(p, lr=0.01, impl=impl), lambda p: torch.optim.Rprop(p, lr=0.01)):
        params = make_float32_params()
        optimizer = make(params)
        runs.append((trajectory(optimizer, params, 10, loss=float32_loss_at), optimizer))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert_same_trajectory(ours, theirs, rtol=1e-5)
    for p, q in zip(ours_opt.param_groups[0]["params"], theirs_opt.param_groups[0]["params"]):
        a, b = ours_opt.state[p], theirs_opt.state[q]
        assert set(a) == set(b) == {"step", "prev", "step_size"}
        for key in a:
            assert (a[key].dtype, a[key].device) == (b[key].dtype, b[key].device), key
        torch.testing.assert_close(a["step_size"], b["step_size"])


def test_missing_step_size_bounds_mean_no_bound():
    param = torch.zeros(2, requires_grad=True)
    optimizer = Rprop([param], lr=1.0, etas=(0.5, 2.0), step_sizes=(None, None))
    for _ in range(4):
        param.grad = torch.tensor([1.0, -1.0])
        optimizer.step()
    torch.testing.assert_close(optimizer.state[param]["step_size"], torch.tensor([8.0, 8.0]))
    torch.testing.assert_close(param.detach(), torch.tensor([-15.0, 15.0]))
