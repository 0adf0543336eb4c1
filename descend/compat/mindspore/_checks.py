"""Argument checks in MindSpore's wording, for the optimizers of this package.

MindSpore's validator names the class and the argument: ``For 'Adam', the argument 'beta1'
must be a float, got int 1``. The checks here do the same, with the value given; range
checks take a rule of :mod:`descend.hyperparams` (``nonnegative``, ``positive``,
``in_open_unit_interval``, ...), so that a value refused at construction and the same
value refused at a step (where descend applies the rule to the group's value) are refused
for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from descend.hyperparams import Rule, in_open_unit_interval, positive

__all__ = [
    "MOMENT_RULES",
    "check_flag",
    "check_gradients",
    "check_moments",
    "check_nesterov",
    "check_number",
    "check_value",
    "f32",
]

MOMENT_RULES: dict[str, Rule] = {
    "beta1": in_open_unit_interval,
    "beta2": in_open_unit_interval,
    "eps": positive,
}
"""The rules MindSpore's Adam family and Lamb give ``beta1``, ``beta2`` and ``eps``."""


def f32(value: Any) -> float:
    """``value`` rounded to float32, as MindSpore keeps its scalar hyperparameters."""
    return float(np.float32(value))


def check_value(owner: str, name: str, value: Any, rule: Rule) -> None:
    """Apply ``rule`` to ``value`` (a number or a one-element tensor), naming ``owner``'s
    argument ``name`` in MindSpore's words when it fails."""
    number = value.item() if isinstance(value, Tensor) else value
    if isinstance(number, (bool, complex)):
        raise TypeError(
            f"For '{owner}', the argument '{name}' must hold a real number, got {value!r}"
        )
    rule(f"For '{owner}', the argument '{name}'", number)


def check_number(
    owner: str,
    name: str,
    value: Any,
    rule: Rule | None = None,
    *,
    ints: bool = False,
    tensors: bool = False,
) -> Any:
    """``value`` as a float, after MindSpore's ``check_value_type``: a Python float (an int
    too where ``ints``; a one-element tensor too, returned as it is, where ``tensors``),
    never a bool; then ``rule``, if given."""
    if tensors and isinstance(value, Tensor) and value.numel() == 1:
        if rule is not None:
            check_value(owner, name, value, rule)
        return value
    kinds = (int, float) if ints or tensors else (float,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        if tensors:
            wanted = "an int, a float or a one-element tensor"
        else:
            wanted = "an int or a float" if ints else "a float"
        raise TypeError(
            f"For '{owner}', the argument '{name}' must be {wanted}, got "
            f"{type(value).__name__} {value!r}"
        )
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(
            f"For '{owner}', the argument '{name}' is out of the range of a float, got an "
            f"int of {len(str(abs(value)))} digits"
        ) from None
    if rule is not None:
        check_value(owner, name, number, rule)
    return number


def check_flag(owner: str, name: str, value: Any) -> bool:
    """``value``, which must be True or False."""
    if not isinstance(value, bool):
        raise TypeError(
            f"For '{owner}', the argument '{name}' must be True or False, got "
            f"{type(value).__name__} {value!r}"
        )
    return value


def check_moments(owner: str, beta1: Any, beta2: Any, eps: Any) -> None:
    """MindSpore's ``_check_param_value`` of its Adam family and Lamb: ``beta1`` and
    ``beta2`` floats in (0, 1), ``eps`` a float > 0."""
    for name, value in (("beta1", beta1), ("beta2", beta2), ("eps", eps)):
        check_number(owner, name, value, MOMENT_RULES[name])


def check_nesterov(owner: str, nesterov: bool, momentum: Any, dampening: Any) -> None:
    """SGD's Nesterov momentum needs momentum > 0 and no dampening."""
    if nesterov and (momentum <= 0.0 or dampening != 0.0):
        raise ValueError(
            f"For '{owner}', if 'nesterov' is true, 'momentum' must be > 0.0 and 'dampening' "
            f"must equal 0.0, got momentum={momentum!r} and dampening={dampening!r}"
        )


def check_gradients(
    owner: str,
    params: Sequence[Tensor],
    gradients: tuple[Any, ...],
    name_of: Callable[[Tensor], str] | None = None,
) -> None:
    """One gradient per parameter, in order, each a tensor of its parameter's shape, dtype
    and device, as ``optimizer(gradients)`` takes them (and as MindSpore's kernels require);
    ``name_of`` names a parameter in the message. Checked for every gradient before a step
    changes anything: ``ValueError`` for a wrong count, shape or device, ``TypeError`` for a
    wrong dtype."""
    if len(gradients) != len(params):
        raise ValueError(
            f"{owner} got {len(gradients)} gradients for {len(params)} parameters: give one "
            "per parameter, in the order of optimizer.parameters"
        )
    for index, (param, grad) in enumerate(zip(params, gradients)):
        which = f"gradient {index}"
        if name_of is not None:
            which += f" ({name_of(param) or 'unnamed'})"
        if not isinstance(grad, Tensor) or grad.shape != param.shape:
            found = tuple(grad.shape) if isinstance(grad, Tensor) else type(grad).__name__
            raise ValueError(f"{which} is {found}; its parameter has shape {tuple(param.shape)}")
        if grad.dtype != param.dtype:
            raise TypeError(f"{which} is {grad.dtype}; its parameter is {param.dtype}")
        if grad.device != param.device:
            raise ValueError(f"{which} is on {grad.device}; its parameter is on {param.device}")
