"""NAdam specifics: torch's state dtypes under a float32 default, old checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch

from descend.optim.nadam import NAdam
from tests.problem import (
    assert_same_trajectory,
    float32_loss_at,
    make_float32_params,
    make_params,
    trajectory,
)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_float32_state_has_torchs_dtypes_and_devices(impl):
    """Under a float32 default, ``step`` and ``mu_product`` are float32 as in torch."""
    assert torch.get_default_dtype() == torch.float32
    runs = []
    for make in (lambda p: NAdam(p, lr=0.01, impl=impl), lambda p: torch.optim.NAdam(p, lr=0.01)):
        params = make_float32_params()
        optimizer = make(params)
        runs.append((trajectory(optimizer, params, 8, loss=float32_loss_at), optimizer))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert_same_trajectory(ours, theirs, rtol=1e-5)
    for p, q in zip(ours_opt.param_groups[0]["params"], theirs_opt.param_groups[0]["params"]):
        a, b = ours_opt.state[p], theirs_opt.state[q]
        assert set(a) == set(b) == {"step", "mu_product", "exp_avg", "exp_avg_sq"}
        for key in a:
            assert (a[key].dtype, a[key].device, a[key].shape) == (
                b[key].dtype,
                b[key].device,
                b[key].shape,
            ), key
        assert a["mu_product"].dtype == torch.float32
        torch.testing.assert_close(a["mu_product"], b["mu_product"], rtol=1e-6, atol=0)


@pytest.mark.usefixtures("float64_default")
def test_an_old_checkpoint_with_plain_numbers_continues_like_torch():
    """Old checkpoints kept ``step`` and ``mu_product`` as numbers; both load as torch's."""
    params = make_params()
    source = torch.optim.NAdam(params, lr=0.01)
    trajectory(source, params, 4)
    old = copy.deepcopy(source.state_dict())
    for entries in old["state"].values():
        entries["step"] = int(entries["step"])
        entries["mu_product"] = float(entries["mu_product"])
    runs = []
    for cls in (NAdam, torch.optim.NAdam):
        copies = [p.detach().clone().requires_grad_() for p in params]
        optimizer = cls(copies, lr=0.01)
        optimizer.load_state_dict(copy.deepcopy(old))
        state = optimizer.state[copies[0]]
        assert isinstance(state["mu_product"], torch.Tensor)
        runs.append(trajectory(optimizer, copies, 5, start=4))
    assert_same_trajectory(*runs)


@pytest.mark.usefixtures("float64_default")
def test_scheduled_momentum_decay_enters_the_momentum_coefficient():
    """A momentum_decay schedule changes mu_t from the step it is in force, as changing
    torch's group value between steps does."""
    schedule = [0.004] * 3 + [0.5] * 5
    ours_params, theirs_params = make_params(), make_params()
    ours = NAdam(ours_params, lr=0.01, momentum_decay=schedule)
    theirs = torch.optim.NAdam(theirs_params, lr=0.01)

    def set_by_hand(optimizer, step):
        optimizer.param_groups[0]["momentum_decay"] = schedule[step]

    assert_same_trajectory(
        trajectory(ours, ours_params, 8),
        trajectory(theirs, theirs_params, 8, before_step=set_by_hand),
    )
    assert ours.hyperparameters(0, step=7)["momentum_decay"] == 0.5
