"""Schedulers that scale the current lr by the change of a unit schedule, as torch's
chainable form: StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR,
CosineAnnealingLR."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from torch.optim import Optimizer

from descend.lr_scheduler._base import (
    LRScheduler,
    _check_factor,
    _check_int,
    _check_milestones,
    _check_optimizer,
    _check_real,
)
from descend.schedules import (
    Constant,
    Cosine,
    Exponential,
    Linear,
    MultiStep,
    PiecewiseConstant,
    Polynomial,
    Schedule,
    Step,
)

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
        _check_real("gamma", gamma)
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
        milestones = _check_milestones(milestones)
        _check_real("gamma", gamma)
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
        _check_real("gamma", gamma, 0, strict=True)
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
        _check_real("power", power)
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
        _check_real("T_max", T_max)
        _check_real("eta_min", eta_min)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    @property
    def _floor(self) -> float:  # type: ignore[override]
        return float(self.eta_min)

    def _unit(self) -> Schedule:
        return Cosine(1.0, self.T_max, 0.0, periodic=True)
