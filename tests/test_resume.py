"""Resuming: exactly, in a new process (issue 10, point 2), and by parameter name (point 3).

Exact resume: for every optimizer of the test table, with loop and default
implementations, a run interrupted after ``FIRST`` steps (model, optimizer, scheduler, EMA
and RNG saved with ``descend.save``) and continued in a new process for ``THEN`` steps ends
bit for bit where the uninterrupted run does (tests/resume_script.py has the setup).

Named state: ``load_state_dict`` pairs parameters by name, whatever their order.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import descend
from descend.compat import mindspore as ms
from tests.resume_script import (
    CASES,
    FIRST,
    THEN,
    assert_identical,
    build,
    checkpoint,
    outcome,
    train,
)

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------
# Exact resume in a new process
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """The uninterrupted outcome of every case, and the folder where the script has put
    the resumed ones (one subprocess for all cases)."""
    directory = tmp_path_factory.mktemp("resume")
    expected = {}
    with torch.random.fork_rng():
        for case in CASES:
            run = build(case)
            train(run, FIRST)
            descend.save(checkpoint(run), directory / f"{case.key}.pt")
            train(run, THEN)
            expected[case.key] = outcome(run)
    finished = subprocess.run(
        [sys.executable, "-m", "tests.resume_script", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    return expected, directory


@pytest.mark.parametrize("case", CASES, ids=[case.key for case in CASES])
def test_resumed_in_a_new_process_is_bit_identical(case, resumed):
    expected, directory = resumed
    ours = descend.load(directory / f"{case.key}-resumed.pt")
    assert_identical(ours, expected[case.key], case.key)
    # the whole run took place: the scheduler counted FIRST + THEN steps
    assert ours["scheduler"]["last_epoch"] == FIRST + THEN
    assert [g["step"] for g in ours["optimizer"]["param_groups"]] == [FIRST + THEN] * len(
        ours["optimizer"]["param_groups"]
    )


@pytest.mark.parametrize("case", CASES, ids=[case.key for case in CASES])
def test_the_rng_state_matters(case, resumed):
    """Resumed without the saved RNG state, the same run ends elsewhere: the check above
    would catch an RNG state that is not saved or not restored."""
    expected, directory = resumed
    unseeded = descend.load(directory / f"{case.key}-unseeded.pt")
    pairs = zip(unseeded["params"], expected[case.key]["params"])
    assert not all(torch.equal(a, b) for a, b in pairs)


# --------------------------------------------------------------------------------------
# Named state: load_state_dict(by_name=...)
# --------------------------------------------------------------------------------------


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4, dtype=torch.float64),
        torch.nn.Tanh(),
        torch.nn.Linear(4, 2, dtype=torch.float64),
    )


def _train(optimizer: torch.optim.Optimizer, model: torch.nn.Module, steps: int) -> None:
    generator = torch.Generator().manual_seed(7)
    for _ in range(steps):
        x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


def _groups(named: list, lrs=(0.01, 0.02)) -> list[dict]:
    """Two groups: weights, then biases."""
    weights = [(n, p) for n, p in named if n.endswith("weight")]
    biases = [(n, p) for n, p in named if n.endswith("bias")]
    return [{"params": weights, "lr": lrs[0]}, {"params": biases, "lr": lrs[1]}]


def _snapshot(optimizer: torch.optim.Optimizer) -> dict:
    return copy.deepcopy({"state": optimizer.state, "groups": optimizer.param_groups})


@pytest.mark.parametrize("order", ["reversed", "same"])
def test_torch_state_dict_with_names_loads_by_name_in_any_order(order):
    """torch.optim.Adam trains with named groups; descend.Adam, built with the same
    parameters in the reverse order inside each group, loads its state_dict (by name,
    automatically) and continues exactly as torch does."""
    model, twin = _model(), _model()
    theirs = torch.optim.Adam(_groups(list(model.named_parameters())), amsgrad=True)
    _train(theirs, model, 4)
    twin.load_state_dict(model.state_dict())
    groups = _groups(list(twin.named_parameters()), lrs=(0.5, 0.5))
    if order == "reversed":
        groups = [{**g, "params": g["params"][::-1]} for g in groups]
    ours = descend.Adam(groups, amsgrad=True)
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # as from a file: no sharing
    by_name = dict(twin.named_parameters())
    for name, param in model.named_parameters():
        for key, value in theirs.state[param].items():
            assert torch.equal(ours.state[by_name[name]][key], value), (name, key)
    assert [g["lr"] for g in ours.param_groups] == [0.01, 0.02]
    _train(theirs, model, 3)
    _train(ours, twin, 3)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-13, atol=0, msg=name)


def test_by_name_true_pairs_a_reordered_optimizer_that_by_position_would_mispair():
    """The same names in another order: by position the state goes to the wrong
    parameters (here the shapes differ, and the check says so); by name it does not."""
    model, twin = _model(), _model()
    saver = descend.SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    _train(saver, model, 2)
    loader = descend.SGD(list(twin.named_parameters())[::-1], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum_buffer has shape \(4, 3\)"):
        loader.load_state_dict(saver.state_dict(), by_name=False)
    loader.load_state_dict(saver.state_dict(), by_name=True)
    by_name = dict(twin.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(
            loader.state[by_name[name]]["momentum_buffer"], saver.state[param]["momentum_buffer"]
        )
    assert loader.param_groups[0]["param_names"] == [n for n, _ in twin.named_parameters()][::-1]


def test_by_name_lets_parameters_change_groups():
    """Group options pair by position, parameters by name: a bias that moved from the
    second group to the first keeps its state and takes the first group's options."""
    model, twin = _model(), _model()
    saver = descend.Adam(_groups(list(model.named_parameters())))
    _train(saver, model, 3)
    named = list(twin.named_parameters())
    moved = [
        {"params": [named[0], named[2], named[1]], "lr": 1.0},  # 0.bias joins the weights
        {"params": [named[3]], "lr": 1.0},
    ]
    loader = descend.Adam(moved)
    loader.load_state_dict(saver.state_dict(), by_name=True)
    assert [g["lr"] for g in loader.param_groups] == [0.01, 0.02]
    assert loader.param_groups[0]["param_names"] == ["0.weight", "2.weight", "0.bias"]
    saved = dict(model.named_parameters())
    for name, param in named:
        assert torch.equal(loader.state[param]["exp_avg"], saver.state[saved[name]]["exp_avg"])


def test_mismatched_names_are_listed_and_nothing_changes():
    model = _model()
    saver = descend.Adam(model.named_parameters(), lr=0.01)
    _train(saver, model, 2)
    saved = saver.state_dict()
    loader = descend.Adam([(f"module.{n}", p) for n, p in _model().named_parameters()], lr=0.5)
    _train(loader, model, 1)
    before = _snapshot(loader)
    message = (
        "load_state_dict(by_name=True): the parameter names differ; 4 missing from the "
        "state_dict: 'module.0.weight', 'module.0.bias', 'module.2.weight', "
        "'module.2.bias'; 4 unexpected in it: '0.weight', '0.bias', '2.weight', '2.bias'. "
        "Rename them in a load_state_dict pre-hook, or load by position with by_name=False"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        loader.load_state_dict(saved, by_name=True)
    after = _snapshot(loader)
    assert after["groups"][0]["lr"] == 0.5
    assert after["groups"][0]["param_names"] == before["groups"][0]["param_names"]
    for param, state in before["state"].items():
        for key, value in state.items():
            assert torch.equal(loader.state[param][key], value)


def test_a_long_list_of_names_is_truncated():
    params = [(f"layer{i}.weight", torch.zeros(2, requires_grad=True)) for i in range(14)]
    saver = descend.SGD(params, lr=0.1)
    loader = descend.SGD([(f"x{i}", p) for i, (_, p) in enumerate(params)], lr=0.1)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "14 missing from the state_dict: 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', "
            "'x8', 'x9', ... (4 more); 14 unexpected in it: 'layer0.weight'"
        ),
    ):
        loader.load_state_dict(saver.state_dict(), by_name=True)


def test_names_that_differ_load_by_position_by_default_as_in_torch():
    """Without by_name, a checkpoint whose names differ (a ``module.`` prefix) loads by
    position, as torch.optim loads it, and the saved names replace the optimizer's, as in
    torch."""
    model = _model()
    saver = descend.SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    _train(saver, model, 2)
    twin = _model()
    loader = descend.SGD([(f"module.{n}", p) for n, p in twin.named_parameters()], lr=0.3)
    oracle = torch.optim.SGD([(f"module.{n}", p) for n, p in _model().named_parameters()])
    loader.load_state_dict(saver.state_dict())
    oracle.load_state_dict(saver.state_dict())
    assert loader.param_groups[0]["param_names"] == oracle.param_groups[0]["param_names"]
    assert loader.param_groups[0]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for p, q in zip(twin.parameters(), model.parameters()):
        assert torch.equal(loader.state[p]["momentum_buffer"], saver.state[q]["momentum_buffer"])


@pytest.mark.parametrize(
    ("saver_named", "loader_named", "message"),
    [
        (
            True,
            False,
            "load_state_dict(by_name=True): this optimizer's parameters have no names; build "
            "it from model.named_parameters() or (name, tensor) pairs",
        ),
        (
            False,
            True,
            "load_state_dict(by_name=True): the state_dict's param groups have no "
            "'param_names' (it was saved by an optimizer built from unnamed parameters)",
        ),
    ],
)
def test_by_name_needs_names_on_both_sides(saver_named, loader_named, message):
    model = _model()
    saver = descend.Adam(model.named_parameters() if saver_named else model.parameters())
    _train(saver, model, 1)
    loader = descend.Adam(model.named_parameters() if loader_named else model.parameters())
    with pytest.raises(ValueError, match=re.escape(message)):
        loader.load_state_dict(saver.state_dict(), by_name=True)
    assert not loader.state
    loader.load_state_dict(saver.state_dict())  # by position, as torch does
    assert set(loader.state) == set(model.parameters())


def test_by_name_refuses_a_different_number_of_groups():
    model = _model()
    saver = descend.Adam(_groups(list(model.named_parameters())))
    loader = descend.Adam(model.named_parameters())
    with pytest.raises(ValueError, match="state_dict has 2 parameter groups, this optimizer has 1"):
        loader.load_state_dict(saver.state_dict(), by_name=True)


def test_by_name_refuses_a_name_given_twice():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    saver = descend.SGD([("w", a), ("v", b)], lr=0.1)
    loader = descend.SGD([("w", a), ("w", b)], lr=0.1)
    with pytest.raises(ValueError, match="this optimizer names two parameters 'w'"):
        loader.load_state_dict(saver.state_dict(), by_name=True)


def test_by_name_must_be_a_bool_or_none():
    model = _model()
    optimizer = descend.SGD(model.named_parameters(), lr=0.1)
    with pytest.raises(TypeError, match="by_name must be True, False or None, got 'yes'"):
        optimizer.load_state_dict(optimizer.state_dict(), by_name="yes")


def test_pre_hooks_may_rename_before_pairing_by_name():
    """A pre-hook that strips a ``module.`` prefix (a checkpoint from DDP) makes the names
    pair."""
    model = _model()
    saver = descend.Adam([(f"module.{n}", p) for n, p in model.named_parameters()][::-1])
    _train(saver, model, 2)
    loader = descend.Adam(model.named_parameters())

    def strip(optimizer, state_dict):
        for group in state_dict["param_groups"]:
            group["param_names"] = [n.removeprefix("module.") for n in group["param_names"]]

    loader.register_load_state_dict_pre_hook(strip)
    loader.load_state_dict(copy.deepcopy(saver.state_dict()), by_name=True)
    for param in model.parameters():
        assert torch.equal(loader.state[param]["exp_avg"], saver.state[param]["exp_avg"])


def _lbfgs_problem() -> tuple[list[tuple[str, torch.Tensor]], Any]:
    """Three named parameters of different sizes and a closure factory: L-BFGS's flat
    vectors concatenate them in the optimizer's order."""
    generator = torch.Generator().manual_seed(0)
    named = [
        (name, torch.randn(size, generator=generator, dtype=torch.float64).requires_grad_())
        for name, size in (("a", 3), ("b", 2), ("c", 4))
    ]

    def closure_for(optimizer, params):
        def closure():
            optimizer.zero_grad()
            x = torch.cat([p.reshape(-1) for p in params])
            loss = x.pow(4).sum() + (x[:-1] * x[1:]).sum()
            loss.backward()
            return loss

        return closure

    return named, closure_for


def _lbfgs(named: list) -> descend.LBFGS:
    return descend.LBFGS(named, lr=0.5, history_size=5, max_iter=3)


@pytest.mark.parametrize("by_name", [None, True])
def test_lbfgs_refuses_to_pair_by_name_parameters_in_another_order(by_name):
    """L-BFGS keeps one state for all its parameters (flat vectors in parameter order,
    on the first one): by name in another order, the history would go to another
    parameter (the step then restarts) or describe the parameters in the wrong order."""
    named, closure_for = _lbfgs_problem()
    saver = _lbfgs(named)
    params = [p for _, p in named]
    for _ in range(2):
        saver.step(closure_for(saver, params))
    saved = copy.deepcopy(saver.state_dict())
    twins = {n: p.detach().clone().requires_grad_() for n, p in named}
    loader = _lbfgs([(n, twins[n]) for n in ("b", "a", "c")])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "load_state_dict: LBFGS keeps one state for all its parameters (flat vectors in "
            "parameter order, on the first parameter), so it cannot pair them by name in "
            "another order: the state_dict lists 'a', 'b', 'c', this optimizer 'b', 'a', "
            "'c'. Build the optimizer with the parameters in the saved order"
        ),
    ):
        loader.load_state_dict(saved, by_name=by_name)
    assert not loader.state
    assert loader.param_groups[0]["param_names"] == ["b", "a", "c"]
    assert loader.param_groups[0]["lr"] == 0.5 and loader.param_groups[0]["step"] == 0


def test_lbfgs_loads_by_name_in_the_saved_order_and_continues_exactly():
    named, closure_for = _lbfgs_problem()
    saver = _lbfgs(named)
    params = [p for _, p in named]
    for _ in range(2):
        saver.step(closure_for(saver, params))
    saved = copy.deepcopy(saver.state_dict())
    twins = [p.detach().clone().requires_grad_() for p in params]
    loader = _lbfgs([(n, t) for (n, _), t in zip(named, twins)])
    loader.load_state_dict(saved, by_name=True)
    assert loader.state[twins[0]]["n_iter"] == saver.state[params[0]]["n_iter"] > 0
    for _ in range(2):
        saver.step(closure_for(saver, params))
        loader.step(closure_for(loader, twins))
    for p, q in zip(params, twins):
        assert torch.equal(p, q)


def test_mindspore_lars_loads_by_name():
    """MindSpore's optimizers take (name, tensor) pairs; their state_dict keeps the names,
    and LARS (which overrides load_state_dict) passes by_name on to the wrapped one."""
    model, twin = _model(), _model()
    saver = ms.LARS(ms.Momentum(ms.trainable_params(model), 0.1, 0.9))
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        x = torch.randn(5, 3, generator=generator, dtype=torch.float64)
        saver.opt.zero_grad()
        model(x).pow(2).mean().backward()
        saver(tuple(p.grad for p in model.parameters()))
    reordered = ms.Momentum(ms.trainable_params(twin)[::-1], 0.1, 0.9)
    loader = ms.LARS(reordered)
    with pytest.raises(ValueError, match=re.escape("4 missing from the state_dict: 'x.2.bias'")):
        ms.LARS(
            ms.Momentum([(f"x.{n}", p) for n, p in ms.trainable_params(twin)[::-1]], 0.1, 0.9)
        ).load_state_dict(saver.state_dict(), by_name=True)
    loader.load_state_dict(saver.state_dict(), by_name=True)
    by_name = dict(twin.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(
            loader.opt.state[by_name[name]]["moments"], saver.opt.state[param]["moments"]
        )
    assert loader.global_step == 2


@pytest.mark.parametrize(
    ("cls", "scalars"),
    [(descend.NAdam, ["mu_product"]), (descend.ASGD, ["eta", "mu"])],
    ids=["NAdam", "ASGD"],
)
def test_scalar_state_keeps_its_saved_dtype_so_a_bfloat16_run_resumes_exactly(cls, scalars):
    """torch's load_state_dict casts 0-d float32 state to bfloat16 parameters' dtype
    (torch.optim.NAdam's resumed mu_product is bfloat16); descend keeps it float32, so
    the resumed run is the uninterrupted one, bit for bit."""

    def run(optimizer, param, steps):
        for step in range(steps):
            param.grad = torch.sin(param.detach().float() * (step + 1)).to(torch.bfloat16)
            optimizer.step()

    param = torch.linspace(-1, 1, 7, dtype=torch.bfloat16).requires_grad_()
    optimizer = cls([param], lr=0.05)
    run(optimizer, param, 3)
    saved = copy.deepcopy(optimizer.state_dict())
    twin = param.detach().clone().requires_grad_()
    resumed = cls([twin], lr=0.05)
    resumed.load_state_dict(saved)
    oracle = getattr(torch.optim, cls.__name__)([twin.detach().clone().requires_grad_()])
    oracle.load_state_dict(copy.deepcopy(saved))
    for name in scalars:
        assert resumed.state[twin][name].dtype == torch.float32
        assert torch.equal(resumed.state[twin][name], optimizer.state[param][name])
        assert oracle.state[oracle.param_groups[0]["params"][0]][name].dtype == torch.bfloat16
    run(optimizer, param, 3)
    run(resumed, twin, 3)
    assert torch.equal(twin, param)
    for name in scalars:
        assert torch.equal(resumed.state[twin][name], optimizer.state[param][name])
