"""descend.flatten: parameters and gradients as views of one buffer, updated whole.

The reference is the same optimizer on the same model, not flattened, with
``impl="loop"``: every flat trajectory must equal it bitwise in float64 (the flat update
runs the same elementwise loop, once over the whole buffer), and match torch.optim's.
"""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch

import descend
from descend.flat import FlatBuffer

F64 = torch.float64

# every optimizer with a flat update, with options that exercise its state
CASES = [
    (descend.SGD, {"lr": 0.1}),
    (descend.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (descend.Adam, {"lr": 0.01}),
    (descend.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    (descend.AdamW, {"lr": 0.01, "betas": (0.8, 0.99)}),
    (descend.Adamax, {"lr": 0.01}),
    (descend.NAdam, {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    (descend.RAdam, {"lr": 0.01}),
    (descend.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    (descend.Adadelta, {"lr": 0.5}),
    (descend.Adagrad, {"lr": 0.1, "initial_accumulator_value": 0.1, "lr_decay": 0.01}),
    (descend.ASGD, {"lr": 0.01, "t0": 2}),
    (descend.Rprop, {"lr": 0.01}),
]
IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(CASES)]


def make_model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(4, 8),
            torch.nn.Tanh(),
            torch.nn.Linear(8, 3),
            torch.nn.Tanh(),
            torch.nn.Linear(3, 2),
        ).to(F64)


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(16, 4, generator=generator, dtype=F64), torch.randn(
        16, 2, generator=generator, dtype=F64
    )


def train(model, optimizer, steps: int, start: int = 0, zero=None) -> None:
    for step in range(start, start + steps):
        (zero or optimizer.zero_grad)()
        x, y = batch(step)
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def assert_same(model_a, opt_a, model_b, opt_b) -> None:
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(p, q)
    a, b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert a.keys() == b.keys()
    for index in a:
        assert a[index].keys() == b[index].keys()
        for key in a[index]:
            assert torch.equal(torch.as_tensor(a[index][key]), torch.as_tensor(b[index][key]))


# --------------------------------------------------------------------------------------
# flatten itself
# --------------------------------------------------------------------------------------


def test_flatten_makes_parameters_and_gradients_views_of_one_buffer():
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    (flat,) = descend.flatten(model)
    assert isinstance(flat, FlatBuffer) and len(flat) == 6
    # sizes 32, 8, 24, 3, 6, 2; each view starts at a multiple of 64 bytes (8 float64s)
    assert flat.offsets == [0, 32, 40, 64, 72, 80]
    assert flat.data.numel() == 88
    for param, value, offset in zip(model.parameters(), before, flat.offsets):
        assert torch.equal(param, value)  # values kept
        assert param.data_ptr() == flat.data.data_ptr() + offset * 8
        assert param.grad.data_ptr() == flat.grad.data_ptr() + offset * 8
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 3.0))
    assert flat.grad[32:].abs().sum() == 0  # parameters without a gradient get zeros
    gaps = torch.ones(88, dtype=torch.bool)
    for param, offset in zip(model.parameters(), flat.offsets):
        gaps[offset : offset + param.numel()] = False
    assert gaps.sum() == 88 - 75 and flat.data[gaps].abs().sum() == 0


def test_flatten_groups_by_dtype_and_skips_what_it_cannot_hold():
    a = torch.zeros(3, requires_grad=True)
    b = torch.ones(2, dtype=F64, requires_grad=True)
    c = torch.zeros(4, requires_grad=True)
    counts = torch.zeros(2, dtype=torch.long)
    buffers = descend.flatten([a, b, c, a, counts])
    assert [(f.data.dtype, f.offsets, len(f)) for f in buffers] == [
        (torch.float32, [0, 16], 2),
        (F64, [0], 1),
    ]
    assert counts.data_ptr() not in {f.data.data_ptr() for f in buffers}


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (torch.zeros(3), "flatten takes a module or an iterable of tensors, got one tensor"),
        ([torch.zeros(3), 1.0], "flatten takes tensors, got float 1.0"),
    ],
)
def test_flatten_refuses_what_is_not_tensors(argument, message):
    with pytest.raises(TypeError, match=message):
        descend.flatten(argument)


class _Dispatching(torch.Tensor):
    """A tensor subclass that dispatches its operations, as DTensor does."""

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _Plain(torch.nn.Parameter):
    pass


def test_flatten_refuses_dispatching_tensor_subclasses_and_changes_nothing():
    plain = torch.zeros(3, requires_grad=True)
    sharded = torch.ones(2, 2).as_subclass(_Dispatching).requires_grad_()
    with pytest.raises(
        TypeError,
        match=re.escape("flatten takes tensors that hold their own data, got a _Dispatching"),
    ):
        descend.flatten([plain, sharded])
    assert getattr(plain, descend.flat.FLAT_ATTRIBUTE, None) is None
    assert plain._base is None and plain.untyped_storage().nbytes() == 12
    # a subclass of Parameter that leaves dispatch alone is flattened as any parameter
    param = _Plain(torch.arange(4.0))
    (flat,) = descend.flatten([plain, param])
    assert flat.data.untyped_storage().data_ptr() == param.untyped_storage().data_ptr()
    assert torch.equal(param, torch.arange(4.0)) and type(param) is _Plain


def test_backward_accumulates_into_the_buffer():
    model = make_model()
    (flat,) = descend.flatten(model)
    x, y = batch(0)
    torch.nn.functional.mse_loss(model(x), y).backward()
    once = flat.grad.clone()
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert torch.equal(flat.grad, 2 * once)
    assert all(p.grad is v for p, v in zip(model.parameters(), flat.grad_views))
    reference = make_model()
    torch.nn.functional.mse_loss(reference(x), y).backward()
    for view, param in zip(flat.grad_views, reference.parameters()):
        assert torch.equal(view, 2 * param.grad)


# --------------------------------------------------------------------------------------
# The flat update
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "options"), CASES, ids=IDS)
def test_flat_update_equals_the_loop_reference_bitwise(cls, options):
    reference, model = make_model(), make_model()
    (flat,) = descend.flatten(model)
    opt_ref = cls(reference.parameters(), impl="loop", **options)
    opt = cls(model.parameters(), **options)
    train(reference, opt_ref, 6, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 6)
    assert_same(reference, opt_ref, model, opt)
    # the state lives in flat buffers: per-element entries are views, scalars shared
    assert flat.owner is not None
    assert bool(flat.state) == bool(opt_ref.state)  # plain SGD keeps none
    for key, value in flat.state.items():
        entries = [opt.state[p][key] for p in model.parameters()]
        if isinstance(value, torch.Tensor) and value.dim() == 1:
            for entry, offset in zip(entries, flat.offsets):
                assert entry.data_ptr() == value.data_ptr() + offset * 8
        else:
            assert all(entry is value for entry in entries)


@pytest.mark.parametrize(("cls", "options"), CASES[:9], ids=IDS[:9])
def test_flat_update_matches_torch_optim(cls, options):
    torch_cls = getattr(torch.optim, cls.__name__)
    reference, model = make_model(), make_model()
    descend.flatten(model)
    opt_ref = torch_cls(reference.parameters(), foreach=False, **options)
    opt = cls(model.parameters(), **options)
    train(reference, opt_ref, 6, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 6)
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)


def test_zero_grad_keeps_the_views_and_a_replaced_gradient_is_copied_back():
    reference, model = make_model(), make_model()
    (flat,) = descend.flatten(model)
    opt_ref = descend.Adam(reference.parameters(), lr=0.01, impl="loop")
    opt = descend.Adam(model.parameters(), lr=0.01)
    opt.zero_grad()  # set_to_none=True is torch's default; the views stay
    assert all(p.grad is v for p, v in zip(model.parameters(), flat.grad_views))
    # model.zero_grad() sets every gradient to None: the next step copies them back
    train(reference, opt_ref, 4, zero=lambda: reference.zero_grad(set_to_none=False))
    train(model, opt, 4, zero=model.zero_grad)
    assert_same(reference, opt_ref, model, opt)
    assert all(p.grad is v for p, v in zip(model.parameters(), flat.grad_views))


def test_state_dicts_load_both_ways_and_the_loaded_state_is_gathered():
    """A flat optimizer's state_dict loads into torch's and descend's plain optimizers; a
    plain one's loads into a flat optimizer, which gathers it at its next step. Each
    resumed run equals a plain run resumed from the same state (NAdam: torch's loading
    casts its float32 ``mu_product`` to the parameters' dtype, so torch's resumed NAdam
    differs from descend's, which keeps the saved dtype, in the last bits)."""
    reference, model = make_model(), make_model()
    descend.flatten(model)
    opt_ref = descend.NAdam(reference.parameters(), lr=0.01, impl="loop")
    opt = descend.NAdam(model.parameters(), lr=0.01)
    train(reference, opt_ref, 3, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 3)
    saved_flat, saved_ref = copy.deepcopy(opt.state_dict()), copy.deepcopy(opt_ref.state_dict())

    def resumed(flat: bool, saved: dict, cls=descend.NAdam):
        twin = copy.deepcopy(reference)
        if flat:
            descend.flatten(twin)
        options = {} if cls is torch.optim.NAdam else {"impl": None if flat else "loop"}
        optimizer = cls(twin.parameters(), lr=0.01, **options)
        optimizer.load_state_dict(copy.deepcopy(saved))
        train(twin, optimizer, 3, start=3, zero=lambda: optimizer.zero_grad(set_to_none=False))
        return twin, optimizer

    plain, plain_opt = resumed(False, saved_ref)
    assert_same(*resumed(True, saved_ref), plain, plain_opt)  # plain state into flat
    assert_same(*resumed(False, saved_flat), plain, plain_opt)  # flat state into plain
    torch_model, _ = resumed(False, saved_flat, torch.optim.NAdam)  # and into torch's
    for p, q in zip(plain.parameters(), torch_model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-12)
    # the uninterrupted flat run still equals the uninterrupted plain one
    train(reference, opt_ref, 3, start=3, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 3, start=3)
    assert_same(reference, opt_ref, model, opt)
    flat_model, flat_opt = resumed(True, saved_ref)
    (flat,) = {p._descend_flat for p in flat_model.parameters()}
    assert (
        flat.state["exp_avg"].data_ptr()
        == flat_opt.state[flat_model[0].weight]["exp_avg"].data_ptr()
    )


def test_groups_that_split_a_buffer_update_tensor_by_tensor():
    reference, model = make_model(), make_model()
    (flat,) = descend.flatten(model)
    params, params_ref = list(model.parameters()), list(reference.parameters())
    opt = descend.Adam([{"params": params[:3]}, {"params": params[3:], "lr": 0.1}], lr=0.01)
    opt_ref = descend.Adam(
        [{"params": params_ref[:3]}, {"params": params_ref[3:], "lr": 0.1}],
        lr=0.01,
        impl="loop",
    )
    train(reference, opt_ref, 4, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 4)
    assert_same(reference, opt_ref, model, opt)
    assert flat.state == {}  # never updated whole


def test_a_group_with_a_buffer_and_other_tensors():
    reference, model = make_model(), make_model()
    extra, extra_ref = (
        torch.ones(5, dtype=F64, requires_grad=True),
        torch.ones(5, dtype=F64, requires_grad=True),
    )
    descend.flatten(model)
    opt = descend.RMSprop([*model.parameters(), extra], lr=0.01)
    opt_ref = descend.RMSprop([*reference.parameters(), extra_ref], lr=0.01, impl="loop")
    for step in range(4):
        for m, o, e in ((reference, opt_ref, extra_ref), (model, opt, extra)):
            o.zero_grad(set_to_none=False)
            x, y = batch(step)
            (torch.nn.functional.mse_loss(m(x), y) + (e**2).sum()).backward()
            o.step()
    assert torch.equal(extra, extra_ref)
    assert_same(reference, opt_ref, model, opt)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps, **kw: descend.SGD(ps, lr=0.1, momentum=0.9, **kw),
        lambda ps, **kw: descend.Adam(ps, lr=0.01, **kw),
        lambda ps, **kw: descend.NAdam(ps, lr=0.01, **kw),
    ],
    ids=["SGD", "Adam", "NAdam"],
)
def test_a_parameter_moved_out_of_its_buffer_warns_once_and_training_stays_right(make):
    """The shared step count goes back to one per parameter, or a per-tensor step would
    count it once per parameter."""
    reference, model = make_model(), make_model()
    (flat,) = descend.flatten(model)
    opt_ref = make(reference.parameters(), impl="loop")
    opt = make(model.parameters())
    train(reference, opt_ref, 2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 2)
    model[2].weight.data = model[2].weight.data.clone()  # no longer in the buffer
    with pytest.warns(UserWarning, match="no longer lives in its flat buffer"):
        train(model, opt, 1, start=2)
    train(reference, opt_ref, 1, start=2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, opt, 2, start=3)
    train(reference, opt_ref, 2, start=3, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    assert flat.broken
    assert_same(reference, opt_ref, model, opt)


def test_optimizers_without_a_flat_update_work_on_flattened_parameters():
    reference, model = make_model(), make_model()
    (flat,) = descend.flatten(model)
    opt_ref = descend.Adafactor(reference.parameters(), lr=0.01)
    opt = descend.Adafactor(model.parameters(), lr=0.01)
    train(reference, opt_ref, 3, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 3)
    assert_same(reference, opt_ref, model, opt)
    assert flat.state == {}


def test_an_optimizer_made_before_flatten_updates_the_buffer_whole():
    reference, model = make_model(), make_model()
    opt_ref = descend.Adam(reference.parameters(), lr=0.01, impl="loop")
    opt = descend.Adam(model.parameters(), lr=0.01)
    train(reference, opt_ref, 2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 2, zero=lambda: opt.zero_grad(set_to_none=False))
    (flat,) = descend.flatten(model)
    train(reference, opt_ref, 3, start=2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 3, start=2)
    assert flat.owner is not None and flat.state["step"] == 5
    assert_same(reference, opt_ref, model, opt)


def test_flattening_again_moves_the_state_to_the_new_buffer_without_a_warning():
    reference, model = make_model(), make_model()
    (first,) = descend.flatten(model)
    opt_ref = descend.RAdam(reference.parameters(), lr=0.01, impl="loop")
    opt = descend.RAdam(model.parameters(), lr=0.01)
    train(reference, opt_ref, 2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (second,) = descend.flatten(model)
        train(model, opt, 3, start=2)
    train(reference, opt_ref, 3, start=2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    assert first.replaced and second.owner is not None and second.state["step"] == 5
    assert_same(reference, opt_ref, model, opt)


def test_clearing_the_state_starts_it_afresh():
    reference, model = make_model(), make_model()
    descend.flatten(model)
    opt_ref = descend.Adam(reference.parameters(), lr=0.01, impl="loop")
    opt = descend.Adam(model.parameters(), lr=0.01)
    for optimizer, net in ((opt_ref, reference), (opt, model)):
        train(net, optimizer, 2, zero=lambda o=optimizer: o.zero_grad(set_to_none=False))
        optimizer.state.clear()
        train(net, optimizer, 2, start=2, zero=lambda o=optimizer: o.zero_grad(set_to_none=False))
    assert len(opt.state_dict()["state"]) == 6
    assert_same(reference, opt_ref, model, opt)


def test_frozen_parameters_are_not_updated():
    """Frozen before flattening: left out of the buffer. Frozen after: its gradient stays
    None, and the buffer is updated tensor by tensor while it is frozen."""
    reference, model = make_model(), make_model()
    for net in (reference, model):
        net[0].weight.requires_grad_(False)
    (flat,) = descend.flatten(model)
    assert all(p is not model[0].weight for p in flat.params)
    opt_ref = torch.optim.AdamW(reference.parameters(), lr=0.01, foreach=False)
    opt = descend.AdamW(model.parameters(), lr=0.01)
    train(reference, opt_ref, 2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 2)
    for net in (reference, model):
        net[2].weight.requires_grad_(False)
        net[2].weight.grad = None  # as torch leaves a parameter frozen before its first grad
    frozen = model[2].weight.detach().clone()
    train(reference, opt_ref, 2, start=2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 2, start=2)
    assert torch.equal(model[2].weight, frozen) and model[2].weight.grad is None
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14)


def test_two_optimizers_over_one_buffer_zero_only_their_own_gradients():
    reference, model = make_model(), make_model()
    descend.flatten(model)
    head, body = list(model.parameters())[4:], list(model.parameters())[:4]
    head_ref, body_ref = list(reference.parameters())[4:], list(reference.parameters())[:4]
    opts = [descend.SGD(body, lr=0.1, momentum=0.9), descend.Adam(head, lr=0.01)]
    refs = [
        descend.SGD(body_ref, lr=0.1, momentum=0.9, impl="loop"),
        descend.Adam(head_ref, lr=0.01, impl="loop"),
    ]
    for step in range(3):
        for net, pair in ((reference, refs), (model, opts)):
            for optimizer in pair:
                optimizer.zero_grad(set_to_none=False)
            x, y = batch(step)
            torch.nn.functional.mse_loss(net(x), y).backward()
            pair[0].step()
            pair[0].zero_grad(set_to_none=False)  # must not touch the head's gradients
            pair[1].step()
    for p, q in zip(reference.parameters(), model.parameters()):
        assert torch.equal(p, q)


def test_sparse_embeddings_stay_out_of_the_buffer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4, sparse=True), torch.nn.Linear(4, 1))
    buffers = descend.flatten(model)
    assert [len(flat) for flat in buffers] == [2]
    optimizer = descend.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        model.zero_grad()
        model(torch.tensor([1, 2, 3])).sum().backward()
        assert model[0].weight.grad.is_sparse
        optimizer.step()


def test_a_copy_of_a_flat_optimizer_trains_like_the_original():
    reference, model = make_model(), make_model()
    descend.flatten(model)
    opt_ref = descend.Adam(reference.parameters(), lr=0.01, impl="loop")
    opt = descend.Adam(model.parameters(), lr=0.01)
    train(reference, opt_ref, 2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model, opt, 2)
    model2, opt2 = copy.deepcopy((model, opt))
    train(reference, opt_ref, 3, start=2, zero=lambda: opt_ref.zero_grad(set_to_none=False))
    train(model2, opt2, 3, start=2, zero=lambda: opt2.zero_grad(set_to_none=False))
    assert_same(reference, opt_ref, model2, opt2)
