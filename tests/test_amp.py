"""descend optimizers under ``torch.amp.GradScaler``, which hands them the loss scale and the
inf/NaN flag (``_step_supports_amp_scaling``): they unscale the gradients or skip the step
themselves, and count which happened.

The scales are powers of two (``init_scale=2**10``, doubled every three finite steps and
halved after a skip), so scaling the loss, and dividing the gradients by the scale again,
is exact in floating point: a descend run through a GradScaler equals the same run
without one bit for bit, and torch.optim's run through its own GradScaler (which unscales
by multiplying by the reciprocal, exact too) equals descend's to the usual relative 1e-10,
the round-off by which the two implementations of each algorithm differ.
"""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch

import descend
from tests.problem import PROBLEMS, assert_same_state, assert_same_trajectory
from tests.table import RECORDS, Record

pytestmark = pytest.mark.usefixtures("float64_default")

STEPS = 10
INIT_SCALE = 2.0**10
GROWTH_INTERVAL = 3
AMP_RECORDS = [r for r in RECORDS if r.oracle is not None and not r.closure]
"""Every optimizer that torch's GradScaler can step: all but LBFGS, which needs a closure."""


def _real_params(record: Record) -> list[torch.Tensor]:
    """The record's problem without the complex parameter: GradScaler's inf check has no
    complex kernel (see test_complex_gradients_are_refused_by_the_scaler_as_in_torch)."""
    return PROBLEMS[record.problem][0](False)


def _make(record: Record, params, oracle: bool = False, impl: str | None = None, **kwargs):
    config = record.configs[0]
    options = dict(config.for_oracle() if oracle else config.kwargs) | kwargs
    if impl is not None:
        options["impl"] = impl
    cls = record.oracle if oracle else record.cls
    return cls(record.param_groups(params, config), **options)


def _poison(params: list[torch.Tensor]) -> None:
    """Make one entry of the first gradient infinite (a sparse one's stored values)."""
    grad = next(p.grad for p in params if p.grad is not None)
    (grad._values() if grad.is_sparse else grad).view(-1)[0] = float("inf")


def _run(
    record: Record,
    optimizer,
    params,
    steps: int = STEPS,
    *,
    scaled: bool = True,
    poison: tuple[int, ...] = (),
    clip: float | None = None,
) -> list[dict]:
    """``steps`` steps, through a GradScaler when ``scaled``; for each step the parameters,
    a copy of the optimizer's state_dict and the scale after it.

    ``poison``: steps at which a gradient is made infinite after backward. ``clip``:
    unscale the gradients explicitly (``scaler.unscale_``) and clip their norm first.
    """
    scaler = torch.amp.GradScaler(
        "cpu", init_scale=INIT_SCALE, growth_interval=GROWTH_INTERVAL, enabled=scaled
    )
    history = []
    for step in range(steps):
        optimizer.zero_grad()
        scaler.scale(record.loss(params, step)).backward()
        if step in poison:
            _poison(params)
        if clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
        history.append(
            {
                "params": [p.detach().clone() for p in params],
                "state": copy.deepcopy(optimizer.state_dict()),
                "scale": scaler.get_scale() if scaled else None,
            }
        )
    return history


def _params(history: list[dict]) -> list[list[torch.Tensor]]:
    return [entry["params"] for entry in history]


def _assert_identical(a, b, what: str = "") -> None:
    """Equal bit for bit: tensors (dense or sparse), numbers, and containers of them."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), what
        if a.is_sparse:
            a, b = a.coalesce(), b.coalesce()
            assert torch.equal(a.indices(), b.indices()), what
            a, b = a.values(), b.values()
        assert torch.equal(a, b), f"{what}: {a} != {b}"
    elif isinstance(a, dict):
        assert set(a) == set(b), what
        for key in a:
            _assert_identical(a[key], b[key], f"{what}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for index, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{what}[{index}]")
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def _cases() -> list:
    return [
        pytest.param(record, impl, id=f"{record.name}-{impl}")
        for record in AMP_RECORDS
        for impl in record.impls
    ]


# --------------------------------------------------------------------------------------
# (a) finite gradients: unscaled by the optimizer, exactly
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "impl"), _cases())
def test_scaled_run_equals_the_unscaled_run_exactly_and_torchs_scaled_run(record, impl):
    params = _real_params(record)
    optimizer = _make(record, params, impl=impl)
    scaled = _run(record, optimizer, params)
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (STEPS, 0)

    plain_params = _real_params(record)
    plain = _run(record, _make(record, plain_params, impl=impl), plain_params, scaled=False)
    for step, (a, b) in enumerate(zip(scaled, plain)):
        _assert_identical(a["params"], b["params"], f"step {step + 1} params")
        _assert_identical(a["state"], b["state"], f"step {step + 1} state")

    theirs_params = _real_params(record)
    theirs = _make(record, theirs_params, oracle=True)
    oracle = _run(record, theirs, theirs_params)
    assert_same_trajectory(_params(scaled), _params(oracle))
    assert_same_state(optimizer, theirs)
    # the scale grew every GROWTH_INTERVAL finite steps, for both
    expected = [INIT_SCALE * 2 ** ((s + 1) // GROWTH_INTERVAL) for s in range(STEPS)]
    assert [e["scale"] for e in scaled] == [e["scale"] for e in oracle] == expected


def test_grad_scaler_sets_the_scale_and_the_flag_during_step_and_removes_them():
    params = PROBLEMS["dense"][0](False)
    seen = []

    class Spy(descend.SGD):
        def step(self, closure=None):
            seen.append((getattr(self, "grad_scale", None), getattr(self, "found_inf", None)))
            return super().step(closure)

    optimizer = Spy(params, lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    scaler.scale(PROBLEMS["dense"][1](params, 0)).backward()
    scaler.step(optimizer)
    ((scale, found_inf),) = seen
    assert scale.item() == INIT_SCALE and found_inf.item() == 0.0
    assert not hasattr(optimizer, "grad_scale") and not hasattr(optimizer, "found_inf")


# --------------------------------------------------------------------------------------
# (b) an inf or NaN gradient: the step is skipped, and counted
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "impl"), _cases())
def test_inf_gradient_skips_the_step_and_the_scale_backs_off_like_torch(record, impl):
    poison = (3, 4)  # two skips in a row
    params = _real_params(record)
    optimizer = _make(record, params, impl=impl)
    ours = _run(record, optimizer, params, poison=poison)
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (STEPS - 2, 2)
    for step in poison:  # no parameter, no state and no group["step"] changed
        _assert_identical(ours[step]["params"], ours[2]["params"], f"step {step + 1} params")
        _assert_identical(ours[step]["state"], ours[2]["state"], f"step {step + 1} state")
    assert [g["step"] for g in optimizer.param_groups] == [STEPS - 2] * len(optimizer.param_groups)

    theirs_params = _real_params(record)
    oracle = _run(record, _make(record, theirs_params, oracle=True), theirs_params, poison=poison)
    assert_same_trajectory(_params(ours), _params(oracle))
    scales = [e["scale"] for e in ours]
    assert scales == [e["scale"] for e in oracle]
    assert scales[2:6] == [INIT_SCALE * 2, INIT_SCALE, INIT_SCALE / 2, INIT_SCALE / 2]


def test_a_skipped_step_does_not_advance_schedules():
    lrs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    params = PROBLEMS["dense"][0](False)
    optimizer = descend.SGD(params, lr=lrs, momentum=0.9)
    record = next(r for r in RECORDS if r.cls is descend.SGD)
    history = _run(record, optimizer, params, steps=6, poison=(1, 2))
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (4, 2)
    assert optimizer.param_groups[0]["step"] == 4
    assert optimizer.hyperparameters()["lr"] == 0.5
    # step 4 (index 3) used lrs[1]: its update is lrs[1] times the momentum buffer
    buffer = history[3]["state"]["state"][0]["momentum_buffer"]
    torch.testing.assert_close(
        history[3]["params"][0], history[2]["params"][0] - 0.2 * buffer, rtol=0, atol=1e-15
    )


def test_a_step_that_raises_leaves_gradients_scaled_and_everything_unchanged():
    params = PROBLEMS["dense"][0](False)
    optimizer = descend.Adam(params, lr=[0.1, 0.1])  # no value for a third step
    record = next(r for r in RECORDS if r.cls is descend.Adam)
    _run(record, optimizer, params, steps=2)
    before = copy.deepcopy(optimizer.state_dict())
    values = [p.detach().clone() for p in params]
    scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    optimizer.zero_grad()
    scaler.scale(record.loss(params, 2)).backward()
    grads = [p.grad.clone() for p in params]
    with pytest.raises(IndexError, match=re.escape("lr is a sequence of 2 per-step values")):
        scaler.step(optimizer)
    _assert_identical([p.grad for p in params], grads, "gradients")
    _assert_identical([p.detach() for p in params], values, "params")
    _assert_identical(optimizer.state_dict(), before, "state")
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (2, 0)


# --------------------------------------------------------------------------------------
# (c) scaler.unscale_, clipping, then scaler.step: grad_scale is None
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "impl"), [c for c in _cases() if c.values[0].problem != "sparse"]
)
def test_unscale_clip_then_step_matches_torch(record, impl):
    poison = (5,)
    params = _real_params(record)
    optimizer = _make(record, params, impl=impl)
    ours = _run(record, optimizer, params, poison=poison, clip=0.5)
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (STEPS - 1, 1)
    _assert_identical(ours[5]["params"], ours[4]["params"], "skipped step")

    plain_params = _real_params(record)
    plain_optimizer = _make(record, plain_params, impl=impl)
    plain = []
    for step in range(STEPS):  # the same run without a scaler: clip, and skip step 6
        plain_optimizer.zero_grad()
        record.loss(plain_params, step).backward()
        torch.nn.utils.clip_grad_norm_(plain_params, 0.5)
        if step not in poison:
            plain_optimizer.step()
        plain.append([p.detach().clone() for p in plain_params])
    _assert_identical(_params(ours), plain, "params")

    theirs_params = _real_params(record)
    theirs = _make(record, theirs_params, oracle=True)
    oracle = _run(record, theirs, theirs_params, poison=poison, clip=0.5)
    assert_same_trajectory(_params(ours), _params(oracle))
    assert_same_state(optimizer, theirs)
    assert [e["scale"] for e in ours] == [e["scale"] for e in oracle]


# --------------------------------------------------------------------------------------
# (d) sparse gradients, and complex ones
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), [("Adagrad", {"weight_decay": 0}), ("SparseAdam", {})])
def test_sparse_gradients_are_unscaled_in_place_like_torch(name, kwargs):
    record = next(r for r in RECORDS if r.name == name)
    record = Record(record.cls, record.oracle, record.configs, problem="sparse", groups=False)
    poison = (4,)
    params = _real_params(record)
    optimizer = _make(record, params, **kwargs)
    ours = _run(record, optimizer, params, poison=poison)
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (STEPS - 1, 1)
    _assert_identical(ours[4]["state"], ours[3]["state"], "skipped step")

    plain_params = _real_params(record)
    plain_optimizer = _make(record, plain_params, **kwargs)
    plain = []
    for step in range(STEPS):
        plain_optimizer.zero_grad()
        record.loss(plain_params, step).backward()
        if step not in poison:
            plain_optimizer.step()
        plain.append([p.detach().clone() for p in plain_params])
    _assert_identical(_params(ours), plain, "params")

    theirs_params = _real_params(record)
    theirs = _make(record, theirs_params, oracle=True, **kwargs)
    oracle = _run(record, theirs, theirs_params, poison=poison)
    assert_same_trajectory(_params(ours), _params(oracle))
    assert_same_state(optimizer, theirs)
    assert [e["scale"] for e in ours] == [e["scale"] for e in oracle]


def test_unscale_grads_divides_sparse_uncoalesced_values():
    param = torch.zeros(4, 2, requires_grad=True)
    indices = torch.tensor([[1, 1, 3]])  # row 1 twice: not coalesced
    param.grad = torch.sparse_coo_tensor(indices, torch.full((3, 2), 8.0), (4, 2))
    descend.optimizer.unscale_grads([param], torch.tensor(4.0))
    assert not param.grad.is_coalesced()
    torch.testing.assert_close(
        param.grad.to_dense(), torch.tensor([[0, 0], [4, 4], [0, 0], [2, 2]], dtype=torch.float64)
    )


def test_complex_gradients_are_refused_by_the_scaler_as_in_torch():
    message = re.escape('"_amp_foreach_non_finite_check_and_unscale_cpu" not implemented for')
    for cls in (descend.Adam, torch.optim.Adam):
        params = PROBLEMS["dense"][0](True)
        optimizer = cls(params, lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
        scaler.scale(PROBLEMS["dense"][1](params, 0)).backward()
        with pytest.raises(NotImplementedError, match=message):
            scaler.step(optimizer)


# --------------------------------------------------------------------------------------
# the flag and the counters
# --------------------------------------------------------------------------------------


def test_every_optimizer_but_lbfgs_handles_scaling_itself_as_torchs_lbfgs_does_not():
    for name in descend.optim.__all__:
        cls = getattr(descend, name)
        assert cls._step_supports_amp_scaling is (name != "LBFGS"), name
    lbfgs = torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])
    assert getattr(lbfgs, "_step_supports_amp_scaling", False) is False


def test_lbfgs_counts_its_steps():
    param = torch.ones(2, requires_grad=True)
    optimizer = descend.LBFGS([param], max_iter=3)

    def closure():
        optimizer.zero_grad()
        loss = (param - 3).pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    optimizer.step(closure)
    assert (optimizer.steps_taken, optimizer.steps_skipped) == (2, 0)


def test_counters_survive_pickling_start_at_zero_for_old_pickles_and_stay_out_of_state_dict():
    params = PROBLEMS["dense"][0](False)
    optimizer = descend.SGD(params, lr=0.1)
    optimizer.steps_taken, optimizer.steps_skipped = 7, 2
    restored = pickle.loads(pickle.dumps(optimizer))
    assert (restored.steps_taken, restored.steps_skipped) == (7, 2)
    copied = copy.deepcopy(optimizer)
    assert (copied.steps_taken, copied.steps_skipped) == (7, 2)

    old = optimizer.__getstate__()  # as pickled before the counters existed
    del old["steps_taken"], old["steps_skipped"]
    unpickled = descend.SGD.__new__(descend.SGD)
    unpickled.__setstate__(old)
    assert (unpickled.steps_taken, unpickled.steps_skipped) == (0, 0)

    state_dict = optimizer.state_dict()
    assert "steps_taken" not in str(state_dict) and "steps_skipped" not in str(state_dict)
    fresh = descend.SGD(PROBLEMS["dense"][0](False), lr=0.1)
    fresh.load_state_dict(state_dict)
    assert (fresh.steps_taken, fresh.steps_skipped) == (0, 0)
