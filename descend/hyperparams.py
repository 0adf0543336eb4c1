"""Hyperparameters as data: constants, 0-d tensors, per-step sequences and schedules.

Every schedulable option of a descend optimizer (``lr``, ``betas``, ``momentum``,
``weight_decay``, ``eps``, ...) may be given as

- a number (``1e-3``);
- a tensor with one element (``torch.tensor(1e-3)``), read at every step (in a step
  that torch.compile traces, options an optimizer lists in ``tensor_options`` are read
  by the compiled graph instead; see :class:`descend.Optimizer`);
- a sequence indexed by the step: a list, tuple, NumPy array or 1-D tensor holding one
  value per step, as MindSpore's dynamic learning rates are (``[0.1, 0.1, 0.05, ...]``);
- a callable of the step, ``schedule(step) -> float``: a schedule.

The step given to a sequence or schedule is the number of steps the parameter group has
already taken, so the first update uses ``schedule(0)``, as torch's schedulers and
MindSpore's ``global_step`` do.

This module turns such a value into the number in force at a step (:func:`resolve`) and
checks it (the ``Rule`` functions), with errors that name the option and its value.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

Rule = Callable[[str, float], None]
"""Checks a resolved value; raises ``ValueError`` naming the option when it is bad."""


def _is_real_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def at_least(bound: float) -> Rule:
    """A rule: the value must be ``>= bound``."""

    def rule(name: str, value: float) -> None:
        if not value >= bound:  # also rejects NaN
            raise ValueError(f"{name} must be >= {bound:g}, got {value!r}")

    return rule


def in_unit_interval(name: str, value: float) -> None:
    """A rule: the value must lie in ``[0, 1)`` (decay rates such as ``betas``)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def in_open_unit_interval(name: str, value: float) -> None:
    """A rule: the value must lie in ``(0, 1)`` (MindSpore's ``beta1``, say)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def positive(name: str, value: float) -> None:
    """A rule: the value must be ``> 0`` (an epsilon, say)."""
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0, got {value!r}")


def any_real(name: str, value: float) -> None:
    """A rule: any real number except NaN."""
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")


nonnegative = at_least(0.0)


def optional(rule: Rule) -> Rule:
    """``rule``, for an entry of a tuple option that may also be None (Adafactor's
    ``eps[0]``, Rprop's ``step_sizes``); other tuple entries must be numbers."""

    def checked(name: str, value: float) -> None:
        rule(name, value)

    checked.accepts_none = True  # type: ignore[attr-defined]
    return checked


def check_real(name: str, tensor: torch.Tensor) -> None:
    """Refuse a tensor of complex numbers or booleans as a value of option ``name``."""
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got a tensor of {tensor.dtype}")


def _one_element(name: str, tensor: torch.Tensor) -> float:
    check_real(name, tensor)
    return float(tensor.detach().item())


def _from_step_sequence(name: str, values: Any, step: int) -> Any:
    if step >= len(values):
        raise IndexError(
            f"{name} is a sequence of {len(values)} per-step values and step {step} is past "
            f"its end; give one value for every step you take, or use a schedule"
        )
    return values[step]


def is_step_sequence(value: Any) -> bool:
    """Whether ``value`` is read as one value per step (rather than a constant)."""
    if isinstance(value, torch.Tensor):
        return value.numel() != 1
    if isinstance(value, np.ndarray):
        return value.size != 1
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _as_float(name: str, value: Any) -> float:
    """``float(value)``; an integer or fraction past float's range is refused by name."""
    try:
        return float(value)
    except OverflowError:
        size = f"{len(str(abs(int(value))))} digits" if isinstance(value, numbers.Integral) else ""
        raise ValueError(
            f"{name} is out of the range of a float, got {type(value).__name__} "
            f"{size or repr(value)}"
        ) from None


def _call(name: str, schedule: Callable[[int], Any], step: int) -> Any:
    """``schedule(step)``; a callable that cannot take the step is refused by name (a
    TypeError from inside a schedule that can is the schedule's own, and passes)."""
    try:
        return schedule(step)
    except TypeError as error:
        try:
            inspect.signature(schedule).bind(step)
        except TypeError:
            raise TypeError(
                f"{name} is a callable, {schedule!r}, that cannot be called with the step "
                f"({error}); a schedule takes the step as its one argument"
            ) from error
        except ValueError:  # no signature to read (some builtins): not ours to judge
            pass
        raise


def resolve(name: str, value: Any, step: int) -> float:
    """The number that ``value`` stands for at ``step`` (see the module docstring).

    Raises ``TypeError`` for values of the wrong kind and ``IndexError`` when a per-step
    sequence has no value for ``step``; both messages name the option.
    """
    if _is_real_number(value):
        return _as_float(name, value)
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return _one_element(name, value)
        if value.dim() != 1:
            raise ValueError(
                f"{name} must be a number, a one-element tensor or a 1-D tensor of per-step "
                f"values, got a tensor of shape {tuple(value.shape)}"
            )
        return _one_element(name, _from_step_sequence(name, value, step))
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return resolve(name, value.reshape(()).item(), step)
        if value.ndim != 1:
            raise ValueError(
                f"{name} must be a 1-D array of per-step values, got shape {value.shape}"
            )
        return resolve(name, _from_step_sequence(name, value, step).item(), step)
    if is_step_sequence(value):
        item = _from_step_sequence(name, value, step)
        if isinstance(item, torch.Tensor) and item.numel() != 1:
            raise TypeError(
                f"{name}[{step}] must be a number, got a tensor of shape {tuple(item.shape)}"
            )
        if not _is_real_number(item) and not isinstance(item, (torch.Tensor, np.generic)):
            raise TypeError(f"{name}[{step}] must be a number, got {type(item).__name__} {item!r}")
        return resolve(f"{name}[{step}]", item, step)
    if isinstance(value, np.generic) and _is_real_number(value.item()):
        return float(value.item())
    if callable(value):
        result = _call(name, value, step)
        if isinstance(result, torch.Tensor) and result.numel() == 1:
            return _one_element(name, result)
        if isinstance(result, (np.generic, np.ndarray)) and np.size(result) == 1:
            result = np.asarray(result).item()
        if not _is_real_number(result):
            raise TypeError(
                f"{name} is a schedule, {value!r}, and at step {step} it returned "
                f"{type(result).__name__} {result!r} instead of a number"
            )
        return _as_float(f"{name} (at step {step})", result)
    raise TypeError(
        f"{name} must be a number, a one-element tensor, a sequence of per-step values or "
        f"a callable of the step, got {type(value).__name__} {value!r}"
    )


def describe(value: Any) -> str:
    """A short text for ``value`` as a hyperparameter, for ``repr`` and messages."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        return f"<{value.numel()} per-step values>"
    if isinstance(value, np.ndarray) and value.size != 1:
        return f"<{value.size} per-step values>"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"<{len(value)} per-step values>"
    return repr(value)
