"""Pictures of schedules and schedulers: :func:`plot` writes a PNG, :func:`plot_data` gives
the numbers it draws.

``plot`` takes a schedule (or any callable of the step), a list of them, or a stateful
scheduler such as torch's or descend's ``lr_scheduler`` classes. A scheduler is stepped
ahead to record the learning rate of each parameter group (and the momentum or
``betas[0]``, when it cycles them), then put back as it was, with its optimizer's group
values: drawing a scheduler leaves no trace. matplotlib is imported when a figure is drawn,
with its Agg canvas and without touching pyplot's global state.
"""

from __future__ import annotations

import copy
import inspect
import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from descend.schedules.base import Schedule

Lines = list[tuple[str, np.ndarray]]
"""(label, values) of each line of a panel."""


def plot_data(schedule_or_scheduler: Any, steps: int) -> dict[str, Lines]:
    """The lines :func:`plot` draws, by panel: ``{"value": [(label, values)]}`` for
    schedules; ``{"lr": [...], "momentum": [...]}`` for a scheduler, one line per parameter
    group, the second panel only when the scheduler changes the momentum (or ``betas[0]``).

    ``values[i]`` is the value at step ``i``: what the ``i``-th optimizer step uses.
    """
    steps = _check_steps(steps)
    target = schedule_or_scheduler
    if _is_scheduler(target):
        return _scheduler_data(target, steps)
    if isinstance(target, Schedule) or callable(target):
        target = [target]
    if isinstance(target, Sequence) and not isinstance(target, str) and target:
        lines = []
        for item in target:
            if not callable(item):
                raise TypeError(f"plot: expected schedules, got {type(item).__name__} {item!r}")
            lines.append((_label(item), _values(item, steps)))
        return {"value": lines}
    raise TypeError(
        "plot: expected a schedule, a list of schedules or a scheduler (with step(), "
        f"get_last_lr(), state_dict() and an optimizer), got {type(target).__name__} {target!r}"
    )


def plot(
    schedule_or_scheduler: Any,
    steps: int,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Draw ``schedule_or_scheduler`` over its first ``steps`` steps into the PNG file
    ``path``; return the path. ``figsize`` is in inches, 6 x 3 per panel by default::

        plot(Warmup(Cosine(0.1, 900), steps=100), 1000, "lr.png", title="warmup + cosine")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = plot_data(schedule_or_scheduler, steps)
    figure = Figure(figsize=figsize or (6.0, 3.0 * len(data)), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(data), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(steps)
    for ax, (panel, lines) in zip(axes, data.items()):
        for label, values in lines:
            ax.plot(x, values, label=label, linewidth=1.5)
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize="small")
    axes[-1].set_xlabel("step")
    if title is not None:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------------------


def _check_steps(steps: Any) -> int:
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool):
        raise TypeError(f"plot: steps must be a whole number, got {type(steps).__name__} {steps!r}")
    if steps < 1:
        raise ValueError(f"plot: steps must be >= 1, got {steps!r}")
    return int(steps)


def _label(schedule: Callable, width: int = 60) -> str:
    text = repr(schedule) if isinstance(schedule, Schedule) else getattr(schedule, "__name__", "")
    text = text or repr(schedule)
    return text if len(text) <= width else text[: width - 1] + "…"


def _values(schedule: Callable, steps: int) -> np.ndarray:
    if isinstance(schedule, Schedule):
        return schedule.values(np.arange(steps))
    return np.array([float(schedule(step)) for step in range(steps)])


def _is_scheduler(value: Any) -> bool:
    return all(
        hasattr(value, name) for name in ("step", "get_last_lr", "state_dict", "load_state_dict")
    ) and hasattr(value, "optimizer")


def _number(value: Any) -> float | None:
    """A group's value as a number, or None if it is not one (a schedule, say)."""
    import torch

    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def _momentum(group: dict[str, Any]) -> tuple[str, float | None]:
    if "momentum" in group:
        return "momentum", _number(group["momentum"])
    if isinstance(group.get("betas"), tuple | list):
        return "betas[0]", _number(group["betas"][0])
    return "", None


def _scheduler_data(scheduler: Any, steps: int) -> dict[str, Lines]:
    import torch

    needs = [
        p.name
        for p in inspect.signature(scheduler.step).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if needs or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise TypeError(
            f"plot: {type(scheduler).__name__} steps on a metric (step({', '.join(needs)})), so "
            "its learning rates cannot be drawn ahead of training"
        )
    groups = scheduler.optimizer.param_groups
    lrs, momenta = [], []
    with _put_back(scheduler), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        for step in range(steps):
            if step:
                scheduler.step()
            lrs.append([float(lr) for lr in scheduler.get_last_lr()])
            momenta.append([_momentum(group)[1] for group in groups])
    lrs = np.array(lrs)
    data = {"lr": [(f"group {i}", lrs[:, i]) for i in range(lrs.shape[1])]}
    name = _momentum(groups[0])[0]
    if name and all(m is not None for row in momenta for m in row):
        momenta = np.array(momenta)
        if np.any(momenta != momenta[0]):
            data[name] = [(f"group {i}", momenta[:, i]) for i in range(momenta.shape[1])]
    return data


class _put_back:
    """Restore a scheduler's state and its optimizer's group values (every key but
    "params") on exit; tensors in groups are kept, with their old contents copied back."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.state = copy.deepcopy(scheduler.state_dict())
        # attributes state_dict leaves out (descend's progress marks, say), by reference
        self.others = {k: v for k, v in vars(scheduler).items() if k not in self.state}
        self.groups = [
            {k: v for k, v in group.items() if k != "params"}
            for group in scheduler.optimizer.param_groups
        ]
        self.contents = copy.deepcopy(self.groups)

    def __enter__(self) -> _put_back:
        return self

    def __exit__(self, *exc: object) -> None:
        self.scheduler.load_state_dict(copy.deepcopy(self.state))
        vars(self.scheduler).update(self.others)
        for group, saved, contents in zip(
            self.scheduler.optimizer.param_groups, self.groups, self.contents
        ):
            for key in [k for k in group if k != "params" and k not in saved]:
                del group[key]
            for key, value in saved.items():
                _copy_back(value, contents[key])
                group[key] = value


def _copy_back(value: Any, contents: Any) -> None:
    """Write ``contents`` back into the tensors of ``value`` (a tensor, or a tuple or list
    holding some), which a scheduler may have changed in place."""
    import torch

    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            value.copy_(contents)
    elif isinstance(value, tuple | list):
        for item, saved in zip(value, contents):
            _copy_back(item, saved)
