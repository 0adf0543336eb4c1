"""The :class:`Schedule` base class and the combinators that build schedules from others.

A schedule is a pure function of the step: ``schedule(step)`` gives the value in force at
``step`` (0 for the first update) and ``schedule.values(steps)`` gives many at once, as a
NumPy array. Schedules are frozen dataclasses: they compare by value, pickle, and their
``repr`` is the expression that rebuilds them.

Each schedule writes its formula once, in :meth:`Schedule._at`, with NumPy operations that
run on a 1-D array of steps, so that one step gives, to the last bit, what many give.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Steps = Any
"""A float64 NumPy scalar or array of steps, as :meth:`Schedule._at` receives them."""


class Schedule:
    """A value that depends on the step: a learning rate, a momentum, a weight decay...

    Give one to any hyperparameter of a descend optimizer (``lr=Cosine(0.1, 1000)``), to
    ``descend.lr_scheduler.LambdaLR``, or call it yourself. Arithmetic reads naturally:
    ``0.5 * Cosine(0.1, 1000) + 0.01``, ``schedule / 10``, ``-schedule``.
    """

    def __call__(self, step: float) -> float:
        """The value at ``step``."""
        return float(self.values((step,))[0])

    def values(self, steps: Any) -> np.ndarray:
        """The values at each of ``steps`` (anything NumPy reads as numbers), as float64.

        The formula always runs on a 1-D array: NumPy computes some functions (``power``)
        differently on a 0-d array than on a 1-D one, and one step must give the value many
        give, to the last bit.
        """
        steps = np.asarray(steps, dtype=np.float64)
        flat = steps.reshape(-1)
        values = np.broadcast_to(np.asarray(self._at(flat), dtype=np.float64), flat.shape)
        return values.reshape(steps.shape).copy()

    def _at(self, t: Steps) -> Steps:
        """The formula, on a 1-D float64 array ``t`` of steps."""
        raise NotImplementedError

    # Arithmetic: numbers stand for constant schedules.

    def __add__(self, other: Any) -> Schedule:
        return Sum((self, other))

    def __radd__(self, other: Any) -> Schedule:
        return Sum((other, self))

    def __sub__(self, other: Any) -> Schedule:
        return Sum((self, -_as_schedule("other", other)))

    def __rsub__(self, other: Any) -> Schedule:
        return Sum((other, -self))

    def __mul__(self, other: Any) -> Schedule:
        if _is_real(other):
            return Scale(self, other)
        return Product((self, other))

    def __rmul__(self, other: Any) -> Schedule:
        if _is_real(other):
            return Scale(self, other)
        return Product((other, self))

    def __truediv__(self, other: Any) -> Schedule:
        return Quotient(self, other)

    def __rtruediv__(self, other: Any) -> Schedule:
        return Quotient(other, self)

    def __neg__(self) -> Schedule:
        return Scale(self, -1.0)


# --------------------------------------------------------------------------------------
# Argument checks, shared with shapes.py
# --------------------------------------------------------------------------------------


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _set(schedule: Any, name: str, value: Any) -> None:
    object.__setattr__(schedule, name, value)


def real(schedule: Any, name: str, finite: bool = True) -> float:
    """Check that field ``name`` is a real number and store it as a float."""
    value = getattr(schedule, name)
    if not _is_real(value):
        raise TypeError(
            f"{type(schedule).__name__}: {name} must be a number, got "
            f"{type(value).__name__} {value!r}"
        )
    value = _float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{type(schedule).__name__}: {name} must be finite, got {value!r}")
    _set(schedule, name, value)
    return value


def _float(value: Any) -> float:
    """``float(value)``, infinite for an integer past float's range (which the callers
    refuse, by name, as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def optional_real(schedule: Any, name: str) -> float | None:
    return None if getattr(schedule, name) is None else real(schedule, name)


def positive(schedule: Any, name: str) -> float:
    """Check that field ``name`` is a number > 0 (steps may be fractional, as epochs are)."""
    value = getattr(schedule, name)
    if not _is_real(value):
        raise TypeError(
            f"{type(schedule).__name__}: {name} must be a number, got "
            f"{type(value).__name__} {value!r}"
        )
    if not value > 0:
        raise ValueError(f"{type(schedule).__name__}: {name} must be > 0, got {value!r}")
    if isinstance(value, numbers.Integral) and math.isfinite(_float(value)):
        _set(schedule, name, int(value))
    else:
        real(schedule, name)
    return getattr(schedule, name)


def flag(schedule: Any, name: str) -> bool:
    """Check that field ``name`` is True or False (NumPy's bools become Python's)."""
    value = getattr(schedule, name)
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{type(schedule).__name__}: {name} must be True or False, got "
            f"{type(value).__name__} {value!r}"
        )
    _set(schedule, name, bool(value))
    return bool(value)


def steps_tuple(
    schedule: Any, name: str, strictly_increasing: bool = True, sort: bool = False
) -> tuple:
    """Check that field ``name`` is a sequence of finite steps in increasing order (or, with
    ``sort``, in any order, stored sorted); store a tuple."""
    value = getattr(schedule, name)
    kind = type(schedule).__name__
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"{kind}: {name} must be a sequence of steps, got {value!r}")
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise TypeError(f"{kind}: {name} must be a 1-D sequence of steps, got {value!r}")
    items = []
    for item in value:
        if not _is_real(item):
            raise TypeError(f"{kind}: {name} must hold numbers, got {item!r} in {value!r}")
        if not math.isfinite(_float(item)):
            raise ValueError(f"{kind}: {name} must hold finite steps, got {item!r} in {value!r}")
        items.append(int(item) if float(item).is_integer() else float(item))
    if sort:
        items.sort()
    pairs = list(itertools.pairwise(items))
    if strictly_increasing and any(b <= a for a, b in pairs):
        raise ValueError(f"{kind}: {name} must be strictly increasing, got {value!r}")
    if not strictly_increasing and any(b < a for a, b in pairs):
        raise ValueError(f"{kind}: {name} must be in increasing order, got {value!r}")
    _set(schedule, name, tuple(items))
    return tuple(items)


def choice(schedule: Any, name: str, options: Sequence[str]) -> str:
    value = getattr(schedule, name)
    if value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(
            f"{type(schedule).__name__}: {name} must be one of {listed}, got {value!r}"
        )
    return value


def _as_schedule(name: str, value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if _is_real(value):
        from descend.schedules.shapes import Constant

        if not math.isfinite(_float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return Constant(float(value))
    raise TypeError(f"{name} must be a Schedule or a number, got {type(value).__name__} {value!r}")


def _schedules(schedule: Any, name: str) -> tuple[Schedule, ...]:
    value = getattr(schedule, name)
    if isinstance(value, Schedule | str | bytes) or not isinstance(value, Sequence):
        raise TypeError(
            f"{type(schedule).__name__}: {name} must be a sequence of schedules, got {value!r}"
        )
    items = tuple(
        _as_schedule(f"{type(schedule).__name__}: {name}[{i}]", v) for i, v in enumerate(value)
    )
    if not items:
        raise ValueError(f"{type(schedule).__name__}: {name} must not be empty")
    _set(schedule, name, items)
    return items


# --------------------------------------------------------------------------------------
# Combinators
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sum(Schedule):
    """The sum of ``terms`` (schedules or numbers); ``a + b`` builds one."""

    terms: Sequence[Schedule | float]

    def __post_init__(self) -> None:
        _schedules(self, "terms")

    def _at(self, t: Steps) -> Steps:
        total = self.terms[0]._at(t)
        for term in self.terms[1:]:
            total = total + term._at(t)
        return total


@dataclass(frozen=True)
class Product(Schedule):
    """The product of ``factors`` (schedules or numbers); ``a * b`` builds one."""

    factors: Sequence[Schedule | float]

    def __post_init__(self) -> None:
        _schedules(self, "factors")

    def _at(self, t: Steps) -> Steps:
        total = self.factors[0]._at(t)
        for factor in self.factors[1:]:
            total = total * factor._at(t)
        return total


@dataclass(frozen=True)
class Quotient(Schedule):
    """``numerator / denominator`` (schedules or numbers); ``a / b`` builds one."""

    numerator: Schedule | float
    denominator: Schedule | float

    def __post_init__(self) -> None:
        _set(self, "numerator", _as_schedule("Quotient: numerator", self.numerator))
        _set(self, "denominator", _as_schedule("Quotient: denominator", self.denominator))

    def _at(self, t: Steps) -> Steps:
        return self.numerator._at(t) / self.denominator._at(t)


@dataclass(frozen=True)
class Scale(Schedule):
    """``schedule`` times the number ``factor``; ``factor * schedule`` builds one."""

    schedule: Schedule
    factor: float

    def __post_init__(self) -> None:
        _set(self, "schedule", _as_schedule("Scale: schedule", self.schedule))
        real(self, "factor")

    def _at(self, t: Steps) -> Steps:
        return self.schedule._at(t) * self.factor


@dataclass(frozen=True)
class Shift(Schedule):
    """``schedule`` started ``steps`` later: ``schedule(step - steps)``, holding
    ``schedule(0)`` before ``steps``. A negative ``steps`` starts it part-way through."""

    schedule: Schedule
    steps: float

    def __post_init__(self) -> None:
        _set(self, "schedule", _as_schedule("Shift: schedule", self.schedule))
        real(self, "steps")
        if float(self.steps).is_integer():
            _set(self, "steps", int(self.steps))

    def _at(self, t: Steps) -> Steps:
        return self.schedule._at(np.maximum(t - self.steps, 0.0))


@dataclass(frozen=True)
class Clamp(Schedule):
    """``schedule`` kept within ``[min, max]`` (either bound may be None)."""

    schedule: Schedule
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        _set(self, "schedule", _as_schedule("Clamp: schedule", self.schedule))
        low, high = optional_real(self, "min"), optional_real(self, "max")
        if low is not None and high is not None and low > high:
            raise ValueError(f"Clamp: min ({low!r}) must not exceed max ({high!r})")

    def _at(self, t: Steps) -> Steps:
        value = self.schedule._at(t)
        if self.min is not None:
            value = np.maximum(value, self.min)
        if self.max is not None:
            value = np.minimum(value, self.max)
        return value


@dataclass(frozen=True)
class Repeat(Schedule):
    """``schedule`` over its first ``period`` steps, again and again:
    ``schedule(step % period)``."""

    schedule: Schedule
    period: float

    def __post_init__(self) -> None:
        _set(self, "schedule", _as_schedule("Repeat: schedule", self.schedule))
        positive(self, "period")

    def _at(self, t: Steps) -> Steps:
        return self.schedule._at(np.mod(t, self.period))


@dataclass(frozen=True)
class Join(Schedule):
    """One schedule after another: ``schedules[i]`` from ``boundaries[i - 1]`` on, each
    starting again from its own step 0 there (as optax's ``join_schedules``)::

        Join([Linear(0.0, 0.1, 100), Cosine(0.1, 900)], boundaries=[100])
    """

    schedules: Sequence[Schedule | float]
    boundaries: Sequence[float]

    def __post_init__(self) -> None:
        schedules = _schedules(self, "schedules")
        boundaries = steps_tuple(self, "boundaries")
        if len(boundaries) != len(schedules) - 1:
            raise ValueError(
                f"Join: {len(schedules)} schedules need {len(schedules) - 1} boundaries, got "
                f"{len(boundaries)}: {boundaries!r}"
            )

    def _at(self, t: Steps) -> Steps:
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), t, side="right")
        starts = np.asarray((0, *self.boundaries), dtype=np.float64)
        result = np.empty_like(t)
        for i, schedule in enumerate(self.schedules):
            chosen = index == i
            if chosen.any():
                result[chosen] = schedule._at(t[chosen] - starts[i])
        return result
