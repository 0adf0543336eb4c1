"""The learning-rate range test: sweep the learning rate up over a few hundred steps and
watch where the loss falls fastest.

:func:`lr_find` trains the model for ``steps`` steps with a learning rate that grows
geometrically from ``start_lr`` to ``end_lr``, records the loss of every step and an
exponentially smoothed version of it, stops when the loss diverges, and suggests the
learning rate where the smoothed loss falls fastest. Then, by default, it puts the model
and the optimizer back exactly as they were (weights, buffers, gradients, training mode,
optimizer state and parameter groups), so the test leaves no trace::

    result = descend.lr_find(model, torch.nn.functional.cross_entropy, loader)
    result.suggestion      # e.g. 3.2e-03
    result.plot("lr_find.png")

Any :class:`torch.optim.Optimizer` works, descend's or torch's; a descend group whose
``lr`` is a schedule gets plain numbers during the sweep and its schedule back afterwards.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import Module
from torch.optim import Optimizer

__all__ = ["LRFinderResult", "lr_find"]

MIN_POINTS = 5
"""The fewest recorded points before the minimum of the smoothed loss that a suggestion
needs."""


@dataclass(frozen=True)
class LRFinderResult:
    """What :func:`lr_find` recorded.

    Attributes:
        lrs: the learning rate of each step taken, ``lrs[i] = start_lr ·
            (end_lr / start_lr) ** (i / (steps - 1))``; fewer than ``steps`` when the
            sweep stopped early.
        losses: the loss of each step's batch, computed before that step's update.
        smoothed: the bias-corrected exponential average of ``losses``.
        suggestion: the learning rate where the smoothed loss falls fastest against
            ``log(lr)``, before its minimum (see :func:`lr_find`); None when the sweep
            gave too few points before the minimum, or the loss never fell.
        min_loss_lr: the learning rate at the minimum of the smoothed loss: an upper
            bound, where the loss has stopped falling; too large to train with.
        stopped_early: whether the sweep stopped before ``steps`` steps, because a loss
            was not finite or the smoothed loss diverged.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    min_loss_lr: float
    stopped_early: bool

    def plot(
        self,
        path: str | os.PathLike | None = None,
        *,
        ax: Any = None,
        title: str | None = None,
    ) -> Any:
        """Draw the loss (faint) and the smoothed loss against the learning rate, on a
        log x axis, with the suggestion as a vertical line (legend entry
        ``"suggested lr = 3.2e-03"``).

        With ``path``, write a PNG file there and return its :class:`~pathlib.Path`; with
        ``ax``, draw into that matplotlib ``Axes`` and return it; with neither, return a
        new :class:`matplotlib.figure.Figure`. The y axis is cut a little above the
        highest loss before the minimum, so that a diverging tail does not flatten the
        curve. pyplot's global state is left alone.
        """
        if path is not None and ax is not None:
            raise ValueError(
                f"plot: give path or ax, not both (path={path!r}); to save a figure you "
                "drew into, call ax.figure.savefig(path)"
            )
        figure = None
        if ax is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            figure = Figure(figsize=(6.0, 4.0), dpi=100, layout="constrained")
            FigureCanvasAgg(figure)
            ax = figure.add_subplot()
        self._draw(ax, title)
        if path is not None:
            path = Path(path)
            figure.savefig(path, format="png")
            return path
        return figure if figure is not None else ax

    def _draw(self, ax: Any, title: str | None) -> None:
        lrs = np.asarray(self.lrs, dtype=float)
        losses = np.asarray(self.losses, dtype=float)
        smoothed = np.asarray(self.smoothed, dtype=float)
        losses = np.where(np.isfinite(losses), losses, np.nan)
        smoothed = np.where(np.isfinite(smoothed), smoothed, np.nan)
        ax.plot(lrs, losses, color="tab:blue", alpha=0.3, linewidth=1.0, label="loss")
        ax.plot(lrs, smoothed, color="tab:blue", linewidth=1.8, label="smoothed loss")
        if self.suggestion is not None:
            ax.axvline(
                self.suggestion,
                color="tab:red",
                linestyle="--",
                linewidth=1.2,
                label=f"suggested lr = {self.suggestion:.1e}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3, which="both")
        finite = np.isfinite(smoothed)
        if finite.any():
            end = int(np.nanargmin(smoothed)) + 1
            window = np.concatenate([losses[:end], smoothed[:end]])
            window = window[np.isfinite(window)]
            every = np.concatenate([losses, smoothed])
            every = every[np.isfinite(every)]
            low, high = float(every.min()), float(window.max())
            margin = 0.05 * (high - low) if high > low else max(abs(high), 1.0) * 0.05
            ax.set_ylim(low - margin, high + 2 * margin)
        ax.legend(fontsize="small")
        if title is not None:
            ax.set_title(title)


def lr_find(
    model: Module,
    loss_fn: Callable[[Any, Any], Tensor] | None,
    loader: Iterable[Any],
    optimizer: Optimizer | None = None,
    *,
    forward: Callable[[Module, Any], Tensor] | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    diverge: float | None = 4.0,
    restore: bool = True,
) -> LRFinderResult:
    """Run a learning-rate range test (Smith, 2015; fastai's ``lr_find``).

    Step ``i`` (``0 ≤ i < steps``) trains on the next batch with the learning rate
    ``lr_i = start_lr · (end_lr / start_lr) ** (i / (steps - 1))``, written as a float
    into every parameter group's ``"lr"``: it computes the loss, records it, and updates
    the parameters. The model is in training mode throughout.

    Args:
        model: the model to train.
        loss_fn: ``loss_fn(outputs, targets)``, a scalar tensor; each batch is then an
            ``(inputs, targets)`` pair and its loss ``loss_fn(model(inputs), targets)``.
            None when ``forward`` is given.
        loader: any iterable of batches (a DataLoader, a list); iterated again from the
            start when it runs out before ``steps`` steps.
        optimizer: a :class:`torch.optim.Optimizer` (descend's or torch's) over
            parameters of ``model``; by default
            ``descend.SGD(model.parameters(), lr=start_lr, momentum=0.9)``. Closure-driven
            optimizers (LBFGS) are not supported.
        forward: ``forward(model, batch)``, the scalar loss of a batch of any structure
            (a dict, say); replaces ``loss_fn``. Give one of the two, not both.
        start_lr, end_lr: the first and the last learning rate of the sweep,
            ``0 < start_lr < end_lr``.
        steps: the number of steps of the full sweep, an integer ``>= 2``.
        smoothing: the factor ``β`` in ``[0, 1)`` of the exponential average of the
            loss, ``avg_i = β · avg_{i-1} + (1 - β) · loss_i`` (``avg_{-1} = 0``), with
            bias correction: ``smoothed_i = avg_i / (1 - β ** (i + 1))``. ``0`` means no
            smoothing.
        diverge: stop when ``smoothed_i > diverge · min(smoothed_0 … smoothed_i)``, a
            number ``> 1``; None or ``inf`` never stops on this rule. The rule assumes a
            positive loss: it applies only while that minimum is ``> 0``.
        restore: put the model (parameters, buffers and gradients, bitwise) and the
            optimizer (its ``state_dict()``: state and parameter groups, bitwise, plus
            descend's ``steps_taken``/``steps_skipped`` counters) back as they were
            before the sweep. With ``restore=False`` the model keeps the weights the
            sweep left and the optimizer its state and step counts (a schedule in a
            group then goes on from the step the sweep reached).

    Whatever ``restore`` says, each parameter group gets its original ``"lr"`` object
    back (a schedule stays that schedule) and every submodule its training mode.

    Stopping early: the sweep stops at step ``i`` when ``loss_i`` is not finite (inf or
    NaN), or when the divergence rule above fires; that step's loss (and smoothed loss)
    is recorded but its update is not applied.

    The suggestion, exactly: let ``s`` be the recorded smoothed losses that are finite
    (all of them, but for a last non-finite one), ``m`` the index of their minimum (the
    first, on ties), and ``g = np.gradient(s, np.log(lrs))`` their slope against
    ``log(lr)`` over all those points (central differences inside, one-sided at the
    ends). The candidates are the points recorded before the minimum was reached,
    ``0 ≤ i < m``. If there are fewer than 5 of them, or none has ``g[i] < 0``, the
    suggestion is None; otherwise it is ``lrs[i]`` for the candidate with the most
    negative ``g[i]``. Restricting the candidates to before the minimum keeps the steep
    rise of a diverging tail and the slope at the minimum itself out of the running.
    ``min_loss_lr`` is ``lrs[m]``.

    The smoothed loss lags the loss (by about ``β / (1 - β)`` steps, 49 at the default
    0.98), and the suggestion with it: on ``0.5·a·x²`` under plain SGD, 100 steps from
    1e-4 to 10 put the raw loss's steepest fall at about ``0.014`` for ``a = 4``, and the
    suggestion at ``0.034`` (still below the stability limit ``2/a = 0.5``). Use a smaller
    ``smoothing`` for short sweeps or noiseless losses.

    Errors: bad arguments raise ``ValueError``/``TypeError`` naming the argument and its
    value before anything changes. A loader with no batches raises ``ValueError`` with
    nothing changed; one that runs out and yields nothing when iterated again (an
    exhausted generator) raises ``ValueError``, as does a first loss that is not finite.
    If a batch, the loss or a step raises, the model and the optimizer are restored
    (with ``restore=True``; the ``lr`` objects and modes in any case) and the error
    propagates.

    Returns:
        an :class:`LRFinderResult`, with :meth:`LRFinderResult.plot` to draw it.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r}")
    if forward is None and loss_fn is None:
        raise TypeError(
            "give loss_fn(outputs, targets) for (inputs, targets) batches, or "
            "forward(model, batch) returning the loss for batches of other structure; "
            "both are None"
        )
    if forward is not None and loss_fn is not None:
        raise ValueError(
            "give loss_fn or forward, not both: forward(model, batch) computes the loss "
            f"itself (loss_fn={loss_fn!r})"
        )
    for name, function in (("loss_fn", loss_fn), ("forward", forward)):
        if function is not None and not callable(function):
            raise TypeError(f"{name} must be callable, got {type(function).__name__} {function!r}")
    start_lr = _positive("start_lr", start_lr)
    end_lr = _positive("end_lr", end_lr)
    if not end_lr > start_lr:
        raise ValueError(f"end_lr must exceed start_lr ({start_lr!r}), got {end_lr!r}")
    if not math.isfinite(end_lr / start_lr):
        raise ValueError(
            f"end_lr / start_lr must be a finite number, got {end_lr!r} / {start_lr!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    steps = int(steps)
    if (
        isinstance(smoothing, bool)
        or not isinstance(smoothing, numbers.Real)
        or not 0 <= smoothing < 1
    ):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    smoothing = float(smoothing)
    if diverge is not None and (
        isinstance(diverge, bool) or not isinstance(diverge, numbers.Real) or not diverge > 1
    ):
        raise ValueError(f"diverge must be a number > 1 or None, got {diverge!r}")
    if not isinstance(restore, bool):
        raise TypeError(f"restore must be True or False, got {restore!r}")
    if optimizer is None:
        from descend.optim import SGD

        optimizer = SGD(model.parameters(), lr=start_lr, momentum=0.9)
    else:
        _check_optimizer(optimizer, model)

    batches = _Batches(loader)
    first = batches.first()  # an empty loader raises here, with nothing changed
    lrs = [start_lr * (end_lr / start_lr) ** (i / (steps - 1)) for i in range(steps)]
    snapshot = _Snapshot(model, optimizer) if restore else None
    lr_objects = [group["lr"] for group in optimizer.param_groups]
    modes = [(module, module.training) for module in model.modules()]
    recorded: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stopped_early = False
    average = 0.0
    try:
        model.train()
        for i, lr in enumerate(lrs):
            batch = first if i == 0 else batches.next()
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.zero_grad(set_to_none=True)
            loss = forward(model, batch) if forward is not None else _loss(model, loss_fn, batch)
            value = _scalar(loss)
            average = smoothing * average + (1 - smoothing) * value
            smooth = average / (1 - smoothing ** (i + 1))
            recorded.append(lr)
            losses.append(value)
            smoothed.append(smooth)
            if not math.isfinite(value):
                if i == 0:
                    raise ValueError(
                        f"the loss at the first step (lr={lr:.3g}) is {value}: check the "
                        "model and the data before looking for a learning rate"
                    )
                stopped_early = True
                break
            lowest = min(smoothed)
            if diverge is not None and lowest > 0 and smooth > diverge * lowest:
                stopped_early = True
                break
            loss.backward()
            optimizer.step()
        if restore:
            snapshot.restore()
    except BaseException:
        if restore:
            snapshot.restore()
        raise
    finally:
        for group, lr_object in zip(optimizer.param_groups, lr_objects):
            group["lr"] = lr_object
        for module, training in modes:
            module.training = training

    suggestion, minimum = _suggest(recorded, smoothed)
    return LRFinderResult(
        lrs=recorded,
        losses=losses,
        smoothed=smoothed,
        suggestion=suggestion,
        min_loss_lr=minimum,
        stopped_early=stopped_early,
    )


# --------------------------------------------------------------------------------------


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_optimizer(optimizer: Any, model: Module) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer (descend's or torch's), got "
            f"{type(optimizer).__name__} {optimizer!r}"
        )
    if any(cls.__name__ == "LBFGS" for cls in type(optimizer).__mro__):  # descend's, torch's
        raise ValueError(
            f"optimizer {type(optimizer).__name__} is driven by a closure that it calls "
            "several times a step, so it has no single loss per learning rate; lr_find "
            "needs an optimizer that steps once per batch"
        )
    own = {id(p) for p in model.parameters()}
    theirs = [p for group in optimizer.param_groups for p in group["params"]]
    strangers = [p for p in theirs if id(p) not in own]
    if strangers:
        shapes = ", ".join(str(tuple(p.shape)) for p in strangers[:3])
        raise ValueError(
            f"optimizer must optimize parameters of the model: {len(strangers)} of its "
            f"{len(theirs)} parameters are not the model's (shapes {shapes}"
            f"{', ...' if len(strangers) > 3 else ''})"
        )


def _loss(model: Module, loss_fn: Callable, batch: Any) -> Tensor:
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        raise TypeError(
            "with loss_fn, each batch must be an (inputs, targets) pair, got "
            f"{type(batch).__name__}"
            f"{f' of length {len(batch)}' if isinstance(batch, (list, tuple)) else ''}; "
            "give forward=lambda model, batch: ... (returning the loss) for batches of "
            "other structure"
        )
    inputs, targets = batch
    return loss_fn(model(inputs), targets)


def _scalar(loss: Any) -> float:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        what = (
            f"a tensor of shape {tuple(loss.shape)}"
            if isinstance(loss, Tensor)
            else (f"{type(loss).__name__} {loss!r}")
        )
        raise TypeError(f"the loss must be a scalar tensor, got {what}")
    return float(loss.detach())


class _Batches:
    """The loader's batches, started again from the top when it runs out."""

    def __init__(self, loader: Iterable[Any]) -> None:
        try:
            self.iterator: Iterator[Any] = iter(loader)
        except TypeError:
            raise TypeError(
                f"loader must be an iterable of batches, got {type(loader).__name__}"
            ) from None
        self.loader = loader
        self.count = 0  # batches given since the last restart

    def first(self) -> Any:
        try:
            batch = next(self.iterator)
        except StopIteration:
            raise ValueError("loader yielded no batches") from None
        self.count = 1
        return batch

    def next(self) -> Any:
        try:
            batch = next(self.iterator)
        except StopIteration:
            given, self.count = self.count, 0
            self.iterator = iter(self.loader)
            try:
                batch = next(self.iterator)
            except StopIteration:
                raise ValueError(
                    f"loader ran out after {given} batches and yielded nothing when iterated "
                    "again (an exhausted generator?): give a list or a DataLoader, which "
                    "can be iterated more than once, or fewer steps"
                ) from None
        self.count += 1
        return batch


class _Snapshot:
    """The model's tensors and the optimizer's state and groups, to put back exactly.

    The original objects are kept and their contents copied back into them, so that
    anything holding a reference (the optimizer holds the parameters, a scheduler the
    groups) sees the old values in the same objects.
    """

    def __init__(self, model: Module, optimizer: Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer
        with torch.no_grad():
            self.tensors = [(t, t.detach().clone()) for t in _model_tensors(model)]
            self.grads = [
                (p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()
            ]
        self.state = {param: dict(state) for param, state in optimizer.state.items()}
        self.state_contents = {param: copy.deepcopy(state) for param, state in self.state.items()}
        self.groups = [dict(group) for group in optimizer.param_groups]
        self.group_contents = [
            copy.deepcopy({k: v for k, v in group.items() if k != "params"})
            for group in optimizer.param_groups
        ]
        self.counters = {
            name: getattr(optimizer, name)
            for name in ("steps_taken", "steps_skipped")
            if hasattr(optimizer, name)
        }

    def restore(self) -> None:
        with torch.no_grad():
            for tensor, saved in self.tensors:
                tensor.copy_(saved)
            for param, grad in self.grads:
                param.grad = None if grad is None else grad.clone()
        optimizer = self.optimizer
        optimizer.state.clear()
        for param, state in self.state.items():
            contents = self.state_contents[param]
            for key, value in state.items():
                _copy_back(value, contents[key])
            optimizer.state[param] = state
        for group, saved, contents in zip(optimizer.param_groups, self.groups, self.group_contents):
            for key, value in saved.items():
                if key != "params":
                    _copy_back(value, contents[key])
            group.clear()
            group.update(saved)
        for name, value in self.counters.items():
            setattr(optimizer, name, value)


def _model_tensors(model: Module) -> list[Tensor]:
    seen: set[int] = set()
    tensors = []
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors.append(tensor)
    return tensors


def _copy_back(value: Any, contents: Any) -> None:
    """Write ``contents`` back into the tensors of ``value`` (a tensor, or a tuple, list
    or dict holding some), which a step may have changed in place."""
    if isinstance(value, Tensor):
        with torch.no_grad():
            value.copy_(contents)
    elif isinstance(value, (tuple, list)):
        for item, saved in zip(value, contents):
            _copy_back(item, saved)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in contents:
                _copy_back(item, contents[key])


def _suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float]:
    """(suggestion, min_loss_lr) by the rule in :func:`lr_find`'s docstring."""
    values = np.asarray(smoothed, dtype=float)
    count = len(values)
    while count and not np.isfinite(values[count - 1]):
        count -= 1
    values = values[:count]
    m = int(np.argmin(values))
    minimum = lrs[m]
    if m < MIN_POINTS:
        return None, minimum
    slope = np.gradient(values, np.log(np.asarray(lrs[:count], dtype=float)))
    best = int(np.argmin(slope[:m]))
    if not slope[best] < 0:
        return None, minimum
    return lrs[best], minimum
