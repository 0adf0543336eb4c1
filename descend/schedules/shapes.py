"""Closed-form schedules: each value depends on the step alone.

Names of the arguments follow one convention: ``init`` is the value at step 0, ``end`` the
value a decay ends at, ``steps`` how many steps a transition takes and ``begin`` the step
it starts at (the value is ``init`` before). The torch, MindSpore, SINGA, MXNet.jl and
optax schedules are these shapes with their own argument names; ``descend.lr_scheduler``
and the compat modules translate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from descend.schedules.base import (
    Schedule,
    Steps,
    _as_schedule,
    _is_real,
    _set,
    choice,
    flag,
    optional_real,
    positive,
    real,
    steps_tuple,
)


def _since(t: Steps, begin: float) -> Steps:
    return np.maximum(t - begin, 0.0)


def _half_cosine(start: float, end: float, fraction: Steps) -> Steps:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine."""
    return end + (start - end) / 2.0 * (np.cos(math.pi * fraction) + 1.0)


def _straight(start: float, end: float, fraction: Steps) -> Steps:
    return (end - start) * fraction + start


_ANNEAL = {"cos": _half_cosine, "linear": _straight}


@dataclass(frozen=True)
class Constant(Schedule):
    """``value`` at every step."""

    value: float

    def __post_init__(self) -> None:
        real(self, "value")

    def _at(self, t: Steps) -> Steps:
        return np.full_like(t, self.value)


@dataclass(frozen=True)
class Linear(Schedule):
    """From ``start`` at step ``begin`` to ``end`` at ``begin + steps`` in a straight line,
    then ``end``. Also the linear warmup: ``Linear(0.0, peak, warmup_steps)``."""

    start: float
    end: float
    steps: float
    begin: float = 0

    def __post_init__(self) -> None:
        real(self, "start"), real(self, "end"), positive(self, "steps")
        real(self, "begin")

    def _at(self, t: Steps) -> Steps:
        fraction = np.minimum(_since(t, self.begin), self.steps) / self.steps
        return self.start + (self.end - self.start) * fraction


@dataclass(frozen=True)
class Step(Schedule):
    """``init``, multiplied by ``gamma`` every ``step_size`` steps."""

    init: float
    step_size: float
    gamma: float = 0.1

    def __post_init__(self) -> None:
        real(self, "init"), positive(self, "step_size"), real(self, "gamma")

    def _at(self, t: Steps) -> Steps:
        return self.init * self.gamma ** np.floor(t / self.step_size)


@dataclass(frozen=True)
class MultiStep(Schedule):
    """``init``, multiplied by ``gamma`` at each of ``milestones`` (a milestone given twice
    multiplies twice)."""

    init: float
    milestones: Sequence[float]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        real(self, "init"), real(self, "gamma")
        steps_tuple(self, "milestones", strictly_increasing=False, sort=True)

    def _at(self, t: Steps) -> Steps:
        passed = np.searchsorted(np.asarray(self.milestones, dtype=np.float64), t, side="right")
        return self.init * self.gamma ** passed.astype(np.float64)


@dataclass(frozen=True)
class Exponential(Schedule):
    """``init · decay_rate ** ((step - begin) / decay_steps)`` from ``begin`` on.

    ``staircase`` decays in whole periods of ``decay_steps``; ``end``, if given, is where
    the decay stops (a floor when decaying, a ceiling when growing).
    """

    init: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False
    begin: float = 0
    end: float | None = None

    def __post_init__(self) -> None:
        real(self, "init"), positive(self, "decay_steps"), real(self, "decay_rate")
        flag(self, "staircase"), real(self, "begin"), optional_real(self, "end")
        if self.decay_rate <= 0:
            raise ValueError(f"Exponential: decay_rate must be > 0, got {self.decay_rate!r}")

    def _at(self, t: Steps) -> Steps:
        periods = _since(t, self.begin) / self.decay_steps
        if self.staircase:
            periods = np.floor(periods)
        value = self.init * self.decay_rate**periods
        if self.end is not None:
            bound = np.maximum if self.decay_rate < 1 else np.minimum
            value = bound(value, self.end)
        return value


@dataclass(frozen=True)
class Polynomial(Schedule):
    """From ``init`` to ``end`` over ``steps`` along ``(1 - step / steps) ** power``, then
    ``end``. With ``cycle``, the decay restarts over a multiple of ``steps`` each time it
    would end (MindSpore's ``update_decay_steps``)."""

    init: float
    end: float
    steps: float
    power: float = 1.0
    begin: float = 0
    cycle: bool = False

    def __post_init__(self) -> None:
        real(self, "init"), real(self, "end"), positive(self, "steps")
        real(self, "power"), real(self, "begin"), flag(self, "cycle")
        if self.power < 0:  # the value at ``steps`` would be 0 ** power: infinite
            raise ValueError(f"Polynomial: power must be >= 0, got {self.power!r}")

    def _at(self, t: Steps) -> Steps:
        elapsed = _since(t, self.begin)
        if self.cycle:
            length = self.steps * np.maximum(np.ceil(elapsed / self.steps), 1.0)
        else:
            elapsed, length = np.minimum(elapsed, self.steps), self.steps
        return (self.init - self.end) * (1.0 - elapsed / length) ** self.power + self.end


@dataclass(frozen=True)
class Cosine(Schedule):
    """From ``init`` to ``end`` (the floor) along half a cosine over ``steps``, then
    ``end``. With ``periodic`` the cosine goes on, back up to ``init`` at ``2 * steps``
    and so on, as torch's ``CosineAnnealingLR`` does past ``T_max``."""

    init: float
    steps: float
    end: float = 0.0
    periodic: bool = False

    def __post_init__(self) -> None:
        real(self, "init"), positive(self, "steps"), real(self, "end"), flag(self, "periodic")

    def _at(self, t: Steps) -> Steps:
        elapsed = t if self.periodic else np.minimum(t, self.steps)
        return (
            self.end + (self.init - self.end) * (1.0 + np.cos(math.pi * elapsed / self.steps)) / 2
        )


@dataclass(frozen=True)
class CosineRestarts(Schedule):
    """Cosine decay from ``init`` to ``end`` over ``period`` steps, restarting at ``init``
    each time; each period is ``period_mult`` times the one before (SGDR, torch's
    ``CosineAnnealingWarmRestarts``)."""

    init: float
    period: float
    period_mult: float = 1
    end: float = 0.0

    def __post_init__(self) -> None:
        real(self, "init"), positive(self, "period"), real(self, "end")
        real(self, "period_mult")
        if self.period_mult < 1:
            raise ValueError(f"CosineRestarts: period_mult must be >= 1, got {self.period_mult!r}")
        if float(self.period_mult).is_integer():
            _set(self, "period_mult", int(self.period_mult))

    def _growth(self, n: Steps) -> Steps:
        """``period_mult ** n``, exact for a whole ``period_mult`` so that restarts fall on
        whole steps."""
        growth = np.power(float(self.period_mult), n)
        return np.rint(growth) if isinstance(self.period_mult, int) else growth

    def _start(self, n: Steps) -> Steps:
        """The step at which period ``n`` (0-based) starts."""
        m = self.period_mult
        return self.period * n if m == 1 else self.period * (self._growth(n) - 1) / (m - 1)

    def cycle(self, t: Steps) -> tuple[Steps, Steps, Steps]:
        """At step(s) ``t``: which period (0-based), how far into it, and its length."""
        t = np.maximum(t, 0.0)
        m = self.period_mult
        if m == 1:
            n = np.floor(t / self.period)
        else:
            n = np.floor(np.log(t / self.period * (m - 1) + 1) / math.log(m))
            # the logarithm can land a hair below a whole period at a restart: correct it
            n = n + (t >= self._start(n + 1)) - (t < self._start(n))
        return n, t - self._start(n), self.period * self._growth(n)

    def _at(self, t: Steps) -> Steps:
        _, elapsed, length = self.cycle(t)
        return self.end + (self.init - self.end) * (1 + np.cos(math.pi * elapsed / length)) / 2


def _triangular(cycle: Steps) -> Steps:
    return np.ones_like(cycle)


def _triangular2(cycle: Steps) -> Steps:
    return 1 / (2.0 ** (cycle - 1))


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Cycles between ``base`` and ``peak``: ``up`` steps rising, ``down`` steps falling
    (torch's ``CyclicLR``). ``mode`` shrinks the cycles: "triangular" keeps them,
    "triangular2" halves each, "exp_range" scales by ``gamma ** step``; or give your own
    ``scale_fn`` of the cycle number (``scale_mode="cycle"``) or of the step
    ("iterations"). With ``base > peak`` it dips instead: momentum cycling."""

    base: float
    peak: float
    up: float = 2000
    down: float | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    scale_fn: Callable[[float], float] | None = None
    scale_mode: str = "cycle"

    def __post_init__(self) -> None:
        real(self, "base"), real(self, "peak"), positive(self, "up"), real(self, "gamma")
        if self.down is not None:
            positive(self, "down")
        if self.scale_fn is None:
            choice(self, "mode", ("triangular", "triangular2", "exp_range"))
        elif not callable(self.scale_fn):
            raise TypeError(f"Cyclic: scale_fn must be callable, got {self.scale_fn!r}")
        choice(self, "scale_mode", ("cycle", "iterations"))

    def _scale(self, cycle: Steps, t: Steps) -> Steps:
        if self.scale_fn is None:
            if self.mode == "triangular":
                return _triangular(cycle)
            if self.mode == "triangular2":
                return _triangular2(cycle)
            return self.gamma**t
        x = cycle if self.scale_mode == "cycle" else t
        if isinstance(self.scale_fn, Schedule):
            return self.scale_fn._at(x)
        return np.vectorize(lambda v: float(self.scale_fn(v)), otypes=[np.float64])(x)

    def _at(self, t: Steps) -> Steps:
        up = float(self.up)
        total = up + (up if self.down is None else float(self.down))
        ratio = up / total
        cycle = np.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        rising = x <= ratio
        # both branches are computed; the unused one may divide by zero harmlessly
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(rising, x / ratio, (x - 1) / (ratio - 1))
        return self.base + (self.peak - self.base) * fraction * self._scale(cycle, t)


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy: from ``start`` up to ``peak`` over the first ``pct_start`` of
    ``total_steps``, then down to ``end`` (torch's ``OneCycleLR``). ``three_phase`` comes
    back to ``start`` symmetrically before falling to ``end``. ``anneal`` is "cos" or
    "linear". For momentum cycling give ``peak < start``.

    Torch's phase boundaries are kept exactly: the first phase ends at step
    ``pct_start * total_steps - 1`` and the last at ``total_steps - 1``.
    """

    start: float
    peak: float
    end: float
    total_steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    three_phase: bool = False

    def __post_init__(self) -> None:
        real(self, "start"), real(self, "peak"), real(self, "end"), real(self, "pct_start")
        positive(self, "total_steps"), flag(self, "three_phase")
        choice(self, "anneal", ("cos", "linear"))
        if not 0 <= self.pct_start <= 1:
            raise ValueError(f"OneCycle: pct_start must be in [0, 1], got {self.pct_start!r}")

    def _phases(self) -> list[tuple[float, float, float]]:
        """(end step, start value, end value) of each phase."""
        first = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if self.three_phase:
            second = float(2 * self.pct_start * self.total_steps) - 2
            return [
                (first, self.start, self.peak),
                (second, self.peak, self.start),
                (last, self.start, self.end),
            ]
        return [(first, self.start, self.peak), (last, self.peak, self.end)]

    def _at(self, t: Steps) -> Steps:
        anneal = _ANNEAL[self.anneal]
        phases = self._phases()
        result = np.zeros_like(t)
        done = np.zeros(np.shape(t), dtype=bool)
        begin = 0.0
        for i, (finish, low, high) in enumerate(phases):
            here = ~done & ((t <= finish) | (i == len(phases) - 1))
            # a phase of no length (pct_start * total_steps == 1) is over: at its end value
            fraction = (t - begin) / (finish - begin) if finish != begin else np.ones_like(t)
            value = anneal(low, high, fraction)
            result = np.where(here, value, result)
            done = done | here
            begin = finish
        return result


@dataclass(frozen=True)
class InverseTime(Schedule):
    """``init / (1 + decay_rate · step / decay_steps) ** power`` (MindSpore's inverse
    decay with ``power=1``; MXNet.jl's ``LearningRate.Inv`` with ``decay_steps=1``).
    ``staircase`` decays in whole periods of ``decay_steps``."""

    init: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False
    power: float = 1.0

    def __post_init__(self) -> None:
        real(self, "init"), positive(self, "decay_steps"), real(self, "decay_rate")
        flag(self, "staircase"), real(self, "power")

    def _at(self, t: Steps) -> Steps:
        periods = t / self.decay_steps
        if self.staircase:
            periods = np.floor(periods)
        return self.init / (1.0 + self.decay_rate * periods) ** self.power


@dataclass(frozen=True)
class NaturalExp(Schedule):
    """``init · exp(-decay_rate · step / decay_steps)``; ``staircase`` decays in whole
    periods of ``decay_steps``."""

    init: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False

    def __post_init__(self) -> None:
        real(self, "init"), positive(self, "decay_steps"), real(self, "decay_rate")
        flag(self, "staircase")

    def _at(self, t: Steps) -> Steps:
        periods = t / self.decay_steps
        if self.staircase:
            periods = np.floor(periods)
        return self.init * np.exp(-self.decay_rate * periods)


@dataclass(frozen=True)
class PiecewiseConstant(Schedule):
    """``levels[0]`` before ``boundaries[0]``, ``levels[i]`` from ``boundaries[i - 1]``
    on: one more level than boundaries (MindSpore's ``piecewise_constant_lr``)."""

    boundaries: Sequence[float]
    levels: Sequence[float]

    def __post_init__(self) -> None:
        boundaries = steps_tuple(self, "boundaries")
        values = _numbers(self, "levels")
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"PiecewiseConstant: {len(boundaries)} boundaries need {len(boundaries) + 1} "
                f"levels, got {len(values)}: {values!r}"
            )

    def _at(self, t: Steps) -> Steps:
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), t, side="right")
        return np.asarray(self.levels, dtype=np.float64)[index]


@dataclass(frozen=True)
class PiecewiseInterpolated(Schedule):
    """``levels[i]`` at ``boundaries[i]``, joined by straight lines (``kind="linear"``)
    or half cosines (``kind="cos"``); constant before the first and after the last."""

    boundaries: Sequence[float]
    levels: Sequence[float]
    kind: str = "linear"

    def __post_init__(self) -> None:
        boundaries = steps_tuple(self, "boundaries")
        values = _numbers(self, "levels")
        choice(self, "kind", ("linear", "cos"))
        if len(values) != len(boundaries) or not values:
            raise ValueError(
                f"PiecewiseInterpolated: needs one value per boundary, got {len(boundaries)} "
                f"boundaries and {len(values)} levels"
            )

    def _at(self, t: Steps) -> Steps:
        bounds = np.asarray(self.boundaries, dtype=np.float64)
        values = np.asarray(self.levels, dtype=np.float64)
        if len(bounds) == 1:
            return np.full_like(t, values[0])
        i = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, len(bounds) - 2)
        fraction = np.clip((t - bounds[i]) / (bounds[i + 1] - bounds[i]), 0.0, 1.0)
        return _ANNEAL[self.kind](values[i], values[i + 1], fraction)


@dataclass(frozen=True)
class Warmup(Schedule):
    """``schedule``, after ``steps`` of warmup from ``start`` up to ``schedule(0)``:
    in a straight line (``kind="linear"``) or geometrically (``kind="exponential"``,
    which needs ``start > 0``). At step ``steps`` the schedule begins at its step 0::

        Warmup(Cosine(0.1, 900), steps=100)   # 1000 steps: warmup, then cosine decay
    """

    schedule: Schedule | float
    steps: float
    start: float = 0.0
    kind: str = "linear"

    def __post_init__(self) -> None:
        _set(self, "schedule", _as_schedule("Warmup: schedule", self.schedule))
        positive(self, "steps"), real(self, "start")
        choice(self, "kind", ("linear", "exponential"))
        if self.kind == "exponential" and not self.start > 0:
            raise ValueError(f"Warmup: exponential warmup needs start > 0, got {self.start!r}")
        if self.kind == "exponential" and not self.schedule(0) > 0:
            raise ValueError(
                "Warmup: exponential warmup needs a schedule that starts above 0, got "
                f"{self.schedule!r}, which starts at {self.schedule(0)!r}"
            )

    def _at(self, t: Steps) -> Steps:
        target = self.schedule(0)
        fraction = np.minimum(np.maximum(t, 0.0) / self.steps, 1.0)
        if self.kind == "linear":
            ramp = self.start + (target - self.start) * fraction
        else:
            ramp = self.start * (target / self.start) ** fraction
        return np.where(t < self.steps, ramp, self.schedule._at(np.maximum(t - self.steps, 0.0)))


def _numbers(schedule: Schedule, name: str) -> tuple[float, ...]:
    value = getattr(schedule, name)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(
            f"{type(schedule).__name__}: {name} must be a sequence of numbers, got {value!r}"
        )
    if not all(_is_real(v) for v in value):
        raise TypeError(f"{type(schedule).__name__}: {name} must hold numbers, got {value!r}")
    items = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in items):
        raise ValueError(
            f"{type(schedule).__name__}: {name} must hold finite numbers, got {value!r}"
        )
    _set(schedule, name, items)
    return items
