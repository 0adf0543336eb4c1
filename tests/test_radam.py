"""RAdam specifics: the rectification threshold, torch's state dtypes under float32."""

from __future__ import annotations

import pytest
import torch

from descend.optim.radam import RAdam, rectification
from tests.problem import (
    assert_same_state,
    assert_same_trajectory,
    float32_loss_at,
    make_float32_params,
    make_params,
    trajectory,
)


@pytest.mark.parametrize(
    ("beta2", "first"),
    [(0.6, None), (0.67, 16), (0.68, 12), (0.7, 10), (0.8, 7), (0.9, 6), (0.999, 6)],
)
def test_rectification_starts_once_the_sma_length_exceeds_5(beta2, first):
    """rho_inf = 2 / (1 - beta2) - 1 must exceed 5 for the adaptive step ever to start."""
    rectified = [t for t in range(1, 40) if rectification(beta2, t) is not None]
    assert (rectified[0] if rectified else None) == first
    if first is not None:
        assert rectified == list(range(first, 40))
        assert 0 < rectification(beta2, first) < 1


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("beta2", [0.6, 0.67, 0.68, 0.7, 0.8, 0.99])
def test_switch_to_the_rectified_step_matches_torch(beta2, impl):
    """Over 30 steps, for values of beta2 whose rectified phase starts at different
    steps (or never), descend switches at the step torch does."""
    ours_params, theirs_params = make_params(), make_params()
    ours = RAdam(ours_params, lr=0.01, betas=(0.9, beta2), impl=impl)
    theirs = torch.optim.RAdam(theirs_params, lr=0.01, betas=(0.9, beta2))
    assert_same_trajectory(trajectory(ours, ours_params, 30), trajectory(theirs, theirs_params, 30))
    assert_same_state(ours, theirs)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_float32_state_has_torchs_dtypes_and_devices(impl):
    assert torch.get_default_dtype() == torch.float32
    runs = []
    for make in (lambda p: RAdam(p, lr=0.01, impl=impl), lambda p: torch.optim.RAdam(p, lr=0.01)):
        params = make_float32_params()
        optimizer = make(params)
        runs.append((trajectory(optimizer, params, 10, loss=float32_loss_at), optimizer))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert_same_trajectory(ours, theirs, rtol=1e-5)
    for p, q in zip(ours_opt.param_groups[0]["params"], theirs_opt.param_groups[0]["params"]):
        a, b = ours_opt.state[p], theirs_opt.state[q]
        assert set(a) == set(b) == {"step", "exp_avg", "exp_avg_sq"}
        for key in a:
            assert (a[key].dtype, a[key].device) == (b[key].dtype, b[key].device), key
