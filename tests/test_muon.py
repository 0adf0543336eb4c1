"""Muon specifics: the Newton-Schulz iteration bit for bit, the 2-D rule, refusals, other
shapes and dtypes against torch, and the bfloat16 buffer torch overwrites."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch.optim._muon import _zeropower_via_newtonschulz

from descend.optim.muon import Muon, adjusted_lr, newton_schulz
from tests.problem import assert_same_state, assert_same_trajectory, trajectory

COEFFICIENTS = (3.4445, -4.775, 2.0315)


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (1, 6), (6, 1), (32, 32), (17, 129), (80, 9)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_newton_schulz_is_bitwise_torchs(shape, dtype):
    generator = torch.Generator().manual_seed(sum(shape))
    matrix = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
    original = matrix.clone()
    for steps in (0, 1, 5, 9):
        for coefficients, eps in ((COEFFICIENTS, 1e-7), ((3.0, -3.2, 1.2), 50.0)):
            ours = newton_schulz(matrix, coefficients, steps, eps)
            theirs = _zeropower_via_newtonschulz(matrix.clone(), coefficients, steps, eps)
            assert ours.dtype == torch.bfloat16 and ours.shape == matrix.shape
            assert torch.equal(ours, theirs), (steps, coefficients)
    assert torch.equal(matrix, original)  # never written to, even in bfloat16


def test_newton_schulz_orthogonalizes():
    matrix = torch.randn(8, 20, generator=torch.Generator().manual_seed(0))
    singular_values = torch.linalg.svdvals(newton_schulz(matrix, COEFFICIENTS, 5, 1e-7).float())
    assert singular_values.min() > 0.5 and singular_values.max() < 1.3


@pytest.mark.parametrize(
    ("shape", "fn", "expected"),
    [
        ((4, 3), None, math.sqrt(4 / 3)),
        ((3, 4), "original", 1.0),
        ((4, 9), "match_rms_adamw", 0.2 * 3),
        ((16, 4), "match_rms_adamw", 0.2 * 4),
    ],
)
def test_adjusted_lr(shape, fn, expected):
    assert adjusted_lr(0.5, fn, torch.Size(shape)) == pytest.approx(0.5 * expected, rel=1e-15)


def _params(shapes, dtype=torch.float64) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return [
        torch.randn(s, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
        for s in shapes
    ]


def _loss(params: list[torch.Tensor], step: int) -> torch.Tensor:
    return sum(
        (torch.sin(3 * p.double() + step) + 0.5 * p.double() ** 2).sum() + p.double().sum() ** 2
        for p in params
    )


SHAPES = [(64, 32), (32, 64), (9, 40), (1, 5), (5, 1)]


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.02}, {"lr": 0.01, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"}]
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_larger_and_degenerate_matrices_match_torch(impl, kwargs, dtype):
    """Bit for bit, for every implementation and dtype."""
    ours_params, theirs_params = _params(SHAPES, dtype), _params(SHAPES, dtype)
    ours = Muon(ours_params, **kwargs, impl=impl)
    theirs = torch.optim.Muon(theirs_params, **kwargs)
    assert_same_trajectory(
        trajectory(ours, ours_params, 10, loss=_loss),
        trajectory(theirs, theirs_params, 10, loss=_loss),
        rtol=0,
    )
    assert_same_state(ours, theirs, rtol=0)
    assert ours.state[ours_params[0]]["momentum_buffer"].dtype == dtype


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_bfloat16_keeps_its_momentum_buffer(impl):
    """With nesterov, bfloat16 runs match torch bit for bit; without, torch's iteration
    normalizes its buffer in place, and descend's buffer stays the running average."""
    ours_params, theirs_params = _params(SHAPES[:3], torch.bfloat16), _params(SHAPES[:3])
    theirs_params = [p.detach().bfloat16().requires_grad_() for p in theirs_params]
    ours, theirs = Muon(ours_params, impl=impl), torch.optim.Muon(theirs_params)
    assert_same_trajectory(
        trajectory(ours, ours_params, 5, loss=_loss),
        trajectory(theirs, theirs_params, 5, loss=_loss),
        rtol=0,
    )
    param = torch.zeros(3, 4, dtype=torch.bfloat16, requires_grad=True)
    optimizer = Muon([param], momentum=0.5, nesterov=False, impl=impl)
    param.grad = torch.full_like(param, 2.0)
    optimizer.step()
    assert torch.equal(optimizer.state[param]["momentum_buffer"], torch.full_like(param, 1.0))


@pytest.mark.parametrize("shape", [(3,), (), (2, 3, 4)])
def test_only_matrices_are_accepted(shape):
    matrix, other = torch.zeros(3, 4, requires_grad=True), torch.zeros(shape, requires_grad=True)
    message = (
        "param group 0: Muon only supports 2D parameters (matrices); parameter 1 has shape "
        f"{shape!r}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        Muon([matrix, other])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        torch.optim.Muon([matrix, other])  # the same error type as torch's
    optimizer = Muon([matrix])
    before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match="param group 1: Muon only supports 2D parameters"):
        optimizer.add_param_group({"params": [other]})
    assert optimizer.state_dict() == before and len(optimizer.param_groups) == 1
    with pytest.raises(ValueError, match="parameter 'bias' has shape"):
        Muon([("weight", matrix), ("bias", other)])


def test_a_model_split_between_muon_and_another_optimizer():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    matrices = [p for p in model.parameters() if p.ndim == 2]
    with pytest.raises(ValueError, match=r"parameter 1 has shape \(8,\)"):
        Muon(model.parameters())
    optimizer = Muon(matrices, lr=0.02)
    before = [p.detach().clone() for p in matrices]
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    assert all(not torch.equal(p.detach(), q) for p, q in zip(matrices, before))


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_complex_matrices_are_refused_at_the_step_changing_nothing(impl):
    real = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    complex_param = torch.randn(2, 3, dtype=torch.complex128, requires_grad=True)
    optimizer = Muon([{"params": [real]}, {"params": [complex_param]}], impl=impl)
    before = real.detach().clone()
    real.grad = torch.ones_like(real)
    complex_param.grad = torch.ones_like(complex_param)
    with pytest.raises(RuntimeError, match="param group 1: Muon does not support complex"):
        optimizer.step()
    assert torch.equal(real.detach(), before)
    assert not optimizer.state and [g["step"] for g in optimizer.param_groups] == [0, 0]


def test_sparse_gradients_are_refused():
    table = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    optimizer = Muon([table])
    torch.nn.functional.embedding(torch.tensor([1, 2]), table, sparse=True).sum().backward()
    with pytest.raises(RuntimeError, match="Muon does not support sparse gradients"):
        optimizer.step()
    assert not optimizer.state


def test_ns_steps_and_adjust_lr_fn_are_fixed_options():
    params = _params(SHAPES[:2])
    optimizer = Muon(params, ns_steps=np.int64(3), adjust_lr_fn="match_rms_adamw")
    assert optimizer.hyperparameters().keys() == {
        "lr",
        "weight_decay",
        "momentum",
        "ns_coefficients",
        "eps",
    }
    _loss(params, 0).backward()
    optimizer.step()
    with pytest.raises(ValueError, match="ns_steps must be an integer from 0 to 99, got '5'"):
        Muon(params, ns_steps="5")
    state_dict = optimizer.state_dict()
    state_dict["param_groups"][0]["adjust_lr_fn"] = "cubic"
    with pytest.raises(ValueError, match=r"adjust_lr_fn must be None, .*got 'cubic'"):
        optimizer.load_state_dict(state_dict)
