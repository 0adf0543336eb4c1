"""ASGD specifics: ``ax`` is the average of the iterates, torch's state dtypes, old
checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from descend.optim.asgd import ASGD
from tests.problem import (
    assert_close,
    assert_same_trajectory,
    float32_loss_at,
    make_float32_params,
    make_params,
    trajectory,
)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_ax_averages_the_iterates_from_step_t0_plus_2(impl):
    """The weight used at step s is 1 / max(1, s - 1 - t0): with t0 = 2, ``ax`` restarts
    at step 4 and is the mean of the iterates since."""
    params = make_params()
    optimizer = ASGD(params[:3], lr=0.05, t0=2.0, impl=impl)  # those with a grad every step
    history = trajectory(optimizer, params, 12)
    for index, param in enumerate(params[:3]):
        mean = torch.stack([step[index] for step in history[3:]]).mean(0)
        assert_close(optimizer.state[param]["ax"], mean, rtol=1e-12, what=f"parameter {index}")
        assert float(optimizer.state[param]["mu"]) == 1 / (12 - 2)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_float32_state_has_torchs_dtypes_and_devices(impl):
    """``step``, ``eta`` and ``mu`` are 0-d tensors of the default dtype, as in torch."""
    assert torch.get_default_dtype() == torch.float32
    kwargs = {"lr": 0.05, "lambd": 0.1, "t0": 3.0}
    runs = []
    for make in (lambda p: ASGD(p, **kwargs, impl=impl), lambda p: torch.optim.ASGD(p, **kwargs)):
        params = make_float32_params()
        optimizer = make(params)
        runs.append((trajectory(optimizer, params, 10, loss=float32_loss_at), optimizer))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert_same_trajectory(ours, theirs, rtol=1e-5)
    for p, q in zip(ours_opt.param_groups[0]["params"], theirs_opt.param_groups[0]["params"]):
        a, b = ours_opt.state[p], theirs_opt.state[q]
        assert set(a) == set(b) == {"step", "eta", "mu", "ax"}
        for key in a:
            assert (a[key].dtype, a[key].device, a[key].shape) == (
                b[key].dtype,
                b[key].device,
                b[key].shape,
            ), key
        for key in ("eta", "mu"):
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=0)


@pytest.mark.usefixtures("float64_default")
def test_an_old_checkpoint_with_plain_numbers_continues_like_torch():
    params = make_params()
    source = torch.optim.ASGD(params, lr=0.02, t0=2.0)
    trajectory(source, params, 4)
    old = copy.deepcopy(source.state_dict())
    for entries in old["state"].values():
        for key in ("step", "eta", "mu"):
            entries[key] = float(entries[key])
    runs = []
    for cls in (ASGD, torch.optim.ASGD):
        copies = [p.detach().clone().requires_grad_() for p in params]
        optimizer = cls(copies, lr=0.02, t0=2.0)
        optimizer.load_state_dict(copy.deepcopy(old))
        for key in ("step", "eta", "mu"):
            assert optimizer.state[copies[0]][key].shape == (), key
        runs.append(trajectory(optimizer, copies, 5, start=4))
    assert_same_trajectory(*runs)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_a_step_size_that_is_no_real_number_raises_before_anything_changes(impl):
    """With lambd < 0 the base 1 + lambd * lr * t turns negative at t = 2 here; a
    fractional power of it has no real value (torch silently keeps the real part)."""
    params = make_params()
    optimizer = ASGD(params, lr=1.0, lambd=-0.7, alpha=0.5, impl=impl)
    trajectory(optimizer, params, 1)
    snapshot = [p.detach().clone() for p in params]
    state = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match=r"param group 0: the step size .* at step t=2 "):
        trajectory(optimizer, params, 1, start=1)
    for p, q in zip(params, snapshot):
        assert torch.equal(p.detach(), q)
    for key, entries in state["state"].items():
        for name, value in entries.items():
            assert torch.equal(optimizer.state_dict()["state"][key][name], value), name
    optimizer.param_groups[0]["alpha"] = 2.0  # an integer power is real: stepping goes on
    trajectory(optimizer, params, 1, start=1)
