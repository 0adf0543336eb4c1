"""Adafactor specifics: factoring of 3-D and 4-D tensors, eps1 from the dtype, refusals,
factor shapes checked on load, and the loop as the default implementation."""

from __future__ import annotations

import copy

import pytest
import torch

from descend.optim.adafactor import Adafactor
from tests.problem import assert_same_state, assert_same_trajectory, trajectory

SHAPES = [(3, 4, 5), (2, 2, 3, 4), (6, 2), (1, 7), (7,), ()]


def _params(dtype: torch.dtype = torch.float64, shapes=SHAPES) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return [
        torch.randn(s, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
        for s in shapes
    ]


def _loss(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """Any dtype, any shapes; the last tensor only counts on even steps."""
    total = 0
    for p in params[: len(params) - step % 2]:
        x = p.double()
        total = total + (torch.sin(3 * x) + 0.5 * x * x).sum() + 0.1 * x.sum() ** 2
    return total


def _tiny_loss(params: list[torch.Tensor], step: int) -> torch.Tensor:
    """Gradients near 1e-8, where float32's eps1 floors the variance and float64's does not."""
    return 1e-8 * sum((torch.sin(3 * p.double()) + 0.5 * p.double() ** 2).sum() for p in params)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lr": 0.05, "weight_decay": 0.1, "maximize": True, "d": 1.3, "eps": (1e-3, 1e-2)}],
)
def test_tensors_of_many_dimensions_match_torch(impl, kwargs):
    """Tensors of 3 and 4 dimensions are factored over their last two, as in torch."""
    ours_params, theirs_params = _params(), _params()
    ours = Adafactor(ours_params, **kwargs, impl=impl)
    theirs = torch.optim.Adafactor(theirs_params, **kwargs, foreach=impl == "foreach")
    assert_same_trajectory(
        trajectory(ours, ours_params, 20, loss=_loss),
        trajectory(theirs, theirs_params, 20, loss=_loss),
    )
    assert_same_state(ours, theirs)
    state = ours.state[ours_params[1]]
    assert state["row_var"].shape == (2, 2, 3, 1) and state["col_var"].shape == (2, 2, 1, 4)
    assert set(ours.state[ours_params[4]]) == {"step", "variance"}


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_float32_eps1_from_the_dtype_matches_torch(impl):
    """eps=(None, ...) floors at float32's machine epsilon for float32 tensors; tiny
    gradients make the floor bite."""
    ours_params, theirs_params = _params(torch.float32), _params(torch.float32)

    def tiny(params, step):
        return 1e-6 * _loss(params, step)

    ours = Adafactor(ours_params, impl=impl)
    theirs = torch.optim.Adafactor(theirs_params, foreach=impl == "foreach")
    assert_same_trajectory(
        trajectory(ours, ours_params, 10, loss=tiny),
        trajectory(theirs, theirs_params, 10, loss=tiny),
        rtol=1e-6,
    )
    for p in ours_params:
        for value in ours.state[p].values():
            assert value.dtype == (torch.float32 if value.dim() else value.dtype)


@pytest.mark.usefixtures("float64_default")
def test_groups_mixing_dtypes_take_each_tensors_own_eps1():
    """With eps=(None, ...), loop and foreach floor each tensor at its own dtype's epsilon,
    so each moves as it does in a group of its own dtype in torch; torch's mixed group
    floors the float64 tensors at float32's epsilon too (a deliberate difference)."""
    shapes = [(3, 4), (5,)]

    def mixed_run(cls, **kwargs):
        params = _params(torch.float32, shapes) + _params(torch.float64, shapes)
        return trajectory(cls(params, **kwargs), params, 10, loss=_tiny_loss)

    loop, foreach = mixed_run(Adafactor, impl="loop"), mixed_run(Adafactor, impl="foreach")
    for a, b in zip(loop, foreach):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    for dtype, part in ((torch.float32, slice(0, 2)), (torch.float64, slice(2, 4))):
        alone = _params(dtype, shapes)
        optimizer = torch.optim.Adafactor(alone)
        theirs = trajectory(optimizer, alone, 10, loss=_tiny_loss)
        for a, b in zip(loop, theirs):
            for x, y in zip(a[part], b):
                torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    torch_mixed = mixed_run(torch.optim.Adafactor)
    assert not torch.allclose(torch_mixed[-1][2], loop[-1][2], rtol=1e-3)


def test_the_loop_is_the_default_implementation():
    params = _params()
    optimizer = Adafactor(params)
    _loss(params, 0).backward()
    assert optimizer._impl(optimizer.param_groups[0], params) == "loop"
    assert optimizer._impl({"impl": "foreach"}, params) == "foreach"


@pytest.mark.parametrize("impl", ["loop", "foreach"])
def test_complex_parameters_are_refused_at_the_step_changing_nothing(impl):
    real = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    complex_param = torch.randn(2, 3, dtype=torch.complex128, requires_grad=True)
    optimizer = Adafactor([{"params": [real]}, {"params": [complex_param]}], impl=impl)
    before = real.detach().clone()
    real.grad = torch.ones_like(real)
    complex_param.grad = torch.ones_like(complex_param)
    with pytest.raises(RuntimeError, match="param group 1: Adafactor does not support complex"):
        optimizer.step()
    assert torch.equal(real.detach(), before)
    assert not optimizer.state and [g["step"] for g in optimizer.param_groups] == [0, 0]


def test_sparse_gradients_are_refused():
    table = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    optimizer = Adafactor([table])
    torch.nn.functional.embedding(torch.tensor([1, 2]), table, sparse=True).sum().backward()
    with pytest.raises(RuntimeError, match="Adafactor does not support sparse gradients"):
        optimizer.step()


def _trained() -> tuple[Adafactor, list[torch.Tensor]]:
    params = _params()
    optimizer = Adafactor(params)
    trajectory(optimizer, params, 2, loss=_loss)
    return optimizer, params


@pytest.mark.parametrize(
    ("index", "name", "value", "match"),
    [
        (0, "row_var", torch.zeros(3, 4, 5), r"row_var has shape \(3, 4, 5\).*\(3, 4, 1\)"),
        (0, "col_var", torch.zeros(3, 5, 1), r"col_var has shape \(3, 5, 1\).*\(3, 1, 5\)"),
        (1, "col_var", [0.0], r"col_var is a list"),
        (4, "row_var", torch.zeros(7, 1), r"row_var has shape \(7, 1\).*expected no such entry"),
        (4, "variance", torch.zeros(6), r"variance has shape \(6,\), the parameter has shape"),
    ],
)
def test_load_state_dict_checks_factor_shapes(index, name, value, match):
    optimizer, _ = _trained()
    state_dict = copy.deepcopy(optimizer.state_dict())
    state_dict["state"][index][name] = value
    before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match=match):
        optimizer.load_state_dict(state_dict)
    for key, entries in before["state"].items():
        for entry, tensor in entries.items():
            assert torch.equal(optimizer.state_dict()["state"][key][entry], tensor)


def test_load_state_dict_accepts_torchs():
    params = _params()
    theirs = torch.optim.Adafactor(params, lr=0.02)
    trajectory(theirs, params, 3, loss=_loss)
    ours = Adafactor([p.detach().clone().requires_grad_() for p in params], lr=0.02)
    ours.load_state_dict(theirs.state_dict())
    assert ours.param_groups[0]["step"] == 3


def test_eps_entries_may_be_scheduled_and_read_back():
    optimizer = Adafactor(_params(), eps=(lambda step: 1e-3 * (step + 1), [1e-3, 2e-3]))
    assert optimizer.hyperparameters()["eps"] == (1e-3, 1e-3)
    assert optimizer.hyperparameters(step=1)["eps"] == (2e-3, 2e-3)
    assert Adafactor(_params()).hyperparameters()["eps"] == (None, 1e-3)


@pytest.mark.parametrize("impl", ["loop", "foreach"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_matches_torchs_loop_bit_for_bit(impl, dtype):
    """The multi-tensor path keeps the loop's roundings below 32 bits: on CPU,
    torch._foreach_mul_ would round the weight-decay factor to the dtype (0.995 -> 0.996
    in bfloat16), and scaling before adding would round twice."""
    kwargs = {"lr": 0.05, "weight_decay": 0.1}
    ours_params, theirs_params = _params(dtype), _params(dtype)
    ours = Adafactor(ours_params, **kwargs, impl=impl)
    theirs = torch.optim.Adafactor(theirs_params, **kwargs)
    assert_same_trajectory(
        trajectory(ours, ours_params, 10, loss=_loss),
        trajectory(theirs, theirs_params, 10, loss=_loss),
        rtol=0,
    )
    assert_same_state(ours, theirs, rtol=0)
