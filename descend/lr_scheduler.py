"""Every scheduler of torch.optim.lr_scheduler, as thin drivers over ``descend.schedules``.

Same names, signatures, defaults and values as torch 2.13's, and they are
:class:`torch.optim.lr_scheduler.LRScheduler` instances: they drive descend and torch
optimizers alike, and tools that expect torch schedulers accept them. Each one keeps a
count and asks a pure schedule for the value at that count. What differs is what torch
users keep reporting:

- **Resuming** works whatever you rebuild first: ``load_state_dict`` puts the learning
  rates (and cycled momenta) of the saved moment back into the optimizer, so a scheduler
  built after loading the optimizer cannot leave a wrong lr behind.
- **Skipped steps do not count.** When every ``optimizer.step()`` since the last
  ``scheduler.step()`` was skipped (``torch.amp.GradScaler`` found inf or NaN gradients;
  descend optimizers report this), the schedule does not advance, and there is no
  "``lr_scheduler.step()`` before ``optimizer.step()``" warning for such a step.
- **Groups added later are scheduled**, from their own lr at the moment they are added.
- **Composition is total:** :class:`SequentialLR` and :class:`ChainedScheduler` nest, and
  take :class:`ReduceLROnPlateau` (``step(metrics)`` passes the metric on), so warmup
  followed by reduce-on-plateau is one scheduler.
- **Everything pickles**, and ``state_dict()`` holds plain data only (numbers, lists), so
  ``torch.load(weights_only=True)`` reads it back.
- **Tensor learning rates** stay tensors, changed in place, so a compiled step that reads
  them does not recompile.

How schedulers compose is torch's: most of them scale the current lr by the change of
their own factor, ``lr ← floor + (lr - floor) · u(t) / u(t-1)``, so two of them stepped
back to back multiply; LambdaLR, CyclicLR, OneCycleLR and CosineAnnealingWarmRestarts set
the lr outright.
"""

from __future__ import annotations

import bisect
import itertools
import math
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, SupportsFloat

import numpy as np
from torch import Tensor
from torch.optim import Optimizer
from torch.optim import lr_scheduler as _torch

from descend.schedules import (
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    Linear,
    MultiStep,
    OneCycle,
    PiecewiseConstant,
    Polynomial,
    Schedule,
    Step,
)

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]

EPOCH_DEPRECATION_WARNING = (
    "scheduler.step(epoch) is deprecated, as in torch: call scheduler.step() once per "
    "step or epoch. With an epoch, the scheduler jumps to it through its closed form."
)

STEP_ORDER_WARNING = (
    "lr_scheduler.step() was called before optimizer.step(): the first value of the "
    "schedule is skipped. Call optimizer.step() first, then lr_scheduler.step()."
)


# --------------------------------------------------------------------------------------
# Watching the optimizer's steps
# --------------------------------------------------------------------------------------


def _count_step_call(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """A step post-hook counting ``optimizer.step()`` calls (for torch optimizers)."""
    optimizer.__dict__["_descend_step_calls"] = optimizer.__dict__.get("_descend_step_calls", 0) + 1


def _watch(optimizer: Optimizer) -> None:
    if "steps_taken" in optimizer.__dict__ or optimizer.__dict__.get("_descend_watched"):
        return
    optimizer.register_step_post_hook(_count_step_call)
    optimizer.__dict__["_descend_watched"] = True


def _progress(optimizer: Optimizer) -> tuple[int, int]:
    """``(step() calls, steps that updated)`` so far. descend optimizers count skipped
    steps (GradScaler's inf/NaN check); for others every call counts as an update."""
    taken = getattr(optimizer, "steps_taken", None)
    if taken is not None:
        return taken + getattr(optimizer, "steps_skipped", 0), taken
    calls = optimizer.__dict__.get("_descend_step_calls", 0)
    return calls, calls


# --------------------------------------------------------------------------------------
# Group values
# --------------------------------------------------------------------------------------


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, Tensor) else value


def _set(group: dict[str, Any], key: str, value: float) -> None:
    """Set ``group[key]``, in place when it is a tensor (a compiled step keeps reading the
    same tensor, so a new value does not recompile it)."""
    if isinstance(group.get(key), Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} has {len(value)} values but the optimizer has "
                f"{len(optimizer.param_groups)} parameter groups: give one per group, or one "
                f"for all, got {value!r}"
            )
        return [_copy(v) for v in value]
    return [_copy(value)] * len(optimizer.param_groups)


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer (descend's optimizers are), got "
            f"{type(optimizer).__name__}"
        )


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_factor(name: str, value: Any, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and (0 < value <= 1 if low_open else 0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


# --------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------


class LRScheduler(_torch.LRScheduler):
    """Base class: changes the optimizer's learning rates as the steps go by.

    Subclasses give the values at the current count through :meth:`get_lr` (torch's
    protocol, so torch-style subclasses work unchanged). The state is the count
    (``last_epoch``), ``base_lrs`` and the last values set; ``state_dict()`` holds these
    as plain data.
    """

    _not_state: tuple[str, ...] = ("optimizer", "_seen", "_is_initial")
    """Attributes that ``state_dict`` leaves out: the optimizer, and what is rebuilt from
    the constructor's arguments (schedules, callables)."""

    _is_initial = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", _copy(group["lr"]))
        else:
            _check_int("last_epoch", last_epoch, -1)
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param_groups[{i}] has no 'initial_lr', which resuming with "
                        f"last_epoch={last_epoch} needs: load the optimizer's state_dict "
                        "first, or build the scheduler with last_epoch=-1 and load its "
                        "state_dict"
                    )
        self.base_lrs: list[float | Tensor] = [
            _copy(group["initial_lr"]) for group in optimizer.param_groups
        ]
        self.last_epoch = last_epoch
        _watch(optimizer)
        self._initial_step()

    # -- stepping --------------------------------------------------------------------

    def _initial_step(self) -> None:
        """Move to the first count (0, or ``last_epoch + 1`` when resuming) and set it."""
        self._step_count = 0
        self._seen = _progress(self.optimizer)
        self._is_initial = True
        try:
            self._update_lr()
        finally:
            self._is_initial = False
        self._step_count = 1

    def step(self, epoch: int | None = None) -> None:
        """Advance one step (or epoch) and set the learning rates for it.

        Call it after ``optimizer.step()``. If every ``optimizer.step()`` since the last
        call was skipped (inf/NaN gradients under ``torch.amp.GradScaler``; descend
        optimizers report skips), the schedule stays where it is.
        """
        if self._should_skip():
            return
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _should_skip(self) -> bool:
        """Whether the optimizer skipped every step since the last call; warns, as torch
        does, when the optimizer has not been stepped at all before the first call."""
        calls, taken = _progress(self.optimizer)
        seen_calls, seen_taken = getattr(self, "_seen", (calls, taken))
        self._seen = (calls, taken)
        if self._step_count == 1 and calls == seen_calls:
            warnings.warn(STEP_ORDER_WARNING, UserWarning, stacklevel=3)
        return calls > seen_calls and taken == seen_taken

    def _update_lr(self, epoch: int | None = None) -> None:
        """Go to the next count (or to ``epoch``) and set the values there."""
        self._add_new_groups()
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed_form = getattr(self, "_get_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        self._write(values)

    def _write(self, values: Sequence[float]) -> None:
        for group, value in zip(self.optimizer.param_groups, values):
            _set(group, "lr", value)
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def _restart(self) -> None:
        """Start again from count 0, from the current lrs (SequentialLR, at a milestone)."""
        self.last_epoch = -1
        self._initial_step()

    def get_lr(self) -> list[float]:
        """The learning rates at the current count (``last_epoch``)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float | Tensor]:
        """The learning rates this scheduler set last, one per parameter group."""
        return self._last_lr

    # -- groups added later ----------------------------------------------------------

    def _add_new_groups(self) -> None:
        """Schedule groups added with ``add_param_group`` since the last step: each starts
        from its own lr as its base."""
        groups = self.optimizer.param_groups
        for index in range(len(self.base_lrs), len(groups)):
            group = groups[index]
            group.setdefault("initial_lr", _copy(group["lr"]))
            self.base_lrs.append(_copy(group["initial_lr"]))
            self._added_group(index, group)

    def _added_group(self, index: int, group: dict[str, Any]) -> None:
        """Extend per-group settings for a group added later (subclasses)."""

    # -- state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state as plain data: counts, base and last values, settings."""
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in self._not_state and not key.startswith("_schedule")
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (descend's or torch's), and put the values
        of that moment back into the optimizer, so that it does not matter whether the
        optimizer or the scheduler was rebuilt and loaded first."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict needs a dict from state_dict(), got "
                f"{type(state_dict).__name__}"
            )
        self._check_groups(state_dict)
        self.__dict__.update(
            {key: value for key, value in state_dict.items() if key not in self._not_state}
        )
        self._seen = _progress(self.optimizer)
        self._restore_values()

    def _check_groups(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("_last_lr", state_dict.get("base_lrs"))
        if saved is not None and len(saved) != len(self.optimizer.param_groups):
            raise ValueError(
                f"the state_dict is for {len(saved)} parameter groups but the optimizer has "
                f"{len(self.optimizer.param_groups)}"
            )

    def _restore_values(self) -> None:
        """Write the saved values back into the optimizer's groups."""
        last = getattr(self, "_last_lr", None)
        if last is not None:
            for group, value in zip(self.optimizer.param_groups, last):
                _set(group, "lr", float(value))


# --------------------------------------------------------------------------------------
# Schedulers that scale the current lr by the change of a unit schedule
# --------------------------------------------------------------------------------------


class _Factor(LRScheduler):
    """``lr = floor + (base_lr - floor) · u(t)`` for a unit schedule ``u``.

    Stepping scales what is above the floor by ``u(t) / u(t - 1)`` (with ``u(-1) = 1``,
    the value before the first step), so that other schedulers' changes compose, as
    torch's chainable form does. Where ``u(t - 1)`` is 0 the change is added instead.
    """

    _floor = 0.0

    def _unit(self) -> Schedule:
        raise NotImplementedError

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self._schedule = self._unit()
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        now = self._schedule(t)
        before = 1.0 if t == 0 else self._schedule(t - 1)
        floor = self._floor
        lrs = []
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            lr = float(group["lr"])
            if before != 0:
                lrs.append(floor + (lr - floor) * (now / before))
            else:
                lrs.append(lr + (float(base) - floor) * (now - before))
        return lrs

    def _get_closed_form_lr(self) -> list[float]:
        unit = self._schedule(self.last_epoch)
        return [self._floor + (float(base) - self._floor) * unit for base in self.base_lrs]


class StepLR(_Factor):
    """Multiplies the learning rate by ``gamma`` every ``step_size`` steps."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        _check_optimizer(optimizer)
        _check_int("step_size", step_size, 1)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _unit(self) -> Schedule:
        return Step(1.0, self.step_size, self.gamma)


class MultiStepLR(_Factor):
    """Multiplies the learning rate by ``gamma`` at each of ``milestones``."""

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Iterable[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _unit(self) -> Schedule:
        return MultiStep(1.0, list(self.milestones.elements()), self.gamma)


class ConstantLR(_Factor):
    """Multiplies the learning rate by ``factor`` until step ``total_iters``."""

    def __init__(
        self,
        optimizer: Optimizer,
        factor: float = 1.0 / 3,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_factor("factor", factor)
        _check_int("total_iters", total_iters, 0)
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _unit(self) -> Schedule:
        if self.total_iters == 0:
            return Constant(1.0)
        return PiecewiseConstant([self.total_iters], [self.factor, 1.0])


class LinearLR(_Factor):
    """Scales the learning rate from ``start_factor`` to ``end_factor`` in a straight
    line over ``total_iters`` steps."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_factor("start_factor", start_factor, low_open=True)
        _check_factor("end_factor", end_factor)
        _check_int("total_iters", total_iters, 1)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _unit(self) -> Schedule:
        return Linear(self.start_factor, self.end_factor, self.total_iters)


class ExponentialLR(_Factor):
    """Multiplies the learning rate by ``gamma`` every step."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _unit(self) -> Schedule:
        return Exponential(1.0, 1, self.gamma)


class PolynomialLR(_Factor):
    """Decays the learning rate to 0 along ``(1 - t / total_iters) ** power``."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_iters: int = 5,
        power: float = 1.0,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_int("total_iters", total_iters, 1)
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _unit(self) -> Schedule:
        return Polynomial(1.0, 0.0, self.total_iters, self.power)


class CosineAnnealingLR(_Factor):
    """Anneals the learning rate from its base to ``eta_min`` along half a cosine over
    ``T_max`` steps; past ``T_max`` the cosine goes on, back up, as torch's does."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        _check_optimizer(optimizer)
        if not isinstance(T_max, (int, float)) or isinstance(T_max, bool) or not T_max > 0:
            raise ValueError(f"T_max must be > 0, got {T_max!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    @property
    def _floor(self) -> float:  # type: ignore[override]
        return float(self.eta_min)

    def _unit(self) -> Schedule:
        return Cosine(1.0, self.T_max, 0.0, periodic=True)


# --------------------------------------------------------------------------------------
# Schedulers that set the lr outright
# --------------------------------------------------------------------------------------


def _lambdas(optimizer: Optimizer, lr_lambda: Any) -> list[Callable[[int], float]]:
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != len(optimizer.param_groups):
            raise ValueError(
                f"lr_lambda has {len(lr_lambda)} functions but the optimizer has "
                f"{len(optimizer.param_groups)} parameter groups"
            )
        lambdas = list(lr_lambda)
    else:
        lambdas = [lr_lambda] * len(optimizer.param_groups)
    for fn in lambdas:
        if not callable(fn):
            raise TypeError(f"lr_lambda must be callable, got {type(fn).__name__} {fn!r}")
    return lambdas


class _Lambdas(LRScheduler):
    """Shared by LambdaLR and MultiplicativeLR: one function of the step per group."""

    _not_state = (*LRScheduler._not_state, "lr_lambdas")

    def __init__(self, optimizer: Optimizer, lr_lambda: Any, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.lr_lambdas = _lambdas(optimizer, lr_lambda)
        self._one_lambda = not isinstance(lr_lambda, (list, tuple))
        super().__init__(optimizer, last_epoch)

    def _added_group(self, index: int, group: dict[str, Any]) -> None:
        if not self._one_lambda:
            raise ValueError(
                f"parameter group {index} was added after {type(self).__name__} was built "
                "with one lr_lambda per group: it has none (append one to .lr_lambdas)"
            )
        self.lr_lambdas.append(self.lr_lambdas[0])

    def state_dict(self) -> dict[str, Any]:
        """As torch: callable objects' attributes are saved, plain functions and pure
        schedules (rebuilt from the constructor) are not."""
        state = super().state_dict()
        state["lr_lambdas"] = [
            None
            if isinstance(fn, (types.FunctionType, Schedule)) or not hasattr(fn, "__dict__")
            else fn.__dict__.copy()
            for fn in self.lr_lambdas
        ]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        super().load_state_dict(state_dict)
        for fn, attributes in zip(self.lr_lambdas, saved):
            if attributes is not None:
                fn.__dict__.update(attributes)


class LambdaLR(_Lambdas):
    """Sets the learning rate to ``base_lr · lr_lambda(step)``; ``lr_lambda`` may be a
    descend schedule, which pickles."""

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        return [float(base) * fn(t) for fn, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_Lambdas):
    """Multiplies the learning rate by ``lr_lambda(step)`` at every step after the
    first."""

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return [float(group["lr"]) for group in self.optimizer.param_groups]
        t = self.last_epoch
        return [
            float(group["lr"]) * fn(t)
            for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups)
        ]


def _set_momentum(group: dict[str, Any], use_beta1: bool, value: float) -> None:
    if use_beta1:
        group["betas"] = (value, *group["betas"][1:])
    else:
        _set(group, "momentum", value)


class _Cycling(LRScheduler):
    """Shared by CyclicLR and OneCycleLR: lr and (optionally) momentum or beta1 from
    schedules, set outright."""

    cycle_momentum: bool
    use_beta1: bool

    def _lr_schedule(self, index: int, group: dict[str, Any]) -> Schedule:
        raise NotImplementedError

    def _momentum_schedule(self, index: int, group: dict[str, Any]) -> Schedule:
        raise NotImplementedError

    def _check_momentum(self, optimizer: Optimizer) -> None:
        if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(
                f"cycle_momentum=True needs an optimizer with momentum or betas, and "
                f"{type(optimizer).__name__} has neither: pass cycle_momentum=False"
            )
        self.use_beta1 = "betas" in optimizer.defaults

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        groups = self.optimizer.param_groups
        lrs = [self._lr_schedule(i, group)(t) for i, group in enumerate(groups)]
        if self.cycle_momentum:
            for i, group in enumerate(groups):
                _set_momentum(group, self.use_beta1, self._momentum_schedule(i, group)(t))
        return lrs

    def _restore_values(self) -> None:
        super()._restore_values()
        if self.cycle_momentum:
            t = self.last_epoch
            for i, group in enumerate(self.optimizer.param_groups):
                _set_momentum(group, self.use_beta1, self._momentum_schedule(i, group)(t))


class CyclicLR(_Cycling):
    """Cycles the learning rate between ``base_lr`` and ``max_lr`` (and the momentum
    between ``max_momentum`` and ``base_momentum``, the other way round)."""

    _not_state = (*LRScheduler._not_state, "_scale_fn_custom")

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: Literal["cycle", "iterations"] = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        if scale_fn is None and mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(
                f"mode must be 'triangular', 'triangular2' or 'exp_range' (or give scale_fn), "
                f"got {mode!r}"
            )
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        for name, size in (("step_size_up", step_size_up), ("step_size_down", step_size_down)):
            if size is not None and not (isinstance(size, (int, float)) and size > 0):
                raise ValueError(f"{name} must be > 0, got {size!r}")
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                _set(group, "lr", float(lr))
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        self._one_max_lr = not isinstance(max_lr, (list, tuple))
        self.step_size_up = float(step_size_up)
        self.step_size_down = float(step_size_down) if step_size_down is not None else None
        self.total_size = self.step_size_up + (self.step_size_down or self.step_size_up)
        self.step_ratio = self.step_size_up / self.total_size
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = (
            "iterations"
            if scale_fn is None and mode == "exp_range"
            else (scale_mode if scale_fn is not None else "cycle")
        )
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self._check_momentum(optimizer)
            self.base_momentums = _per_group("base_momentum", optimizer, base_momentum)
            self.max_momentums = _per_group("max_momentum", optimizer, max_momentum)
            if last_epoch == -1:
                for top, bottom, group in zip(
                    self.max_momentums, self.base_momentums, optimizer.param_groups
                ):
                    _set_momentum(group, self.use_beta1, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = bottom
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _cyclic(self, low: float, high: float) -> Cyclic:
        return Cyclic(
            float(low),
            float(high),
            self.step_size_up,
            self.step_size_down,
            mode=self.mode if self._scale_fn_custom is None else "triangular",
            gamma=self.gamma,
            scale_fn=self._scale_fn_custom,
            scale_mode=self.scale_mode,
        )

    def _lr_schedule(self, index: int, group: dict[str, Any]) -> Schedule:
        return self._cyclic(self.base_lrs[index], self.max_lrs[index])

    def _momentum_schedule(self, index: int, group: dict[str, Any]) -> Schedule:
        return self._cyclic(self.max_momentums[index], self.base_momentums[index])

    def _added_group(self, index: int, group: dict[str, Any]) -> None:
        if not self._one_max_lr:
            raise ValueError(
                f"parameter group {index} was added after CyclicLR was built with one max_lr "
                "per group: it has none (append one to .max_lrs)"
            )
        self.base_lrs[index] = float(group["lr"])
        self.max_lrs.append(self.max_lrs[0])
        if self.cycle_momentum:
            self.max_momentums.append(self.max_momentums[0])
            self.base_momentums.append(self.base_momentums[0])

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        fn = self._scale_fn_custom
        state["_scale_fn_custom"] = (
            None
            if fn is None
            or isinstance(fn, (types.FunctionType, Schedule))
            or not hasattr(fn, "__dict__")
            else fn.__dict__.copy()
        )
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("_scale_fn_custom", None)
        state_dict.pop("_scale_fn_ref", None)  # torch's
        super().load_state_dict(state_dict)
        if saved is not None and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(saved)


class OneCycleLR(_Cycling):
    """The 1cycle policy: the learning rate rises from ``max_lr / div_factor`` to
    ``max_lr``, then falls to ``max_lr / div_factor / final_div_factor`` (the momentum
    does the opposite)."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        if total_steps is not None:
            _check_int("total_steps", total_steps, 1)
        elif epochs is not None and steps_per_epoch is not None:
            _check_int("epochs", epochs, 1)
            _check_int("steps_per_epoch", steps_per_epoch, 1)
            total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(
                "OneCycleLR needs total_steps, or epochs and steps_per_epoch, got "
                f"total_steps={total_steps!r}, epochs={epochs!r}, "
                f"steps_per_epoch={steps_per_epoch!r}"
            )
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps = total_steps
        self.pct_start = pct_start
        self._anneal_func_type = anneal_strategy
        self.three_phase = three_phase
        self.div_factor = div_factor
        self.final_div_factor = final_div_factor
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        self._one_max_lr = not isinstance(max_lr, (list, tuple))
        self._max_lr = max_lrs[0]
        if last_epoch == -1:
            for top, group in zip(max_lrs, optimizer.param_groups):
                self._set_lr_keys(group, top)
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self._check_momentum(optimizer)
            tops = _per_group("max_momentum", optimizer, max_momentum)
            bottoms = _per_group("base_momentum", optimizer, base_momentum)
            self._momenta = (tops[0], bottoms[0])
            if last_epoch == -1:
                for top, bottom, group in zip(tops, bottoms, optimizer.param_groups):
                    _set_momentum(group, self.use_beta1, top)
                    group["max_momentum"] = top
                    group["base_momentum"] = bottom
        super().__init__(optimizer, last_epoch)

    def _set_lr_keys(self, group: dict[str, Any], top: float) -> None:
        group["initial_lr"] = top / self.div_factor
        group["max_lr"] = top
        group["min_lr"] = group["initial_lr"] / self.final_div_factor

    def _one_cycle(self, start: float, peak: float, end: float) -> OneCycle:
        return OneCycle(
            float(start),
            float(peak),
            float(end),
            self.total_steps,
            self.pct_start,
            self._anneal_func_type,
            self.three_phase,
        )

    def get_lr(self) -> list[float]:
        if self.last_epoch > self.total_steps:
            raise ValueError(
                f"OneCycleLR was stepped {self.last_epoch} times but total_steps is "
                f"{self.total_steps}"
            )
        return super().get_lr()

    def _lr_schedule(self, index: int, group: dict[str, Any]) -> Schedule:
        return self._one_cycle(group["initial_lr"], group["max_lr"], group["min_lr"])

    def _momentum_schedule(self, index: int, group: dict[str, Any]) -> Schedule:
        top, bottom = group["max_momentum"], group["base_momentum"]
        return self._one_cycle(top, bottom, top)

    def _added_group(self, index: int, group: dict[str, Any]) -> None:
        if not self._one_max_lr:
            raise ValueError(
                f"parameter group {index} was added after OneCycleLR was built with one "
                "max_lr per group: give the new group 'max_lr', 'initial_lr' and 'min_lr'"
            )
        if "max_lr" not in group:
            self._set_lr_keys(group, self._max_lr)
            self.base_lrs[index] = group["initial_lr"]
        if self.cycle_momentum and "max_momentum" not in group:
            group["max_momentum"], group["base_momentum"] = self._momenta


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing from the base lr to ``eta_min`` over ``T_0`` steps, restarting
    each time, each period ``T_mult`` times longer (SGDR)."""

    def __init__(
        self,
        optimizer: Optimizer,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_int("T_0", T_0, 1)
        _check_int("T_mult", T_mult, 1)
        if isinstance(eta_min, bool) or not isinstance(eta_min, (int, float)):
            raise ValueError(f"eta_min must be a number, got {eta_min!r}")
        self.T_0 = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_i = T_0
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def _schedule_for(self, base: float) -> CosineRestarts:
        return CosineRestarts(float(base), self.T_0, self.T_mult, float(self.eta_min))

    def step(self, epoch: float | None = None) -> None:
        """Advance one step, or go to ``epoch`` (which may be fractional: an epoch and a
        fraction of the next)."""
        if self._should_skip():
            return
        self._step_count += 1
        if epoch is not None and epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self._update_lr(epoch)

    def _update_lr(self, epoch: float | None = None) -> None:
        self._add_new_groups()
        t = self.last_epoch + 1 if epoch is None else epoch
        self.last_epoch = math.floor(t)
        self._epoch = t
        self._write(self.get_lr())

    def get_lr(self) -> list[float]:
        t = getattr(self, "_epoch", self.last_epoch)
        _, elapsed, length = self._schedule_for(1.0).cycle(np.float64(t))
        self.T_i = int(length) if float(length).is_integer() else float(length)
        self.T_cur = int(elapsed) if float(elapsed).is_integer() else float(elapsed)
        return [self._schedule_for(base)(t) for base in self.base_lrs]


# --------------------------------------------------------------------------------------
# Plateaus
# --------------------------------------------------------------------------------------


class ReduceLROnPlateau(LRScheduler, _torch.ReduceLROnPlateau):
    """Multiplies the learning rate by ``factor`` when a metric has stopped improving for
    ``patience`` steps; ``step(metric)``. It is also a
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``, so tools that look for one (to pass
    the monitored metric) find it."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        _check_optimizer(optimizer)
        if not isinstance(factor, (int, float)) or not factor < 1.0:
            raise ValueError(f"factor must be < 1, got {factor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = factor
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            self.min_lrs = _per_group("min_lr", optimizer, min_lr)
            self.default_min_lr = None
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._step_count = 1
        self.base_lrs = [_copy(group["lr"]) for group in optimizer.param_groups]
        self._last_lr = [_copy(group["lr"]) for group in optimizer.param_groups]
        _watch(optimizer)
        self._seen = _progress(optimizer)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _restart(self) -> None:
        self.last_epoch = 0
        self._reset()
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record ``metrics`` (the monitored value) and reduce the lr on a plateau."""
        self._seen = _progress(self.optimizer)
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._step(metrics, epoch)

    def _step(self, metrics: SupportsFloat | None, epoch: int | None = None) -> None:
        if metrics is None:
            raise TypeError(
                "ReduceLROnPlateau.step needs the monitored metric: step(metrics) (inside "
                "SequentialLR or ChainedScheduler too)"
            )
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def _reduce_lr(self, epoch: int | None = None) -> None:
        groups = self.optimizer.param_groups
        if len(self.min_lrs) < len(groups):
            if self.default_min_lr is None:
                raise ValueError(
                    f"the optimizer has {len(groups)} parameter groups but ReduceLROnPlateau "
                    f"was given {len(self.min_lrs)} min_lr values: append the new groups' "
                    "to .min_lrs"
                )
            self.min_lrs += [self.default_min_lr] * (len(groups) - len(self.min_lrs))
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                _set(group, "lr", new)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    _is_better = is_better  # torch's name

    def get_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]


# --------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------


def _check_children(kind: str, optimizer: Optimizer, schedulers: Sequence[Any]) -> None:
    if not isinstance(schedulers, (list, tuple)) or len(schedulers) < 1:
        raise ValueError(f"{kind} needs a non-empty list of schedulers, got {schedulers!r}")
    for index, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(
                f"{kind}: schedulers[{index}] must be a descend.lr_scheduler scheduler, got "
                f"{type(scheduler).__name__}"
            )
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                f"{kind}: schedulers[{index}] ({type(scheduler).__name__}) drives another "
                "optimizer; all must drive the same one"
            )


def _step_child(scheduler: LRScheduler, metrics: Any) -> None:
    """Advance a child by one step (its parent has decided that the step counts)."""
    scheduler._seen = _progress(scheduler.optimizer)
    if isinstance(scheduler, (ReduceLROnPlateau, _Composite)):
        scheduler._step(metrics)
    else:
        scheduler._step_count += 1
        scheduler._update_lr()


class _Composite(LRScheduler):
    """Shared by SequentialLR and ChainedScheduler: schedulers driven by one."""

    _not_state = (*LRScheduler._not_state, "_schedulers")
    _schedulers: list[LRScheduler]

    def step(self, metrics: SupportsFloat | None = None) -> None:  # type: ignore[override]
        """Advance one step; ``metrics`` goes to ReduceLROnPlateau children."""
        if self._should_skip():
            return
        self._step_count += 1
        self._step(metrics)

    def _step(self, metrics: Any = None) -> None:
        raise NotImplementedError

    def _settled(self) -> None:
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        children = state_dict.pop("_schedulers", None)
        if children is None or len(children) != len(self._schedulers):
            raise ValueError(
                f"the state_dict has {None if children is None else len(children)} schedulers' "
                f"states; this {type(self).__name__} has {len(self._schedulers)}"
            )
        for scheduler, child in zip(self._schedulers, children):
            scheduler.load_state_dict(child)
        super().load_state_dict(state_dict)


class SequentialLR(_Composite):
    """Runs ``schedulers`` one after another: ``schedulers[i]`` from ``milestones[i - 1]``
    on, started again from its own step 0 and the base learning rates there. They may be
    any descend schedulers, SequentialLR and ReduceLROnPlateau included (``step(metrics)``
    passes the metric on)."""

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: list[LRScheduler],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_children("SequentialLR", optimizer, schedulers)
        milestones = list(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR needs one milestone fewer than schedulers: got "
                f"{len(schedulers)} schedulers and milestones {milestones!r}"
            )
        if any(b <= a for a, b in itertools.pairwise(milestones)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", _copy(group["lr"]))
        self.base_lrs = [_copy(group["initial_lr"]) for group in optimizer.param_groups]
        _watch(optimizer)
        self._seen = _progress(optimizer)
        self._step_count = 1
        self._start_child(bisect.bisect_right(milestones, self.last_epoch))

    def _start_child(self, index: int) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            _set(group, "lr", float(base))
        self._schedulers[index]._restart()
        self._settled()

    def _restart(self) -> None:
        self.last_epoch = 0
        self._start_child(0)

    def _step(self, metrics: Any = None) -> None:
        self._add_new_groups()
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            self._start_child(index)
        else:
            _step_child(self._schedulers[index], metrics)
            self._settled()


class ChainedScheduler(_Composite):
    """Steps all ``schedulers`` together, each changing what the ones before it set
    (their effects multiply). ReduceLROnPlateau may be among them."""

    def __init__(
        self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None
    ) -> None:
        if not isinstance(schedulers, (list, tuple)) or not schedulers:
            raise ValueError(
                f"ChainedScheduler needs a non-empty list of schedulers, got {schedulers!r}"
            )
        optimizer = optimizer or schedulers[0].optimizer
        _check_optimizer(optimizer)
        _check_children("ChainedScheduler", optimizer, schedulers)
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self.base_lrs = [
            _copy(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups
        ]
        self.last_epoch = 0
        _watch(optimizer)
        self._seen = _progress(optimizer)
        self._step_count = 1
        self._last_lr = [_copy(group["lr"]) for group in optimizer.param_groups]

    def _restart(self) -> None:
        self.last_epoch = 0
        for scheduler in self._schedulers:
            scheduler._restart()
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def _step(self, metrics: Any = None) -> None:
        self.last_epoch += 1
        for scheduler in self._schedulers:
            _step_child(scheduler, metrics)
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]
