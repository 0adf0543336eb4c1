"""The MindSpore nn.Optimizer base: parameters, groups, the gradient pipeline, calling
styles, and the guide's hand-written optimizers.

The oracle for the pipeline is a NumPy transcription of MindSpore's
``nn/optim/optimizer.py`` (decay_weight, gradients_centralization, scale_grad, get_lr at
the global step), run in float32 under a plain gradient step ``w -= lr · g``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import descend
from descend.compat.mindspore._optimizer import Optimizer, trainable_params
from descend.compat.mindspore.experimental.optim._optimizer import Optimizer as ExOptimizer
from descend.compat.mindspore.ops import ApplyMomentum, assign


class Net(torch.nn.Module):
    """The guide's network: a bias-free convolution (MindSpore's Conv2d has no bias by
    default) and a scalar parameter of the cell itself."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 5, bias=False)
        self.param = torch.nn.Parameter(torch.tensor([1.0]))

    def forward(self, x):
        x = self.conv(x) * self.param
        return torch.matmul(x, x)


class PlainStep(Optimizer):
    """The base's pipeline under ``w -= lr · g``."""

    def _apply(self, group, values, params, grads):
        for param, grad in zip(params, grads):
            param.add_(grad, alpha=-values["lr"])


# --------------------------------------------------------------------------------------
# trainable_params, as the guide's first examples use it
# --------------------------------------------------------------------------------------


def test_trainable_params_lists_named_parameters_that_require_grad_in_mindsporess_order():
    net = Net()
    listed = trainable_params(net)
    assert [(name, tuple(p.shape)) for name, p in listed] == [
        ("param", (1,)),
        ("conv.weight", (6, 1, 5, 5)),
    ]  # the guide prints param, then conv.weight
    for name, p in listed:
        if "conv" in name:
            p.requires_grad = False
    assert [name for name, _ in trainable_params(net)] == ["param"]
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.Module, got list"):
        trainable_params([])


# --------------------------------------------------------------------------------------
# The gradient pipeline against MindSpore's formulas
# --------------------------------------------------------------------------------------


def pipeline_oracle(weights, grads_per_step, lrs, decays, flags, centralize, loss_scale):
    """MindSpore's optimizer.py, in float32: g += wd·loss_scale·w where flagged, then
    centralization, then g·(1/loss_scale), then w -= lr·g."""
    weights = [np.array(w, dtype=np.float32) for w in weights]
    reciprocal = np.float32(1.0 / loss_scale)
    for step, grads in enumerate(grads_per_step):
        new = []
        for i, (w, g) in enumerate(zip(weights, grads)):
            g = np.array(g, dtype=np.float32)
            decay = np.float32(decays[i](step) * loss_scale)
            if flags[i] and (decay > 0 or callable(decays[i])):
                g = g + w * decay
            if centralize[i] and g.ndim > 1 and g.shape[1] % 16 == 0:
                g = g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)
            if loss_scale != 1.0:
                g = g * reciprocal
            new.append(w - np.float32(lrs[i](step)) * g)
        weights = new
    return weights


def tensors(seed: int):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(32, 16, 3, 3), (4, 5), (5,), (3,)]
    return [torch.randn(s, generator=generator) for s in shapes]


def gradients(steps: int):
    generator = torch.Generator().manual_seed(7)
    return [[torch.randn(t.shape, generator=generator) for t in tensors(0)] for _ in range(steps)]


def assert_close_f32(ours, expected):
    for a, b in zip(ours, expected):
        b = np.asarray(b)
        error = np.abs(a.detach().numpy() - b).max() / max(np.abs(b).max(), 1e-30)
        assert error <= 1e-6, error


@pytest.mark.parametrize("style", ["call", "step"])
def test_the_pipeline_without_groups_decays_all_but_beta_and_gamma(style):
    weights = tensors(0)
    names = ["conv.weight", "fc.weight", "bn.gamma", "bn.beta"]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    lr = [0.1, 0.05, 0.02] + [0.01] * 20  # per-step values
    optimizer = PlainStep(lr, list(zip(names, params)), weight_decay=0.3, loss_scale=128.0)
    grads = gradients(12)
    for step_grads in grads:
        scaled = [g * 128.0 for g in step_grads]
        if style == "call":
            optimizer(tuple(scaled))
        else:
            for p, g in zip(params, scaled):
                p.grad = g
            optimizer.step()
    expected = pipeline_oracle(
        [w.numpy() for w in weights],
        [[g.numpy() * 128.0 for g in s] for s in grads],
        [lambda t: lr[t]] * 4,
        [lambda t: 0.3] * 4,
        [True, True, False, False],
        [False] * 4,
        128.0,
    )
    assert_close_f32(params, expected)
    assert optimizer.global_step == 12


def test_groups_with_their_own_lr_decay_and_centralization_and_an_order():
    weights = tensors(0)
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    schedule = descend.schedules.Linear(0.1, 0.01, 8)
    decay = lambda t: 0.01 * 0.5 ** (t / 4)  # noqa: E731  a dynamic weight decay
    groups = [
        {"params": [params[0], params[1]], "lr": schedule, "grad_centralization": True},
        {"params": [("bn.gamma", params[2]), params[3]], "weight_decay": decay, "lr": 0.05},
        {"order_params": [params[3], params[2], params[1], params[0]]},
    ]
    optimizer = PlainStep(0.2, groups, weight_decay=0.1)
    assert [tuple(p.shape) for p in optimizer.parameters] == [(3,), (5,), (4, 5), (32, 16, 3, 3)]
    grads = gradients(10)
    for step_grads in grads:
        optimizer(tuple(reversed(step_grads)))  # in the order of optimizer.parameters
    expected = pipeline_oracle(
        [w.numpy() for w in weights],
        [[g.numpy() for g in s] for s in grads],
        [schedule, schedule, lambda t: 0.05, lambda t: 0.05],
        [lambda t: 0.1, lambda t: 0.1, decay, decay],
        [True] * 4,  # in groups the name does not matter
        [True, True, False, False],
        1.0,
    )
    assert_close_f32(params, expected)
    lrs = optimizer.get_lr()
    assert lrs == (0.05, 0.05, schedule(10), schedule(10))  # one per parameter, in order
    assert optimizer.get_lr_parameter(params[2]) == 0.05


def test_centralization_needs_two_dimensions_and_a_second_one_divisible_by_16():
    params = [torch.nn.Parameter(torch.zeros(s)) for s in [(2, 16), (2, 8), (16,)]]
    optimizer = PlainStep(1.0, [{"params": params, "grad_centralization": True}])
    grads = tuple(torch.arange(float(p.numel())).reshape(p.shape) for p in params)
    centred = optimizer.gradients_centralization(grads)
    assert torch.allclose(centred[0].mean(dim=1), torch.zeros(2))
    assert torch.equal(centred[1], grads[1]) and torch.equal(centred[2], grads[2])


def _row_gradient(rows: list[int], values: torch.Tensor, shape: tuple[int, ...]):
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape, check_invariants=True)


def test_sparse_gradients_are_decayed_on_their_rows_as_mindspore_decays_a_row_tensor():
    table = torch.nn.Parameter(torch.arange(12.0).reshape(4, 3))
    gamma = torch.nn.Parameter(torch.ones(4, 3))
    optimizer = PlainStep(0.1, [("table", table), ("gamma", gamma)], weight_decay=0.5)
    values = torch.full((2, 3), 2.0)
    decayed, kept = optimizer.decay_weight(
        (_row_gradient([3, 1], values, (4, 3)), _row_gradient([0], values[:1], (4, 3)))
    )
    assert decayed.is_sparse and kept.is_sparse
    expected = torch.zeros(4, 3)
    expected[[1, 3]] = 2.0 + 0.5 * table.detach()[[1, 3]]
    assert torch.equal(decayed.to_dense(), expected)
    assert torch.equal(kept.to_dense()[0], torch.full((3,), 2.0))  # "gamma": not decayed


def test_sparse_gradients_are_centralized_on_the_rows_they_hold():
    params = [torch.nn.Parameter(torch.zeros(5, 16)), torch.nn.Parameter(torch.zeros(5, 8))]
    optimizer = PlainStep(1.0, [{"params": params, "grad_centralization": True}])
    values = torch.arange(32.0).reshape(2, 16)
    grads = (_row_gradient([4, 1], values, (5, 16)), _row_gradient([2], values[:1, :8], (5, 8)))
    centred, kept = optimizer.gradients_centralization(grads)
    assert centred.is_sparse and kept.is_sparse
    dense = grads[0].to_dense()
    assert torch.equal(centred.to_dense(), dense - dense.mean(dim=1, keepdim=True))
    assert torch.equal(kept.to_dense(), grads[1].to_dense())  # 8 is not a multiple of 16


def test_get_lr_and_weight_decay_follow_the_global_step():
    p = torch.nn.Parameter(torch.zeros(2))
    optimizer = PlainStep([0.3, 0.2, 0.1], [p], weight_decay=lambda t: 0.1 * (t + 1))
    seen = []
    for _ in range(3):
        seen.append((optimizer.get_lr(), optimizer.get_weight_decay()))
        optimizer((torch.ones(2),))
    flat = [value for pair in seen for value in pair]
    assert flat == pytest.approx([0.3, 0.1, 0.2, 0.2, 0.1, 0.3], rel=1e-7)
    with pytest.raises(IndexError, match="step 3 is past its end"):
        optimizer((torch.ones(2),))
    assert optimizer.global_step == 3


# --------------------------------------------------------------------------------------
# The guide's hand-written Momentum, both versions
# --------------------------------------------------------------------------------------


class AssignMomentum(Optimizer):
    def __init__(self, params, learning_rate, momentum=0.9):
        super().__init__(learning_rate, params)
        self.momentum = momentum
        self.moments = self.parameters.clone(prefix="moments", init="zeros")

    def construct(self, gradients):
        lr = self.get_lr()
        params = self.parameters
        for i in range(len(params)):
            assign(self.moments[i], self.moments[i] * self.momentum + gradients[i])
            update = params[i] - self.moments[i] * lr
            assign(params[i], update)
        return params


class OpMomentum(Optimizer):
    def __init__(self, params, learning_rate, momentum=0.9):
        super().__init__(learning_rate, params)
        self.moments = self.parameters.clone(prefix="moments", init="zeros")
        self.momentum = momentum
        self.opt = ApplyMomentum()

    def construct(self, gradients):
        params = self.parameters
        success = None
        for param, mom, grad in zip(params, self.moments, gradients):
            success = self.opt(param, mom, self.get_lr(), grad, self.momentum)
        return success


@pytest.mark.parametrize("cls", [AssignMomentum, OpMomentum])
def test_the_guides_custom_momentum_ports_and_follows_its_formula(cls):
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(2, 1, 12, 12) * 0.1
    optimizer = cls(trainable_params(net), 0.01)
    weights = [p.detach().numpy().copy() for p in net.parameters()]
    moments = [np.zeros_like(w) for w in weights]
    for _ in range(10):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        grads = [p.grad.numpy().copy() for p in net.parameters()]
        optimizer.step()
        for i, g in enumerate(grads):  # v = u·v + g; p -= lr·v (the guide's formulas)
            moments[i] = moments[i] * np.float32(0.9) + g
            weights[i] = weights[i] - moments[i] * np.float32(0.01)
    assert_close_f32(list(net.parameters()), weights)
    assert list(optimizer.state_dict()["state"][0]) == ["moments"]


# --------------------------------------------------------------------------------------
# The experimental base
# --------------------------------------------------------------------------------------


class ExSGD(ExOptimizer, descend.SGD):
    ms_keys = ("lr", "momentum", "weight_decay")


def test_experimental_groups_keep_lr_as_a_float32_tensor_changed_in_place():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    optimizer = ExSGD([{"params": [a]}, {"params": [b], "lr": 0.66}], lr=0.1)
    lr = optimizer.param_groups[1]["lr"]
    assert lr.dtype == torch.float32 and lr.dim() == 0 and lr.item() == np.float32(0.66)
    assign(lr, 0.01)
    optimizer((torch.ones(2), torch.ones(3)))
    assert torch.allclose(b, torch.full((3,), -0.01)) and torch.allclose(a, torch.full((2,), -0.1))
    assert a.grad is None and b.grad is None
    assert str(optimizer) == (
        "ExSGD (\nParameter Group 0\n    lr: 0.1\n    momentum: 0\n    weight_decay: 0\n\n"
        "Parameter Group 1\n    lr: 0.01\n    momentum: 0\n    weight_decay: 0\n)"
    )


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p: PlainStep(-0.1, [p]), ValueError, "learning_rate must be >= 0, got -0.1"),
        (lambda p: PlainStep("0.1", [p]), TypeError, "learning_rate must be a number"),
        (lambda p: PlainStep(0.1, [p], loss_scale=0.0), ValueError, "loss_scale must be > 0"),
        (lambda p: PlainStep(0.1, [p], weight_decay=-1.0), ValueError, "weight_decay must be >= 0"),
        (lambda p: PlainStep(0.1, [p], weight_decay="x"), TypeError, "weight_decay must be a num"),
        (lambda p: PlainStep(0.1, []), ValueError, "parameters must not be empty"),
        (lambda p: PlainStep(0.1, [{"params": [p], "eps": 1}]), KeyError, "the key"),
        (
            lambda p: PlainStep(0.1, [{"params": [p]}, {"order_params": [p], "lr": 1}]),
            ValueError,
            "must hold only 'order_params'",
        ),
        (
            lambda p: PlainStep(0.1, [{"params": [p], "grad_centralization": 1}]),
            TypeError,
            "grad_centralization must be True or False",
        ),
        (lambda p: PlainStep(torch.zeros(2, 2), [p]), ValueError, "0 or 1 dimensions"),
    ],
)
def test_bad_arguments_are_refused_naming_them(make, error, message):
    with pytest.raises(error, match=message):
        make(torch.nn.Parameter(torch.zeros(2)))


def test_wrong_gradients_are_refused_and_change_nothing():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    optimizer = PlainStep(0.1, [("w", p), ("v", q)])
    with pytest.raises(ValueError, match="got 1 gradients for 2 parameters"):
        optimizer((torch.ones(2),))
    with pytest.raises(ValueError, match=r"gradient 1 \(v\) is \(2,\); its parameter has shape"):
        optimizer((torch.ones(2), torch.ones(2)))
    assert torch.equal(p, torch.ones(2)) and optimizer.global_step == 0


# --------------------------------------------------------------------------------------
# add_param_group (torch's; MindSpore's optimizers have none)
# --------------------------------------------------------------------------------------


def test_an_unnamed_group_joins_an_optimizer_of_named_parameters():
    """Built from trainable_params (names), then given a group of a plain tensor: the
    groups drop their names (torch refuses groups with and without them), the tensor
    joins ``parameters`` last, and both calling styles update it."""
    net = torch.nn.Linear(3, 2)
    optimizer = PlainStep(0.1, trainable_params(net))
    assert [g["param_names"] for g in optimizer.param_groups] == [["weight", "bias"]]
    extra = torch.nn.Parameter(torch.ones(2))
    optimizer.add_param_group({"params": [extra], "lr": 0.5})
    assert all("param_names" not in g for g in optimizer.param_groups)
    assert [p is q for p, q in zip(optimizer.parameters, [net.weight, net.bias, extra])] == [
        True
    ] * 3
    weight, bias = net.weight.detach().clone(), net.bias.detach().clone()
    grads = (torch.full((2, 3), 2.0), torch.full((2,), 3.0), torch.full((2,), 4.0))
    optimizer(grads)
    assert torch.equal(net.weight, weight - 0.1 * grads[0])
    assert torch.equal(net.bias, bias - 0.1 * grads[1])
    assert torch.equal(extra, torch.ones(2) - 0.5 * grads[2])
    extra.grad = torch.ones(2)
    net.weight.grad, net.bias.grad = torch.zeros(2, 3), torch.zeros(2)
    optimizer.step()
    assert torch.equal(extra, torch.ones(2) - 0.5 * grads[2] - 0.5)
    assert optimizer.global_step == 2


def test_a_named_group_keeps_every_groups_names():
    net = torch.nn.Linear(3, 2)
    optimizer = PlainStep(0.1, trainable_params(net))
    extra = torch.nn.Parameter(torch.ones(2))
    optimizer.add_param_group({"params": [("extra", extra)]})
    assert [g["param_names"] for g in optimizer.param_groups] == [["weight", "bias"], ["extra"]]
    assert optimizer.param_groups[1]["params"][0] is extra
    assert optimizer.state_dict()["param_groups"][1]["param_names"] == ["extra"]
    with pytest.raises(ValueError, match=r"gradient 2 \(extra\) is \(3,\)"):
        optimizer((torch.zeros(2, 3), torch.zeros(2), torch.zeros(3)))


def test_a_refused_group_changes_nothing():
    net = torch.nn.Linear(3, 2)
    optimizer = PlainStep(0.1, trainable_params(net))
    with pytest.raises(ValueError, match=r"is already in a parameter group"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(2)), net.bias]})
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["param_names"] == ["weight", "bias"]
    assert len(optimizer.parameters) == 2
