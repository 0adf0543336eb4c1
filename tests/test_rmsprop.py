"""RMSprop beyond the generic table: when ``momentum_buffer`` and ``grad_avg`` appear."""

from __future__ import annotations

import pytest
import torch

from descend.optim.rmsprop import RMSprop
from tests.problem import assert_same_state, assert_same_trajectory, make_params, trajectory

pytestmark = pytest.mark.usefixtures("float64_default")


def _prefilled(optimizer: torch.optim.RMSprop, *names: str) -> torch.optim.RMSprop:
    """torch's optimizer with its state created by hand, zero buffers ``names`` included,
    as torch would create them had momentum/centered been on at the first step."""
    for param in optimizer.param_groups[0]["params"]:
        state = optimizer.state[param]
        state["step"] = torch.tensor(0.0)
        for name in ("square_avg", *names):
            state[name] = torch.zeros_like(param)
    return optimizer


@pytest.mark.parametrize(
    ("kwargs", "keys"),
    [
        ({}, {"step", "square_avg"}),
        ({"momentum": 0.5}, {"step", "square_avg", "momentum_buffer"}),
        ({"centered": True}, {"step", "square_avg", "grad_avg"}),
        (
            {"momentum": 0.5, "centered": True},
            {"step", "square_avg", "momentum_buffer", "grad_avg"},
        ),
    ],
    ids=["plain", "momentum", "centered", "both"],
)
def test_state_keys_are_torchs(kwargs, keys):
    ours_params, theirs_params = make_params(True), make_params(True)
    ours, theirs = RMSprop(ours_params, **kwargs), torch.optim.RMSprop(theirs_params, **kwargs)
    assert not ours.state
    assert_same_trajectory(trajectory(ours, ours_params, 3), trajectory(theirs, theirs_params, 3))
    assert_same_state(ours, theirs)
    assert set(ours.state[ours_params[0]]) == keys


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_momentum_schedule_starting_at_zero_creates_no_buffer_then_starts_one_at_zero(impl):
    """torch decides on the buffer at a parameter's first step; with momentum 0 then, it
    keeps none (and raises KeyError if momentum turns positive later). descend keeps none
    either, and starts one at zero when momentum turns positive: what torch does with a
    buffer that sat unused while momentum was 0."""
    ours_params, theirs_params = make_params(), make_params()
    ours = RMSprop(ours_params, lr=0.01, momentum=lambda step: 0.0 if step < 3 else 0.6, impl=impl)
    theirs = _prefilled(torch.optim.RMSprop(theirs_params, lr=0.01), "momentum_buffer")

    def by_hand(optimizer, step):
        optimizer.param_groups[0]["momentum"] = 0.0 if step < 3 else 0.6

    ours_run = trajectory(ours, ours_params, 1)
    assert "momentum_buffer" not in ours.state[ours_params[0]]
    ours_run += trajectory(ours, ours_params, 9, start=1)
    assert_same_trajectory(ours_run, trajectory(theirs, theirs_params, 10, before_step=by_hand))
    assert_same_state(ours, theirs)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_centered_switched_on_mid_run_starts_grad_avg_at_zero(impl):
    ours_params, theirs_params = make_params(), make_params()
    ours = RMSprop(ours_params, lr=0.01, impl=impl)
    theirs = _prefilled(torch.optim.RMSprop(theirs_params, lr=0.01), "grad_avg")

    def switch(optimizer, step):
        optimizer.param_groups[0]["centered"] = step >= 4

    assert_same_trajectory(
        trajectory(ours, ours_params, 10, before_step=switch),
        trajectory(theirs, theirs_params, 10, before_step=switch),
    )
    assert_same_state(ours, theirs)


def test_momentum_switched_off_leaves_the_buffer_untouched():
    params = make_params()
    optimizer = RMSprop(params, lr=0.01, momentum=[0.9, 0.9, 0.0, 0.0])
    trajectory(optimizer, params, 2)
    buffer = optimizer.state[params[0]]["momentum_buffer"].clone()
    trajectory(optimizer, params, 2, start=2)
    assert torch.equal(optimizer.state[params[0]]["momentum_buffer"], buffer)
