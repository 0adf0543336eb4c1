"""SparseAdam beyond the generic table: embeddings, dense gradients, sparse parameters."""

from __future__ import annotations

import copy

import pytest
import torch

from descend.optim.sparse_adam import SparseAdam
from tests.problem import assert_same_state, assert_same_trajectory

pytestmark = pytest.mark.usefixtures("float64_default")


def _embedding_run(cls, steps: int = 20, **kwargs):
    torch.manual_seed(3)
    table = torch.nn.Embedding(15, 4, sparse=True)
    head = torch.nn.Embedding(15, 1, sparse=True)
    optimizer = cls([*table.parameters(), *head.parameters()], **kwargs)
    history = []
    for step in range(steps):
        # repeated ids: the gradient has duplicate rows, summed before the update
        ids = torch.tensor([[step % 15, 3, 3], [(5 * step) % 15, 11, step % 4]])
        optimizer.zero_grad()
        loss = (table(ids).tanh().sum(-1) + head(ids).squeeze(-1)).pow(2).mean()
        loss.backward()
        optimizer.step()
        history.append([table.weight.detach().clone(), head.weight.detach().clone()])
    return history, optimizer


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"lr": 0.05, "maximize": True}, {"lr": 0.1, "betas": (0.5, 0.7), "eps": 1e-3}],
    ids=["defaults", "maximize", "low betas"],
)
def test_sparse_embeddings_match_torch(kwargs):
    ours, ours_opt = _embedding_run(SparseAdam, **kwargs)
    theirs, theirs_opt = _embedding_run(torch.optim.SparseAdam, **kwargs)
    assert_same_trajectory(ours, theirs)
    assert_same_state(ours_opt, theirs_opt)
    for state in ours_opt.state.values():
        assert type(state["step"]) is int and state["step"] == 20


def test_only_the_rows_looked_up_change():
    table = torch.nn.Embedding(6, 3, sparse=True)
    before = table.weight.detach().clone()
    optimizer = SparseAdam(table.parameters(), lr=0.1)
    table(torch.tensor([1, 4, 4])).sum().backward()
    optimizer.step()
    changed = (table.weight.detach() != before).any(1)
    assert changed.tolist() == [False, True, False, False, True, False]
    state = optimizer.state[table.weight]
    assert (state["exp_avg"][changed == 0] == 0).all()
    assert (state["exp_avg_sq"][changed == 0] == 0).all()


def test_dense_gradient_is_refused_before_anything_changes():
    params = [torch.randn(5, 2, requires_grad=True), torch.randn(4, 2, requires_grad=True)]
    optimizer = SparseAdam(params, lr=0.1)
    params[0].grad = torch.sparse_coo_tensor([[1, 3]], torch.ones(2, 2), (5, 2))
    params[1].grad = torch.ones(4, 2)  # dense
    snapshot = [p.detach().clone() for p in params]
    with pytest.raises(RuntimeError, match=r"SparseAdam needs sparse gradients.*has a dense one"):
        optimizer.step()
    assert all(torch.equal(p.detach(), q) for p, q in zip(params, snapshot))
    assert not optimizer.state and optimizer.param_groups[0]["step"] == 0


def test_sparse_and_complex_parameters_are_refused():
    sparse = torch.zeros(3, 2).to_sparse().requires_grad_()
    with pytest.raises(ValueError, match=r"parameter 0 .* SparseAdam requires dense parameter"):
        SparseAdam([sparse])
    with pytest.raises(ValueError, match=r"parameter 'w' .* SparseAdam requires dense parameter"):
        SparseAdam([{"params": [("w", sparse)]}])
    with pytest.raises(ValueError, match="SparseAdam does not support complex parameters"):
        SparseAdam([torch.randn(2, 2, dtype=torch.complex128, requires_grad=True)])
    optimizer = SparseAdam([torch.randn(3, requires_grad=True)])
    before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match=r"param group 1: parameter 0 .* requires dense"):
        optimizer.add_param_group({"params": [sparse]})
    assert optimizer.state_dict() == before


def test_torch_state_dict_keeps_int_steps():
    """torch keeps SparseAdam's step as an int; loaded into descend it stays one."""
    _, source = _embedding_run(torch.optim.SparseAdam, steps=5, lr=0.02)
    _, target = _embedding_run(SparseAdam, steps=0, lr=0.02)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    assert [type(s["step"]) for s in target.state.values()] == [int, int]
    assert target.param_groups[0]["step"] == 5


def test_hybrid_sparse_gradient_matches_torch():
    """A gradient with two sparse dimensions and one dense one."""
    runs = []
    for cls in (SparseAdam, torch.optim.SparseAdam):
        param = torch.linspace(-1, 1, 24).reshape(2, 4, 3).requires_grad_()
        optimizer = cls([param], lr=0.1)
        for step in range(5):
            indices = torch.tensor([[0, 1, 1, 0], [step % 4, 2, 2, 3]])
            values = torch.arange(12.0).reshape(4, 3) * (step + 1) / 10 - param[0, 0].detach()
            param.grad = torch.sparse_coo_tensor(indices, values, (2, 4, 3))
            optimizer.step()
        runs.append([param.detach().clone()])
    assert_same_trajectory([runs[0]], [runs[1]])


def test_empty_gradient_counts_the_step_only():
    param = torch.randn(4, 2, requires_grad=True)
    before = param.detach().clone()
    for cls in (SparseAdam, torch.optim.SparseAdam):
        optimizer = cls([param])
        param.grad = torch.sparse_coo_tensor(
            torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, 2), (4, 2)
        )
        optimizer.step()
        assert optimizer.state[param]["step"] == 1
        assert torch.equal(param.detach(), before)
