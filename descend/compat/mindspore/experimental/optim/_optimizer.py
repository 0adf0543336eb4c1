"""The base of MindSpore's experimental (torch-style) optimizers on descend.

MindSpore's ``mindspore.experimental.optim`` follows torch.optim's interface, with these
differences, all kept here:

- each group's ``lr`` is a 0-d float32 tensor (a MindSpore ``Parameter``), which a
  scheduler or the user changes in place (``group["lr"].fill_(0.01)``);
- a group's ``weight_decay`` (and any other key the optimizer lists in ``float_keys``)
  is an int or a float, kept as a float (``0`` shows as ``0.0``), and ``weight_decay``
  must be >= 0; a group that breaks this is refused before it is added;
- a group holds MindSpore's keys only, and ``print(optimizer)`` lists them, with the
  value of ``lr``;
- the optimizer is also called with the gradients, ``optimizer(grads)``, in the order of
  ``optimizer.parameters`` (group order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

import descend
from descend.compat.mindspore._checks import check_gradients, check_number
from descend.hyperparams import is_step_sequence, nonnegative, resolve

__all__ = ["Optimizer"]


class Optimizer(descend.Optimizer):
    """Base of the experimental optimizers: put it first among the bases of a class that
    also derives from a descend optimizer, list MindSpore's group keys in ``ms_keys``, and
    those it keeps as floats in ``float_keys``."""

    ms_keys: ClassVar[tuple[str, ...]] = ("lr",)
    float_keys: ClassVar[tuple[str, ...]] = ()
    """Group keys whose values must be ints or floats and are kept as floats, as MindSpore
    keeps ``weight_decay`` (which must also be >= 0)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if isinstance(param_group, dict):  # as MindSpore's _preprocess_weight_decay checks
            for key in self.float_keys:
                value = param_group.get(key, self.defaults.get(key))
                rule = nonnegative if key == "weight_decay" else None
                check_number(type(self).__name__, key, value, rule, ints=True)
            lr = param_group.get("lr", self.defaults.get("lr"))
            if is_step_sequence(lr) and not isinstance(lr, Tensor):
                raise TypeError(
                    f"For '{type(self).__name__}', the argument 'lr' must be an int, a float or "
                    f"a one-element tensor, got {type(lr).__name__} {lr!r}"
                )
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for key in self.float_keys:
            group[key] = float(group[key])
        lr = group["lr"]
        if not isinstance(lr, Tensor) and not callable(lr):
            group["lr"] = torch.tensor(resolve("lr", lr, 0), dtype=torch.float32)
        elif isinstance(lr, Tensor) and lr.dim() == 0:
            group["lr"] = lr.detach().to(torch.float32).clone()

    @property
    def parameters(self) -> tuple[Tensor, ...]:
        """Every parameter, in group order: the order ``optimizer(grads)`` expects."""
        return tuple(p for group in self.param_groups for p in group["params"])

    def __call__(self, gradients: Sequence[Tensor]) -> None:
        """One step with these gradients, in the order of :attr:`parameters`; the
        parameters' ``.grad`` is left as it was."""
        params = self.parameters
        gradients = tuple(gradients)
        check_gradients(type(self).__name__, params, gradients)
        saved = [p.grad for p in params]
        try:
            for param, grad in zip(params, gradients):
                param.grad = grad
            self.step()
        finally:
            for param, grad in zip(params, saved):
                param.grad = grad

    def __repr__(self) -> str:
        text = f"{type(self).__name__} ("
        for index, group in enumerate(self.param_groups):
            text += f"\nParameter Group {index}\n"
            for key in sorted(k for k in group if k in self.ms_keys):
                text += f"    {key}: {_show(group[key])}\n"
        return text + ")"


def _show(value: Any) -> str:
    if isinstance(value, Tensor) and value.numel() == 1:
        return str(np.float32(value.item()))
    return str(value)
