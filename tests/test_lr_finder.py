"""descend.lr_finder.lr_find: the sweep, the smoothing, the stopping rules and the
suggestion against hand computations in float64; restoring the model and the optimizer
bitwise; errors; the plot.

The controlled problem is the 1-D quadratic ``0.5 · a · x²`` under plain SGD: the update
``x ← (1 - lr·a) x`` shrinks ``x`` exactly when ``lr < 2/a``, so the loss falls until the
sweep passes ``2/a`` and grows after it. While ``lr·a`` is small the loss after step ``i``
is about ``L0 · exp(-2a Σ_{j≤i} lr_j)``, and for a geometric sweep with ratio ``r`` per
step ``Σ_{j≤i} lr_j ≈ lr_i / (1 - 1/r)``: so ``L ≈ L0 · exp(-c · lr)`` with
``c = 2a / (1 - 1/r)``, which falls fastest against ``log(lr)`` at ``lr* = 1/c``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import descend
from descend.lr_finder import LRFinderResult, lr_find
from descend.schedules import Cosine

F64 = torch.float64


# --------------------------------------------------------------------------------------
# Problems and helpers
# --------------------------------------------------------------------------------------


class Quadratic(torch.nn.Module):
    """One parameter ``x``; the loss ``0.5 · a · x²`` comes from :meth:`loss`."""

    def __init__(self, a: float = 4.0, x0: float = 1.0) -> None:
        super().__init__()
        self.a = a
        self.x = torch.nn.Parameter(torch.tensor([x0], dtype=F64))

    def loss(self, model: torch.nn.Module, batch: object) -> torch.Tensor:
        return 0.5 * self.a * (model.x**2).sum()


def quadratic_find(a: float = 4.0, **options: object) -> tuple[LRFinderResult, Quadratic]:
    model = Quadratic(a)
    optimizer = descend.SGD(model.parameters(), lr=1e-4)
    options = {"start_lr": 1e-4, "end_lr": 10.0, "steps": 100, **options}
    result = lr_find(model, None, [None], optimizer, forward=model.loss, **options)
    return result, model


def least_squares() -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(3, 1, dtype=F64)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 3, generator=generator, dtype=F64))
        model.bias.copy_(torch.randn(1, generator=generator, dtype=F64))
    batches = [
        (
            torch.randn(8, 3, generator=generator, dtype=F64),
            torch.randn(8, 1, generator=generator, dtype=F64),
        )
        for _ in range(3)
    ]
    return model, batches


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8, dtype=F64),
        torch.nn.BatchNorm1d(8, dtype=F64),
        torch.nn.Tanh(),
        torch.nn.Dropout(0.0),
        torch.nn.Linear(8, 2, dtype=F64),
    )


def bn_batches(count: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(16, 4, generator=generator, dtype=F64),
            torch.randn(16, 2, generator=generator, dtype=F64),
        )
        for _ in range(count)
    ]


def trained_adam(model: torch.nn.Module, batches: list) -> descend.Adam:
    """descend.Adam with a schedule as lr, after a few real steps, so it has state."""
    optimizer = descend.Adam(model.parameters(), lr=Cosine(0.01, 100))
    for inputs, targets in batches:
        optimizer.zero_grad()
        mse(model(inputs), targets).backward()
        optimizer.step()
    return optimizer


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Everything lr_find must leave as it was, copied."""
    return {
        "model": copy.deepcopy(model.state_dict()),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "lr_objects": [group["lr"] for group in optimizer.param_groups],
        "counters": (
            getattr(optimizer, "steps_taken", None),
            getattr(optimizer, "steps_skipped", None),
        ),
    }


def assert_same(a: object, b: object, where: str = "") -> None:
    """Bitwise equality of nested dicts, lists and tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_unchanged(
    before: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    after = capture(model, optimizer)
    assert_same(before["model"], after["model"], "model")
    assert_same(before["grads"], after["grads"], "grads")
    assert before["modes"] == after["modes"]
    assert_same(before["optimizer"], after["optimizer"], "optimizer")
    assert all(x is y for x, y in zip(before["lr_objects"], after["lr_objects"]))
    assert before["counters"] == after["counters"]


def geometric(start: float, end: float, steps: int) -> list[float]:
    return [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]


# --------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------


def test_lrs_are_the_geometric_sweep():
    model, batches = least_squares()
    result = lr_find(model, mse, batches, start_lr=1e-5, end_lr=1e-2, steps=17, diverge=None)
    assert result.lrs == geometric(1e-5, 1e-2, 17)
    assert len(result.losses) == len(result.smoothed) == 17
    assert not result.stopped_early


@pytest.mark.parametrize("make", ["descend", "torch"])
def test_sgd_trajectory_equals_the_hand_loop(make):
    model, batches = least_squares()
    weight, bias = model.weight.detach().clone(), model.bias.detach().clone()
    sgd = descend.SGD if make == "descend" else torch.optim.SGD
    optimizer = sgd(model.parameters(), lr=0.5)
    steps, start, end = 12, 1e-3, 0.3
    result = lr_find(
        model, mse, batches, optimizer, start_lr=start, end_lr=end, steps=steps,
        diverge=None, restore=False,
    )  # fmt: skip
    losses = []
    for i, lr in enumerate(geometric(start, end, steps)):
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        inputs, targets = batches[i % 3]  # three batches, re-iterated
        loss = mse(inputs @ w.T + b, targets)
        losses.append(loss.item())
        gw, gb = torch.autograd.grad(loss, [w, b])
        weight, bias = weight - lr * gw, bias - lr * gb
    assert result.losses == pytest.approx(losses, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(model.weight.detach(), weight, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), bias, rtol=1e-12, atol=1e-12)
    assert losses[-1] < 0.7 * losses[0]  # the sweep did train
    # the group gets its lr object back; with restore=False its step count stays advanced
    assert optimizer.param_groups[0]["lr"] == 0.5
    if make == "descend":
        assert optimizer.param_groups[0]["step"] == steps


def test_smoothing_is_the_bias_corrected_average():
    model, batches = least_squares()
    beta = 0.9
    result = lr_find(model, mse, batches, start_lr=1e-4, end_lr=0.1, steps=20, smoothing=beta)
    average, expected = 0.0, []
    for i, loss in enumerate(result.losses):
        average = beta * average + (1 - beta) * loss
        expected.append(average / (1 - beta ** (i + 1)))
    assert result.smoothed == pytest.approx(expected, rel=1e-15)
    assert result.smoothed[0] == result.losses[0]  # bias correction: no pull towards 0
    assert result.smoothed != result.losses


def test_smoothing_zero_is_the_loss_itself():
    model, batches = least_squares()
    result = lr_find(model, mse, batches, start_lr=1e-4, end_lr=0.1, steps=20, smoothing=0)
    assert result.smoothed == result.losses


def test_forward_with_dict_batches_and_a_loader_shorter_than_the_sweep():
    generator = torch.Generator().manual_seed(2)
    items = [
        {
            "x": torch.randn(3, generator=generator, dtype=F64),
            "y": torch.randn(1, generator=generator, dtype=F64),
            "index": i,
        }
        for i in range(12)
    ]
    loader = torch.utils.data.DataLoader(items, batch_size=4, shuffle=False)  # 3 batches
    model = torch.nn.Linear(3, 1, dtype=F64)
    seen = []

    def forward(model, batch):
        seen.append(batch["index"].tolist())
        return mse(model(batch["x"]), batch["y"])

    result = lr_find(model, None, loader, forward=forward, start_lr=1e-4, end_lr=1e-2, steps=10)
    assert len(result.lrs) == 10
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]] * 3 + [[0, 1, 2, 3]]


def test_default_optimizer_is_sgd_with_momentum_and_the_model_is_restored():
    model, batches = least_squares()
    before = copy.deepcopy(model.state_dict())
    result = lr_find(model, mse, batches, start_lr=1e-4, end_lr=1.0, steps=15, diverge=None)
    assert_same(before, model.state_dict())
    assert len(result.lrs) == 15
    # the same sweep with descend.SGD(momentum=0.9), kept: the default optimizer's run
    kept, _ = least_squares()
    optimizer = descend.SGD(kept.parameters(), lr=1e-4, momentum=0.9)
    again = lr_find(
        kept, mse, batches, optimizer, start_lr=1e-4, end_lr=1.0, steps=15, diverge=None
    )
    assert again.losses == result.losses


# --------------------------------------------------------------------------------------
# Stopping
# --------------------------------------------------------------------------------------


def test_divergence_stops_early_and_records_the_diverging_step():
    result, _ = quadratic_find(end_lr=1e3, steps=60)
    assert result.stopped_early
    assert len(result.lrs) < 60
    assert len(result.losses) == len(result.smoothed) == len(result.lrs)
    assert result.lrs == geometric(1e-4, 1e3, 60)[: len(result.lrs)]
    # the last point fires the rule, none before it does
    assert result.smoothed[-1] > 4.0 * min(result.smoothed)
    for i in range(1, len(result.smoothed) - 1):
        assert result.smoothed[i] <= 4.0 * min(result.smoothed[: i + 1])


def test_diverging_step_is_not_applied():
    result, model = quadratic_find(end_lr=1e3, steps=60, smoothing=0, restore=False)
    assert result.stopped_early
    # x after the sweep is the x whose loss was recorded last: that update was not taken
    assert 0.5 * 4.0 * model.x.item() ** 2 == pytest.approx(result.losses[-1], rel=1e-12)


def test_non_finite_loss_stops_even_without_the_divergence_rule():
    result, _ = quadratic_find(end_lr=1e6, steps=200, diverge=None)
    assert result.stopped_early
    assert len(result.lrs) < 200
    assert not math.isfinite(result.losses[-1])
    assert all(math.isfinite(loss) for loss in result.losses[:-1])
    assert result.suggestion is not None and math.isfinite(result.min_loss_lr)


def test_diverge_inf_runs_the_whole_sweep():
    result, _ = quadratic_find(end_lr=10.0, steps=50, diverge=math.inf)
    assert not result.stopped_early
    assert len(result.lrs) == 50
    assert max(result.smoothed) > 4.0 * min(result.smoothed)  # the default would have stopped


# --------------------------------------------------------------------------------------
# The suggestion
# --------------------------------------------------------------------------------------

A = 4.0
STEPS = 100
RATIO = (10.0 / 1e-4) ** (1 / (STEPS - 1))
STEEPEST = (1 - 1 / RATIO) / (2 * A)  # lr* of the module docstring: about 0.0137


def test_suggestion_without_smoothing_is_where_the_quadratic_falls_fastest():
    result, _ = quadratic_find(A, smoothing=0)
    assert result.stopped_early
    assert 0.5 * STEEPEST < result.suggestion < 2 * STEEPEST < 2 / A
    # the minimum of the loss: the first lr at or past 2/a, where x stops shrinking
    m = result.lrs.index(result.min_loss_lr)
    assert result.lrs[m - 1] < 2 / A <= result.lrs[m]
    # the rule itself: steepest slope against log(lr) before the minimum
    slope = np.gradient(result.smoothed, np.log(result.lrs))
    assert result.suggestion == result.lrs[int(np.argmin(slope[:m]))]


def test_smoothed_suggestion_lags_but_stays_stable():
    result, _ = quadratic_find(A)  # smoothing 0.98: the average lags behind the loss
    assert STEEPEST < result.suggestion < 2 / A
    assert result.min_loss_lr > 2 / A


def test_suggestion_is_none_with_too_few_points_before_the_minimum():
    few, _ = quadratic_find(A, steps=4)
    assert few.suggestion is None
    rising, _ = quadratic_find(A, start_lr=1.0, end_lr=10.0, steps=20)  # lr > 2/a throughout
    assert rising.suggestion is None
    assert rising.min_loss_lr == 1.0
    assert rising.stopped_early


# --------------------------------------------------------------------------------------
# Restoring
# --------------------------------------------------------------------------------------


def test_restore_puts_model_and_descend_adam_back_bitwise():
    model = bn_model()
    batches = bn_batches()
    optimizer = trained_adam(model, batches)
    schedule = optimizer.param_groups[0]["lr"]
    model.eval()
    model[1].train()  # mixed modes, each put back
    before = capture(model, optimizer)
    result = lr_find(model, mse, batches, optimizer, start_lr=1e-5, end_lr=1.0, steps=12)
    assert len(result.lrs) >= 5
    assert_unchanged(before, model, optimizer)
    assert optimizer.param_groups[0]["lr"] is schedule
    assert optimizer.hyperparameters()["lr"] == Cosine(0.01, 100)(3)
    # and it goes on training exactly as an untouched twin does
    twin = bn_model()
    twin_optimizer = trained_adam(twin, batches)
    twin.eval()
    twin[1].train()
    for net, opt in ((model, optimizer), (twin, twin_optimizer)):
        net.train()
        opt.zero_grad()
        mse(net(batches[0][0]), batches[0][1]).backward()
        opt.step()
    assert_same(model.state_dict(), twin.state_dict())
    assert_same(optimizer.state_dict(), twin_optimizer.state_dict())


def test_restore_with_torch_sgd_momentum():
    model = bn_model()
    batches = bn_batches()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for inputs, targets in batches:
        optimizer.zero_grad()
        mse(model(inputs), targets).backward()
        optimizer.step()
    before = capture(model, optimizer)
    result = lr_find(model, mse, batches, optimizer, start_lr=1e-5, end_lr=1.0, steps=12)
    assert len(result.lrs) >= 5
    assert_unchanged(before, model, optimizer)


def test_failing_batch_restores_and_reraises():
    model = bn_model()
    batches = bn_batches()
    optimizer = trained_adam(model, batches)
    model.eval()
    before = capture(model, optimizer)
    calls = []

    def forward(model, batch):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("bad batch")
        return mse(model(batch[0]), batch[1])

    with pytest.raises(RuntimeError, match="bad batch"):
        lr_find(model, None, batches, optimizer, forward=forward, steps=10)
    assert len(calls) == 4
    assert_unchanged(before, model, optimizer)


def test_failing_batch_without_restore_still_puts_back_lr_objects_and_modes():
    model = bn_model()
    batches = bn_batches()
    optimizer = trained_adam(model, batches)
    schedule = optimizer.param_groups[0]["lr"]
    model.eval()

    def forward(model, batch):
        if optimizer.param_groups[0]["step"] == 5:
            raise RuntimeError("bad batch")
        return mse(model(batch[0]), batch[1])

    with pytest.raises(RuntimeError, match="bad batch"):
        lr_find(model, None, batches, optimizer, forward=forward, steps=10, restore=False)
    assert optimizer.param_groups[0]["lr"] is schedule
    assert optimizer.param_groups[0]["step"] == 5  # two sweep steps were kept
    assert not any(m.training for m in model.modules())


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"start_lr": -1}, ValueError, r"^start_lr must be a positive number, got -1$"),
        ({"start_lr": 0.0}, ValueError, r"^start_lr must be a positive number, got 0.0$"),
        ({"start_lr": math.nan}, ValueError, r"^start_lr must be a positive number, got nan$"),
        ({"start_lr": "1e-3"}, ValueError, r"^start_lr must be a positive number, got '1e-3'$"),
        ({"end_lr": math.inf}, ValueError, r"^end_lr must be a positive number, got inf$"),
        ({"end_lr": 1e-8}, ValueError, r"^end_lr must exceed start_lr \(1e-07\), got 1e-08$"),
        (
            {"start_lr": 0.1, "end_lr": 0.1},
            ValueError,
            r"^end_lr must exceed start_lr \(0.1\), got 0.1$",
        ),
        ({"steps": 1}, ValueError, r"^steps must be an integer >= 2, got 1$"),
        ({"steps": True}, ValueError, r"^steps must be an integer >= 2, got True$"),
        ({"steps": 10.0}, ValueError, r"^steps must be an integer >= 2, got 10.0$"),
        ({"smoothing": 1}, ValueError, r"^smoothing must be a number in \[0, 1\), got 1$"),
        ({"smoothing": -0.5}, ValueError, r"^smoothing must be a number in \[0, 1\), got -0.5$"),
        ({"diverge": 1}, ValueError, r"^diverge must be a number > 1 or None, got 1$"),
        ({"diverge": 0.5}, ValueError, r"^diverge must be a number > 1 or None, got 0.5$"),
        ({"restore": 1}, TypeError, r"^restore must be True or False, got 1$"),
        ({"loss_fn": None}, TypeError, r"give loss_fn\(outputs, targets\).*both are None"),
        ({"forward": lambda m, b: 0}, ValueError, r"^give loss_fn or forward, not both"),
        ({"loss_fn": 3}, TypeError, r"^loss_fn must be callable, got int 3$"),
        ({"loader": 5}, TypeError, r"^loader must be an iterable of batches, got int$"),
        ({"loader": []}, ValueError, r"^loader yielded no batches$"),
        ({"loader": iter([])}, ValueError, r"^loader yielded no batches$"),
        ({"optimizer": "sgd"}, TypeError, r"^optimizer must be a torch.optim.Optimizer"),
    ],
)
@pytest.mark.parametrize("restore", [True, False])
def test_bad_arguments_raise_before_anything_changes(options, error, message, restore):
    model = bn_model()
    batches = bn_batches()
    optimizer = trained_adam(model, batches)
    model.eval()
    before = capture(model, optimizer)
    arguments = {"loss_fn": mse, "loader": batches, "optimizer": optimizer, "restore": restore}
    arguments.update(options)
    with pytest.raises(error, match=message):
        lr_find(model, **arguments)
    assert_unchanged(before, model, optimizer)


def test_optimizer_over_other_parameters_is_refused():
    model = bn_model()
    other = torch.nn.Linear(2, 3, dtype=F64)
    optimizer = descend.SGD([*model.parameters(), *other.parameters()], lr=0.1)
    before = capture(model, optimizer)
    with pytest.raises(
        ValueError, match=r"^optimizer must optimize parameters of the model: 2 of its 8 parameters"
    ):
        lr_find(model, mse, bn_batches(), optimizer)
    assert_unchanged(before, model, optimizer)
    # a subset of the model's parameters (a frozen body, say) is fine
    head = descend.SGD(model[-1].parameters(), lr=0.1)
    assert len(lr_find(model, mse, bn_batches(), head, steps=5).lrs) == 5


def test_lbfgs_is_refused():
    model = bn_model()
    with pytest.raises(ValueError, match="LBFGS is driven by a closure"):
        lr_find(model, mse, bn_batches(), torch.optim.LBFGS(model.parameters()))


@pytest.mark.parametrize("restore", [True, False])
def test_exhausted_generator_raises_and_restores(restore):
    model = bn_model()
    batches = bn_batches()
    optimizer = trained_adam(model, batches)
    before = capture(model, optimizer)
    with pytest.raises(ValueError, match=r"^loader ran out after 3 batches and yielded nothing"):
        lr_find(model, mse, (b for b in batches), optimizer, steps=5, restore=restore)
    if restore:
        assert_unchanged(before, model, optimizer)
    else:
        assert optimizer.param_groups[0]["step"] == 6
        assert optimizer.param_groups[0]["lr"] is before["lr_objects"][0]


def test_loss_must_be_a_finite_scalar_at_the_first_step():
    model = bn_model()
    batches = bn_batches()
    optimizer = trained_adam(model, batches)
    before = capture(model, optimizer)
    with pytest.raises(
        TypeError, match=r"the loss must be a scalar tensor, got a tensor of shape \(16, 2\)"
    ):
        lr_find(model, lambda out, y: out - y, batches, optimizer)
    assert_unchanged(before, model, optimizer)
    with pytest.raises(ValueError, match=r"^the loss at the first step \(lr=1e-07\) is nan"):
        lr_find(model, lambda out, y: mse(out, y) * math.nan, batches, optimizer)
    assert_unchanged(before, model, optimizer)
    with pytest.raises(
        TypeError, match=r"each batch must be an \(inputs, targets\) pair, got dict"
    ):
        lr_find(model, mse, [{"x": 1}], optimizer)
    assert_unchanged(before, model, optimizer)


# --------------------------------------------------------------------------------------
# The plot
# --------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path):
    from matplotlib.image import imread

    result, _ = quadratic_find(A)
    path = result.plot(tmp_path / "lr.png", title="quadratic")
    assert path == tmp_path / "lr.png"
    image = imread(path)
    assert image.shape == (400, 600, 4)
    colors = np.unique((image[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 50


def test_plot_draws_into_given_axes():
    result, _ = quadratic_find(A)
    figure = Figure()
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    assert result.plot(ax=ax) is ax
    assert len(ax.lines) == 3  # loss, smoothed loss, the suggestion's vertical line
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["loss", "smoothed loss", f"suggested lr = {result.suggestion:.1e}"]
    assert ax.get_xscale() == "log"
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), result.lrs)


def test_plot_without_suggestion_and_without_target():
    result, _ = quadratic_find(A, steps=4)
    figure = result.plot()
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="give path or ax, not both"):
        result.plot("x.png", ax=ax)


def test_result_is_frozen():
    result, _ = quadratic_find(A, steps=4)
    with pytest.raises(AttributeError):
        result.suggestion = 1.0
