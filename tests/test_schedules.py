"""descend.schedules against independent oracles.

Every expected value comes from outside descend, written out here with plain ``math``:

- torch.optim.lr_scheduler: the closed forms (``_get_closed_form_lr``) and the ``get_lr`` /
  ``step`` code of CyclicLR, OneCycleLR and CosineAnnealingWarmRestarts (torch 2.13);
- optax's documented schedule semantics (``join_schedules`` restarts each schedule at 0 at
  its boundary; ``warmup_cosine_decay_schedule``'s ``decay_steps`` includes the warmup);
- MindSpore: the ``dynamic_lr`` functions (lists of ``total_step`` values, one level per
  epoch) and the ``LearningRateSchedule`` classes, as coded in mindspore/nn/dynamic_lr.py
  and nn/learning_rate_schedule.py, and the values their docstrings and the optimizer
  tutorial (../shared/seeds/001) print;
- SINGA's ``ExponentialDecay`` (seeds/000) and MXNet.jl's ``LearningRate.Exp``/``Inv`` and
  momentum schedulers (seeds/003, research/frameworks.md).

The translations below (``MindSpore dynamic_lr -> descend``, ...) are what descend.compat
will do; here they show that the shapes are enough.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import functools
import itertools
import math
import pickle
import re
import warnings
from collections.abc import Callable, Iterable

import matplotlib.image
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import descend.schedules
from descend.schedules import (
    Clamp,
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseTime,
    Join,
    Linear,
    MultiStep,
    NaturalExp,
    OneCycle,
    PiecewiseConstant,
    PiecewiseInterpolated,
    Polynomial,
    Product,
    Quotient,
    Repeat,
    Scale,
    Schedule,
    Shift,
    Step,
    Sum,
    Warmup,
)

Reference = Callable[[float], float]
STEPS = range(300)


def check(schedule: Schedule, reference: Reference, steps: Iterable = STEPS, rel=1e-12) -> None:
    """``schedule(t)`` and ``schedule.values(steps)`` equal ``reference(t)`` to ``rel``
    (absolute ``rel`` times the largest value, near zero), and exactly each other."""
    steps = list(steps)
    expected = [reference(t) for t in steps]
    scale = max(abs(v) for v in expected) or 1.0
    called = [schedule(t) for t in steps]
    for t, got, want in zip(steps, called, expected):
        assert math.isclose(got, want, rel_tol=rel, abs_tol=rel * scale), (
            f"{schedule!r} at step {t}: {got!r}, expected {want!r}"
        )
    assert schedule.values(steps).tolist() == called


# --------------------------------------------------------------------------------------
# torch.optim.lr_scheduler: closed forms, transcribed from torch 2.13
# --------------------------------------------------------------------------------------


def torch_step_lr(base_lr, step_size, gamma):
    return lambda t: base_lr * gamma ** (t // step_size)


def torch_multistep_lr(base_lr, milestones, gamma):
    return lambda t: base_lr * gamma ** bisect.bisect_right(sorted(milestones), t)


def torch_constant_lr(base_lr, factor, total_iters):
    return lambda t: base_lr * (factor + (t >= total_iters) * (1 - factor))


def torch_linear_lr(base_lr, start_factor, end_factor, total_iters):
    return lambda t: (
        base_lr * (start_factor + (end_factor - start_factor) * min(total_iters, t) / total_iters)
    )


def torch_exponential_lr(base_lr, gamma):
    return lambda t: base_lr * gamma**t


def torch_polynomial_lr(base_lr, total_iters, power):
    return lambda t: base_lr * (1.0 - min(total_iters, t) / total_iters) ** power


def torch_cosine_annealing_lr(base_lr, t_max, eta_min):
    return lambda t: eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def torch_cases() -> list:
    cases = []
    for base, size, gamma in [(0.1, 30, 0.1), (1.0, 7, 0.5), (0.05, 1, 0.97), (2.0, 10, 1.5)]:
        cases.append((Step(base, size, gamma), torch_step_lr(base, size, gamma)))
    for base, milestones, gamma in [(0.1, [30, 80], 0.1), (1.0, [50, 10, 10, 200], 0.5)]:
        cases.append(
            (MultiStep(base, milestones, gamma), torch_multistep_lr(base, milestones, gamma))
        )
    for base, factor, total in [(0.1, 1 / 3, 5), (0.5, 0.25, 120)]:
        translation = PiecewiseConstant([total], [base * factor, base])
        cases.append((translation, torch_constant_lr(base, factor, total)))
        joined = Join([Constant(base * factor), Constant(base)], [total])
        cases.append((joined, torch_constant_lr(base, factor, total)))
    for base, start, end, total in [(0.1, 1 / 3, 1.0, 5), (0.02, 1.0, 0.01, 250)]:
        translation = Linear(base * start, base * end, total)
        cases.append((translation, torch_linear_lr(base, start, end, total)))
    for base, gamma in [(0.1, 0.99), (1.0, 0.9), (0.01, 1.001)]:
        cases.append((Exponential(base, 1, gamma), torch_exponential_lr(base, gamma)))
    for base, total, power in [(0.1, 100, 1.0), (0.3, 250, 2.0), (1.0, 7, 0.5)]:
        cases.append((Polynomial(base, 0.0, total, power), torch_polynomial_lr(base, total, power)))
    for base, t_max, eta_min in [(0.1, 50, 0.0), (1.0, 299, 0.01), (0.5, 7, 0.2)]:
        # torch's closed form goes on past T_max, back up: ``periodic``
        periodic = Cosine(base, t_max, end=eta_min, periodic=True)
        cases.append((periodic, torch_cosine_annealing_lr(base, t_max, eta_min)))
        clamped = torch_cosine_annealing_lr(base, t_max, eta_min)
        cases.append((Cosine(base, t_max, end=eta_min), lambda t, f=clamped, n=t_max: f(min(t, n))))
    return cases


# --------------------------------------------------------------------------------------
# optax schedules, transcribed from their documented semantics
# --------------------------------------------------------------------------------------


def optax_polynomial(init_value, end_value, power, transition_steps, transition_begin=0):
    def schedule(count):
        count = min(max(count - transition_begin, 0), transition_steps)
        frac = 1 - count / transition_steps
        return (init_value - end_value) * frac**power + end_value

    return schedule


def optax_linear(init_value, end_value, transition_steps, transition_begin=0):
    return optax_polynomial(init_value, end_value, 1, transition_steps, transition_begin)


def optax_exponential_decay(
    init_value, transition_steps, decay_rate, transition_begin=0, staircase=False, end_value=None
):
    def schedule(count):
        decreased = count - transition_begin
        p = decreased / transition_steps
        if staircase:
            p = math.floor(p)
        value = init_value if decreased <= 0 else init_value * decay_rate**p
        if end_value is not None:
            value = max(value, end_value) if decay_rate < 1 else min(value, end_value)
        return value

    return schedule


def optax_cosine_decay(init_value, decay_steps, alpha=0.0):
    def schedule(count):
        count = min(count, decay_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * count / decay_steps))
        return init_value * ((1 - alpha) * cosine + alpha)

    return schedule


def optax_piecewise_constant(init_value, boundaries_and_scales):
    def schedule(count):
        value = init_value
        for boundary, scale in sorted(boundaries_and_scales.items()):
            if count >= boundary:
                value *= scale
        return value

    return schedule


def optax_piecewise_interpolate(kind, init_value, boundaries_and_scales):
    """optax's ``piecewise_interpolate_schedule``: from ``init_value`` at step -1 (sic) to each
    boundary's cumulated scale, then constant."""
    boundaries = sorted(boundaries_and_scales)
    bounds, values = [-1, *boundaries], [init_value]
    for boundary in boundaries:
        values.append(values[-1] * boundaries_and_scales[boundary])

    def interpolate(start, end, pct):
        if kind == "linear":
            return (end - start) * pct + start
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def schedule(count):
        for k in range(len(bounds) - 1):
            if bounds[k] <= count < bounds[k + 1]:
                pct = (count - bounds[k]) / (bounds[k + 1] - bounds[k])
                return interpolate(values[k], values[k + 1], pct)
        return values[-1]

    return schedule, bounds, values


def optax_join(schedules, boundaries):
    def schedule(step):
        output = schedules[0](step)
        for boundary, following in zip(boundaries, schedules[1:]):
            output = output if step < boundary else following(step - boundary)
        return output

    return schedule


def optax_warmup_cosine_decay(init_value, peak_value, warmup_steps, decay_steps, end_value=0.0):
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return optax_join(
        [
            optax_linear(init_value, peak_value, warmup_steps),
            optax_cosine_decay(peak_value, decay_steps - warmup_steps, alpha),
        ],
        [warmup_steps],
    )


def optax_warmup_exponential_decay(
    init_value,
    peak_value,
    warmup_steps,
    transition_steps,
    decay_rate,
    staircase=False,
    end_value=None,
):
    return optax_join(
        [
            optax_linear(init_value, peak_value, warmup_steps),
            optax_exponential_decay(
                peak_value, transition_steps, decay_rate, 0, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


def warmup_cosine(init_value, peak_value, warmup_steps, decay_steps, end_value=0.0) -> Schedule:
    """optax's ``warmup_cosine_decay_schedule`` in descend: the cosine takes what is left of
    ``decay_steps`` after the warmup."""
    return Warmup(
        Cosine(peak_value, decay_steps - warmup_steps, end_value), warmup_steps, init_value
    )


def optax_cases() -> list:
    cases = [(Constant(0.3), lambda t: 0.3)]
    for init, end, steps, begin in [(0.0, 0.1, 100, 0), (1.0, 0.01, 37, 20), (0.2, 0.5, 1, 5)]:
        cases.append((Linear(init, end, steps, begin), optax_linear(init, end, steps, begin)))
    for init, end, power, steps, begin in [(0.1, 0.001, 2.0, 200, 0), (1.0, 0.0, 0.5, 64, 30)]:
        cases.append(
            (
                Polynomial(init, end, steps, power, begin),
                optax_polynomial(init, end, power, steps, begin),
            )
        )
    for kwargs in [
        {"init_value": 0.1, "transition_steps": 10, "decay_rate": 0.9},
        {"init_value": 1.0, "transition_steps": 7, "decay_rate": 0.5, "staircase": True},
        {"init_value": 1.0, "transition_steps": 3, "decay_rate": 0.8, "transition_begin": 25},
        {"init_value": 0.5, "transition_steps": 5, "decay_rate": 0.9, "end_value": 0.05},
        {"init_value": 0.01, "transition_steps": 20, "decay_rate": 1.5, "end_value": 0.1},
        {"init_value": 0.2, "transition_steps": 4, "decay_rate": 1.0, "end_value": 0.1},
    ]:
        translation = Exponential(
            kwargs["init_value"],
            kwargs["transition_steps"],
            kwargs["decay_rate"],
            staircase=kwargs.get("staircase", False),
            begin=kwargs.get("transition_begin", 0),
            end=kwargs.get("end_value"),
        )
        cases.append((translation, optax_exponential_decay(**kwargs)))
    for init, decay_steps, alpha in [(0.1, 200, 0.0), (1.0, 64, 0.1)]:
        cases.append(
            (Cosine(init, decay_steps, alpha * init), optax_cosine_decay(init, decay_steps, alpha))
        )
    for init, table in [(0.1, {50: 0.5, 120: 0.1}), (1.0, {0: 2.0, 10: 0.5, 11: 0.5})]:
        boundaries = sorted(table)
        levels = [init]
        for b in boundaries:
            levels.append(levels[-1] * table[b])
        cases.append((PiecewiseConstant(boundaries, levels), optax_piecewise_constant(init, table)))
    for kind in ("linear", "cos"):
        for init, table in [(0.01, {100: 10.0, 250: 0.01}), (1.0, {}), (2.0, {5: 0.5})]:
            reference, bounds, values = optax_piecewise_interpolate(kind, init, table)
            cases.append((PiecewiseInterpolated(bounds, values, kind), reference))
    for init, peak, warmup, decay, end in [(0.0, 0.1, 30, 250, 0.001), (0.01, 1.0, 1, 100, 0.0)]:
        cases.append(
            (
                warmup_cosine(init, peak, warmup, decay, end),
                optax_warmup_cosine_decay(init, peak, warmup, decay, end),
            )
        )
    cases.append(
        (
            Warmup(Exponential(0.1, 20, 0.5, staircase=True, end=0.01), 50, start=0.001),
            optax_warmup_exponential_decay(0.001, 0.1, 50, 20, 0.5, True, 0.01),
        )
    )
    # sgdr_schedule: warmup-cosine cycles one after the other
    cycles = [(0.0, 0.1, 10, 100, 0.0), (0.0, 0.05, 5, 80, 0.001), (0.001, 0.02, 20, 150, 0.0)]
    starts = list(itertools.accumulate(c[3] for c in cycles))[:-1]
    cases.append(
        (
            Join([warmup_cosine(*c) for c in cycles], starts),
            optax_join([optax_warmup_cosine_decay(*c) for c in cycles], starts),
        )
    )
    return cases


# --------------------------------------------------------------------------------------
# MindSpore: dynamic_lr functions (lists, one level per epoch) and LearningRateSchedule
# classes, transcribed from mindspore/nn/dynamic_lr.py and nn/learning_rate_schedule.py
# --------------------------------------------------------------------------------------


def ms_piecewise_constant_lr(milestone, learning_rates):
    lr, last = [], 0
    for item, rate in zip(milestone, learning_rates):
        lr += [rate] * (item - last)
        last = item
    return lr


def ms_exponential_decay_lr(lr, rate, total_step, step_per_epoch, decay_epoch, is_stair=False):
    out = []
    for i in range(total_step):
        epoch = math.floor(i / step_per_epoch)
        p = math.floor(epoch / decay_epoch) if is_stair else epoch / decay_epoch
        out.append(lr * rate**p)
    return out


def ms_natural_exp_decay_lr(lr, rate, total_step, step_per_epoch, decay_epoch, is_stair=False):
    out = []
    for i in range(total_step):
        epoch = math.floor(i / step_per_epoch)
        if is_stair:
            epoch = math.floor(epoch / decay_epoch) * decay_epoch
        out.append(lr * math.e ** (-rate * epoch))
    return out


def ms_inverse_decay_lr(lr, rate, total_step, step_per_epoch, decay_epoch, is_stair=False):
    out = []
    for i in range(total_step):
        epoch = math.floor(i / step_per_epoch)
        if is_stair:
            out.append(lr / (1 + rate * math.floor(epoch / decay_epoch)))
        else:
            out.append(lr / (1 + rate * epoch / decay_epoch))
    return out


def ms_cosine_decay_lr(min_lr, max_lr, total_step, step_per_epoch, decay_epoch):
    delta = 0.5 * (max_lr - min_lr)
    out = []
    for i in range(total_step):
        epoch = min(math.floor(i / step_per_epoch), decay_epoch)
        out.append(min_lr + delta * (1 + math.cos(math.pi * epoch / decay_epoch)))
    return out


def ms_polynomial_decay_lr(
    lr, end_lr, total_step, step_per_epoch, decay_epoch, power, update_decay_epoch=False
):
    out = []
    for i in range(total_step):
        epoch = math.floor(i / step_per_epoch)
        if update_decay_epoch:
            decay, tmp = decay_epoch * max(math.ceil(epoch / decay_epoch), 1), epoch
        else:
            decay, tmp = decay_epoch, min(epoch, decay_epoch)
        out.append((lr - end_lr) * (1 - tmp / decay) ** power + end_lr)
    return out


def ms_warmup_lr(lr, total_step, step_per_epoch, warmup_epoch):
    return [
        lr * min(math.floor(i / step_per_epoch), warmup_epoch) / warmup_epoch
        for i in range(total_step)
    ]


def per_epoch(schedule: Schedule, total_step: int, step_per_epoch: int) -> PiecewiseConstant:
    """A MindSpore dynamic LR list in descend: ``schedule`` of the epoch,
    ``floor(step / step_per_epoch)``, held for each epoch's steps. No combinator rescales
    time, so the epochs' levels are tabulated (as MindSpore's list is)."""
    epochs = math.ceil(total_step / step_per_epoch)
    return PiecewiseConstant(
        [step_per_epoch * e for e in range(1, epochs)], [schedule(e) for e in range(epochs)]
    )


def assert_list(schedule: Schedule, expected: list[float], rel=1e-12) -> None:
    """The schedule's first ``len(expected)`` values are ``expected`` (MindSpore's list)."""
    check(schedule, lambda t: expected[t], range(len(expected)), rel)


def test_mindspore_piecewise_constant_lr_printed_examples():
    # the optimizer tutorial (seeds/001) and the function's docstring
    assert_list(
        PiecewiseConstant([1, 3], [0.1, 0.05, 0.01]),
        [0.1, 0.05, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01],
    )
    assert_list(
        PiecewiseConstant([2, 5], [0.1, 0.05, 0.01]),
        [0.1, 0.1, 0.05, 0.05, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01],
    )


def test_mindspore_dynamic_lr_printed_examples():
    """The lists the dynamic_lr docstrings print, from their translations."""
    assert_list(
        per_epoch(Exponential(0.1, 1, 0.9), total_step=6, step_per_epoch=2),
        [
            0.1,
            0.1,
            0.09000000000000001,
            0.09000000000000001,
            0.08100000000000002,
            0.08100000000000002,
        ],
    )
    # natural_exp_decay_lr(0.1, 0.9, 6, 2, 2, is_stair=True), closed form
    assert_list(
        NaturalExp(0.1, decay_steps=2 * 2, decay_rate=0.9 * 2, staircase=True),
        [0.1, 0.1, 0.1, 0.1, 0.016529888822158657, 0.016529888822158657],
    )
    # inverse_decay_lr(0.1, 0.5, 6, 1, 1, is_stair=True)
    assert_list(
        InverseTime(0.1, 1, 0.5, staircase=True),
        [0.1, 0.06666666666666667, 0.05, 0.04, 0.03333333333333333, 0.028571428571428574],
    )
    assert_list(
        per_epoch(Cosine(0.1, 2, end=0.01), total_step=6, step_per_epoch=2),
        [0.1, 0.1, 0.05500000000000001, 0.05500000000000001, 0.01, 0.01],
    )
    assert_list(
        per_epoch(Polynomial(0.1, 0.01, 2, power=0.5), total_step=6, step_per_epoch=2),
        [0.1, 0.1, 0.07363961030678928, 0.07363961030678928, 0.01, 0.01],
    )
    assert_list(
        per_epoch(Linear(0.0, 0.1, 2), total_step=6, step_per_epoch=2),
        [0.0, 0.0, 0.05, 0.05, 0.1, 0.1],
    )


DYNAMIC_GRID = [(300, 1, 1), (300, 3, 4), (300, 7, 2), (97, 10, 3)]


@pytest.mark.parametrize(("total", "per", "decay"), DYNAMIC_GRID)
@pytest.mark.parametrize("stair", [False, True])
def test_mindspore_dynamic_decays(total, per, decay, stair):
    lr, rate = 0.1, 0.9
    # per epoch: the schedule of the epoch, tabulated
    expected = ms_exponential_decay_lr(lr, rate, total, per, decay, stair)
    assert_list(per_epoch(Exponential(lr, decay, rate, stair), total, per), expected)
    expected = ms_inverse_decay_lr(lr, rate, total, per, decay, stair)
    assert_list(per_epoch(InverseTime(lr, decay, rate, stair), total, per), expected)
    expected = ms_natural_exp_decay_lr(lr, 0.05, total, per, decay, stair)
    natural = NaturalExp(lr, decay, 0.05 * decay, True) if stair else NaturalExp(lr, 1, 0.05)
    assert_list(per_epoch(natural, total, per), expected)
    if stair:
        # whole periods of decay_epoch epochs are whole periods of steps: closed forms
        closed = Exponential(lr, decay * per, rate, staircase=True)
        assert_list(closed, ms_exponential_decay_lr(lr, rate, total, per, decay, True))
        closed = InverseTime(lr, decay * per, rate, staircase=True)
        assert_list(closed, ms_inverse_decay_lr(lr, rate, total, per, decay, True))
        closed = NaturalExp(lr, decay * per, 0.05 * decay, staircase=True)
        assert_list(closed, ms_natural_exp_decay_lr(lr, 0.05, total, per, decay, True))


@pytest.mark.parametrize(("total", "per", "decay"), DYNAMIC_GRID)
def test_mindspore_dynamic_cosine_polynomial_warmup(total, per, decay):
    expected = ms_cosine_decay_lr(0.001, 0.1, total, per, decay)
    assert_list(per_epoch(Cosine(0.1, decay, end=0.001), total, per), expected)
    for power in (0.5, 1.0, 2.0):
        for update in (False, True):
            expected = ms_polynomial_decay_lr(0.1, 0.01, total, per, decay, power, update)
            translation = Polynomial(0.1, 0.01, decay, power, cycle=update)
            assert_list(per_epoch(translation, total, per), expected)
    assert_list(
        per_epoch(Linear(0.0, 0.1, decay), total, per), ms_warmup_lr(0.1, total, per, decay)
    )
    milestone, rates = [per, 5 * per, total], [0.1, 0.05, 0.01]
    assert_list(
        PiecewiseConstant(milestone[:-1], rates), ms_piecewise_constant_lr(milestone, rates)
    )


def test_mindspore_learning_rate_schedule_printed_examples():
    """The float32 values the tutorial (seeds/001) and the classes' docstrings print."""
    float32 = 1e-7
    # ExponentialDecayLR(0.1, 0.9, 4) at global steps 0..3 (the tutorial), then at step 2
    exponential = Exponential(0.1, decay_steps=4, decay_rate=0.9)
    for step, printed in enumerate([0.1, 0.097400375, 0.094868325, 0.09240211]):
        assert math.isclose(exponential(step), printed, rel_tol=float32)
    assert math.isclose(exponential(2), 0.09486833, rel_tol=float32)
    # NaturalExpDecayLR(0.1, 0.9, 4, is_stair=True)(2) and InverseDecayLR(same)(2)
    assert NaturalExp(0.1, 4, 0.9 * 4, staircase=True)(2) == 0.1
    assert InverseTime(0.1, 4, 0.9, staircase=True)(2) == 0.1
    # CosineDecayLR(0.01, 0.1, 4)(2), PolynomialDecayLR(0.1, 0.01, 4, 0.5)(2), WarmUpLR(0.1, 2)(2)
    assert math.isclose(Cosine(0.1, 4, end=0.01)(2), 0.055, rel_tol=float32)
    assert math.isclose(Polynomial(0.1, 0.01, 4, power=0.5)(2), 0.07363961, rel_tol=float32)
    assert Linear(0.0, 0.1, 2)(2) == 0.1


def mindspore_class_cases() -> list:
    """The LearningRateSchedule classes' formulas at ``global_step`` (in float64)."""
    cases = []
    lr, rate, decay = 0.1, 0.9, 7
    for stair in (False, True):

        def exponential_decay_lr(t, stair=stair):
            p = t / decay
            return lr * rate ** (math.floor(p) if stair else p)

        cases.append((Exponential(lr, decay, rate, staircase=stair), exponential_decay_lr))

        def natural_exp_decay_lr(t, stair=stair):
            # the code multiplies by global_step itself, not by global_step / decay_steps
            p = math.floor(t / decay) * decay if stair else t
            return lr * math.e ** (-0.05 * p)

        natural = NaturalExp(lr, decay, 0.05 * decay, True) if stair else NaturalExp(lr, 1, 0.05)
        cases.append((natural, natural_exp_decay_lr))

        def inverse_decay_lr(t, stair=stair):
            p = t / decay
            return lr / (1 + rate * (math.floor(p) if stair else p))

        cases.append((InverseTime(lr, decay, rate, staircase=stair), inverse_decay_lr))

    def cosine_decay_lr(t, min_lr=0.001, max_lr=0.1, decay_steps=50):
        p = min(t, decay_steps)
        return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * p / decay_steps))

    cases.append((Cosine(0.1, 50, end=0.001), cosine_decay_lr))
    for update in (False, True):

        def polynomial_decay_lr(t, update=update, end=0.01, decay_steps=40, power=0.5):
            steps = decay_steps
            if update:
                steps = decay_steps * max(math.ceil(t / decay_steps), 1)
            else:
                t = min(t, decay_steps)
            return (lr - end) * (1.0 - t / steps) ** power + end

        cases.append((Polynomial(lr, 0.01, 40, 0.5, cycle=update), polynomial_decay_lr))

    cases.append((Linear(0.0, lr, 30), lambda t: lr * min(t, 30) / 30))  # WarmUpLR(0.1, 30)
    cases.append((Warmup(Constant(lr), 30), lambda t: lr * min(t, 30) / 30))
    # the tutorial's dynamic weight decay: ExponentialWeightDecay(1e-4, 0.1, 10000)
    cases.append((Exponential(1e-4, 10000, 0.1), lambda t: 1e-4 * 0.1 ** (t / 10000)))
    return cases


# --------------------------------------------------------------------------------------
# SINGA (seeds/000) and MXNet.jl (seeds/003)
# --------------------------------------------------------------------------------------


def singa_exponential_decay(init_value, decay_steps, decay_rate, staircase=False):
    def schedule(step):
        s = step // decay_steps if staircase else step / decay_steps
        return init_value * decay_rate**s

    return schedule


def test_singa_exponential_decay_seed_example():
    """``opt.ExponentialDecay(0.1, 2, 0.5, True)``: ``lr_init * decay_rate ** (step // 2)``."""
    check(Exponential(0.1, 2, 0.5, staircase=True), lambda t: 0.1 * 0.5 ** (t // 2), range(60))


def framework_cases() -> list:
    cases = [(Constant(0.01), lambda t: 0.01)]  # SINGA Constant, MXNet.jl Fixed
    for args in [(0.001, 2, 0.95, True), (0.1, 3, 0.5, False), (1.0, 1, 0.99, False)]:
        cases.append((Exponential(*args), singa_exponential_decay(*args)))
    # MXNet.jl LearningRate.Exp(η₀; γ) = η₀ γ^t and Inv(η₀; γ, p) = η₀ (1 + γ t)^(-p)
    for eta, gamma in [(0.1, 0.9), (0.01, 0.999)]:
        cases.append((Exponential(eta, 1, gamma), lambda t, e=eta, g=gamma: e * g**t))
    for eta, gamma, p in [(0.1, 0.9, 0.5), (0.01, 0.01, 1.0), (1.0, 0.3, 2.0)]:
        cases.append(
            (
                InverseTime(eta, 1, gamma, power=p),
                lambda t, e=eta, g=gamma, p=p: e * (1 + g * t) ** (-p),
            )
        )
    # MXNet.jl Momentum.Null, Momentum.Fixed(μ), and NadamScheduler(μ, δ, γ, α), whose
    # μ_t = μ (1 - γ α^(t δ)) is returned with μ_{t+1}: the same schedule a step ahead
    cases.append((Constant(0.0), lambda t: 0.0))
    cases.append((Constant(0.9), lambda t: 0.9))
    mu, delta, gamma, alpha = 0.99, 0.004, 0.5, 0.96
    nadam = mu * (1 - Exponential(gamma, 1 / delta, alpha))
    cases.append((nadam, lambda t: mu * (1 - gamma * alpha ** (t * delta))))
    cases.append((Shift(nadam, -1), lambda t: mu * (1 - gamma * alpha ** ((t + 1) * delta))))
    return cases


# --------------------------------------------------------------------------------------
# Combinators and arithmetic: composed from the references above
# --------------------------------------------------------------------------------------

COSINE, COSINE_REF = Cosine(0.1, 200, end=0.01), optax_cosine_decay(0.1, 200, 0.1)
EXP, EXP_REF = Exponential(1.0, 10, 0.9), lambda t: 0.9 ** (t / 10)


def combinator_cases() -> list:
    cases = [
        (Sum((COSINE, EXP, 0.5)), lambda t: COSINE_REF(t) + EXP_REF(t) + 0.5),
        (Product((COSINE, EXP, 2.0)), lambda t: COSINE_REF(t) * EXP_REF(t) * 2.0),
        (Quotient(COSINE, EXP), lambda t: COSINE_REF(t) / EXP_REF(t)),
        (Quotient(1.0, EXP), lambda t: 1.0 / EXP_REF(t)),
        (Scale(COSINE, 3.0), lambda t: 3.0 * COSINE_REF(t)),
        (Shift(COSINE, 50), lambda t: COSINE_REF(max(t - 50, 0))),
        (Shift(COSINE, -50), lambda t: COSINE_REF(t + 50)),
        (Clamp(EXP, min=0.1), lambda t: max(EXP_REF(t), 0.1)),
        (Clamp(COSINE, max=0.05), lambda t: min(COSINE_REF(t), 0.05)),
        (Clamp(COSINE, 0.02, 0.08), lambda t: min(max(COSINE_REF(t), 0.02), 0.08)),
        (Repeat(COSINE, 70), lambda t: COSINE_REF(t % 70)),
        (Repeat(Linear(0.0, 1.0, 10), 12.5), lambda t: min(t % 12.5, 10) / 10),
        (
            Join([Linear(0.0, 0.1, 20), COSINE, EXP], [20, 150]),
            optax_join([optax_linear(0.0, 0.1, 20), COSINE_REF, EXP_REF], [20, 150]),
        ),
        # operators, numbers on either side
        (COSINE + 1, lambda t: COSINE_REF(t) + 1),
        (1 + COSINE, lambda t: 1 + COSINE_REF(t)),
        (COSINE + EXP, lambda t: COSINE_REF(t) + EXP_REF(t)),
        (COSINE - 1, lambda t: COSINE_REF(t) - 1),
        (1 - COSINE, lambda t: 1 - COSINE_REF(t)),
        (COSINE - EXP, lambda t: COSINE_REF(t) - EXP_REF(t)),
        (COSINE * 2, lambda t: COSINE_REF(t) * 2),
        (2 * COSINE, lambda t: 2 * COSINE_REF(t)),
        (COSINE * EXP, lambda t: COSINE_REF(t) * EXP_REF(t)),
        (COSINE / 4, lambda t: COSINE_REF(t) / 4),
        (4 / EXP, lambda t: 4 / EXP_REF(t)),
        (COSINE / EXP, lambda t: COSINE_REF(t) / EXP_REF(t)),
        (-COSINE, lambda t: -COSINE_REF(t)),
        (0.5 * COSINE + 0.01, lambda t: 0.5 * COSINE_REF(t) + 0.01),
    ]
    return cases


def test_operators_build_the_combinators():
    built = [COSINE + 1, 1 + COSINE, COSINE - EXP, 2 * COSINE, COSINE * 2, COSINE * EXP]
    built += [COSINE / 4, 4 / EXP, -COSINE]
    assert built == [
        Sum((COSINE, Constant(1.0))),
        Sum((Constant(1.0), COSINE)),
        Sum((COSINE, Scale(EXP, -1.0))),
        Scale(COSINE, 2.0),
        Scale(COSINE, 2.0),
        Product((COSINE, EXP)),
        Quotient(COSINE, Constant(4.0)),
        Quotient(Constant(4.0), EXP),
        Scale(COSINE, -1.0),
    ]


# --------------------------------------------------------------------------------------
# Warmup
# --------------------------------------------------------------------------------------


def warmup_cases() -> list:
    def exponential_ramp(start, target, steps, after):
        return lambda t: start * (target / start) ** (t / steps) if t < steps else after(t - steps)

    return [
        (
            Warmup(COSINE, 25),
            optax_join([optax_linear(0.0, 0.1, 25), COSINE_REF], [25]),
        ),
        (
            Warmup(COSINE, 10, start=0.05),
            optax_join([optax_linear(0.05, 0.1, 10), COSINE_REF], [10]),
        ),
        (Warmup(0.3, 40), lambda t: 0.3 * min(t, 40) / 40),
        (
            Warmup(COSINE, 30, start=1e-4, kind="exponential"),
            exponential_ramp(1e-4, 0.1, 30, COSINE_REF),
        ),
    ]


# --------------------------------------------------------------------------------------
# All closed-form cases at once; every shape and combinator of descend.schedules is in one
# --------------------------------------------------------------------------------------

CASES = {
    "torch": torch_cases(),
    "optax": optax_cases(),
    "mindspore": mindspore_class_cases(),
    "frameworks": framework_cases(),
    "combinators": combinator_cases(),
    "warmup": warmup_cases(),
}
PARAMS = [
    pytest.param(schedule, reference, id=f"{source}-{i}-{type(schedule).__name__}")
    for source, cases in CASES.items()
    for i, (schedule, reference) in enumerate(cases)
]


@pytest.mark.parametrize(("schedule", "reference"), PARAMS)
def test_matches_reference(schedule, reference):
    check(schedule, reference)
    check(schedule, reference, [t / 4 for t in range(0, 1200, 7)])  # fractional steps (epochs)


def _kinds(schedule) -> set[type]:
    """The schedule types a schedule is built from, itself included."""
    kinds = {type(schedule)}
    for field in dataclasses.fields(schedule):
        value = getattr(schedule, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, Schedule):
                kinds |= _kinds(item)
    return kinds


def test_every_schedule_is_checked_against_a_reference():
    exported = {
        getattr(descend.schedules, name)
        for name in descend.schedules.__all__
        if isinstance(getattr(descend.schedules, name), type)
    } - {Schedule}
    checked = set().union(*(_kinds(s) for cases in CASES.values() for s, _ in cases))
    checked |= {CosineRestarts, Cyclic, OneCycle}  # their own tests below
    assert exported - checked == set()


# --------------------------------------------------------------------------------------
# CosineRestarts against torch's CosineAnnealingWarmRestarts.step recursion
# --------------------------------------------------------------------------------------


def torch_warm_restarts(base_lr, t_0, t_mult, eta_min, steps):
    """(lr, T_cur, T_i) at each step, stepping as CosineAnnealingWarmRestarts.step() does."""
    t_cur, t_i, out = 0, t_0, []
    for _ in range(steps):
        lr = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
        out.append((lr, t_cur, t_i))
        t_cur += 1
        if t_cur >= t_i:
            t_cur = t_cur % t_i
            t_i = t_i * t_mult
    return out


@pytest.mark.parametrize("t_mult", [1, 2, 3])
@pytest.mark.parametrize(("t_0", "eta_min"), [(1, 0.0), (7, 0.001), (10, 0.0)])
def test_cosine_restarts_match_torch_recursion(t_0, t_mult, eta_min):
    schedule = CosineRestarts(0.1, t_0, t_mult, eta_min)
    expected = torch_warm_restarts(0.1, t_0, t_mult, eta_min, 1000)
    check(schedule, lambda t: expected[t][0], range(1000))
    restarts = [t for t, (_, t_cur, _) in enumerate(expected) if t_cur == 0]
    assert len(restarts) >= 5
    for t in restarts:  # exactly, at every restart
        assert schedule(t) == expected[t][0]
    for t in range(1000):
        period, elapsed, length = schedule.cycle(np.float64(t))
        assert (float(elapsed), float(length)) == expected[t][1:]
        assert int(period) == sum(r <= t for r in restarts) - 1


# --------------------------------------------------------------------------------------
# Cyclic against a transcription of torch's CyclicLR.get_lr
# --------------------------------------------------------------------------------------


def torch_cyclic(
    base_lr, max_lr, up, down=None, mode="triangular", gamma=1.0, scale_fn=None, scale_mode="cycle"
):
    up = float(up)
    down = float(down) if down is not None else up
    total_size = up + down
    step_ratio = up / total_size
    if scale_fn is None:
        if mode == "triangular":
            scale_fn, scale_mode = (lambda x: 1.0), "cycle"
        elif mode == "triangular2":
            scale_fn, scale_mode = (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
        else:
            scale_fn, scale_mode = (lambda x: gamma**x), "iterations"

    def lr(last_epoch):
        cycle = math.floor(1 + last_epoch / total_size)
        x = 1.0 + last_epoch / total_size - cycle
        scale_factor = x / step_ratio if x <= step_ratio else (x - 1) / (step_ratio - 1)
        base_height = (max_lr - base_lr) * scale_factor
        return base_lr + base_height * scale_fn(cycle if scale_mode == "cycle" else last_epoch)

    return lr


def halving(cycle: float) -> float:
    """A custom scale_fn (module level, so it pickles): each cycle half the one before."""
    return 0.5 ** (cycle - 1)


CYCLIC = [
    {"base": 0.001, "peak": 0.1, "up": 20},
    {"base": 0.001, "peak": 0.1, "up": 20, "down": 7},
    {"base": 0.01, "peak": 1.0, "up": 13, "down": 31, "mode": "triangular2"},
    {"base": 0.01, "peak": 1.0, "up": 10, "mode": "exp_range", "gamma": 0.99},
    {"base": 0.9, "peak": 0.8, "up": 15, "down": 5},  # momentum: dips from base
    {"base": 0.001, "peak": 0.1, "up": 9, "scale_fn": halving},
    {"base": 0.001, "peak": 0.1, "up": 9, "scale_fn": halving, "scale_mode": "iterations"},
    {
        "base": 0.0,
        "peak": 1.0,
        "up": 8,
        "scale_fn": functools.partial(pow, 0.999),
        "scale_mode": "iterations",
    },
    # a schedule as scale_fn; torch's is the same function in plain math
    {
        "base": 0.0,
        "peak": 1.0,
        "up": 8,
        "down": 3,
        "scale_fn": Exponential(1.0, 1, 0.5),
        "oracle_scale_fn": lambda cycle: 0.5**cycle,
    },
]


@pytest.mark.parametrize("kwargs", CYCLIC)
def test_cyclic_matches_torch(kwargs):
    kwargs = dict(kwargs)
    oracle = {"base_lr": kwargs["base"], "max_lr": kwargs["peak"]}
    oracle.update({k: v for k, v in kwargs.items() if k not in ("base", "peak")})
    if "oracle_scale_fn" in kwargs:
        oracle["scale_fn"] = oracle.pop("oracle_scale_fn")
        del kwargs["oracle_scale_fn"]
    schedule = Cyclic(**kwargs)
    check(schedule, torch_cyclic(**oracle), range(400))
    restored = pickle.loads(pickle.dumps(schedule))
    if not isinstance(schedule.scale_fn, functools.partial):  # partials compare by identity
        assert restored == schedule
    assert restored.values(range(400)).tolist() == schedule.values(range(400)).tolist()


# --------------------------------------------------------------------------------------
# OneCycle against a transcription of torch's OneCycleLR.get_lr
# --------------------------------------------------------------------------------------


def torch_one_cycle(start, peak, end, total_steps, pct_start=0.3, anneal="cos", three_phase=False):
    """The lr (or momentum) torch's OneCycleLR gives at step ``step_num``; ``start``, ``peak``
    and ``end`` are its initial_lr, max_lr and min_lr (or max, base and max momentum)."""
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, start, peak),
            (float(2 * pct_start * total_steps) - 2, peak, start),
            (total_steps - 1, start, end),
        ]
    else:
        phases = [(float(pct_start * total_steps) - 1, start, peak), (total_steps - 1, peak, end)]

    def annealing_cos(start, end, pct):
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out

    def annealing_linear(start, end, pct):
        return (end - start) * pct + start

    anneal_func = annealing_cos if anneal == "cos" else annealing_linear

    def lr(step_num):
        assert step_num <= total_steps  # torch raises past it
        start_step = 0.0
        for i, (end_step, a, b) in enumerate(phases):
            if step_num <= end_step or i == len(phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                return anneal_func(a, b, pct)
            start_step = end_step

    return lr


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize(("total", "pct"), [(100, 0.3), (1000, 0.25), (37, 0.4)])
def test_one_cycle_matches_torch(anneal, three_phase, total, pct):
    max_lr = 0.1
    initial = max_lr / 25.0  # div_factor
    lrs = (initial, max_lr, initial / 1e4)  # final_div_factor
    momenta = (0.95, 0.85, 0.95)  # max_momentum, base_momentum, max_momentum
    for start, peak, end in (lrs, momenta):
        schedule = OneCycle(start, peak, end, total, pct, anneal, three_phase)
        reference = torch_one_cycle(start, peak, end, total, pct, anneal, three_phase)
        check(schedule, reference, range(total + 1))  # step == total_steps included


# --------------------------------------------------------------------------------------
# Bad arguments: ValueError/TypeError naming the argument and its value
# --------------------------------------------------------------------------------------

ONE = Constant(1.0)
BAD = [
    (lambda: Constant(True), TypeError, "Constant: value must be a number, got bool True"),
    (lambda: Linear(0.0, 1.0, 0), ValueError, "Linear: steps must be > 0, got 0"),
    (lambda: Linear(0.0, 1.0, True), TypeError, "Linear: steps must be a number, got bool True"),
    (lambda: Linear("a", 1.0, 10), TypeError, "Linear: start must be a number, got str 'a'"),
    (lambda: Cosine(math.nan, 10), ValueError, "Cosine: init must be finite, got nan"),
    (lambda: Cosine(0.1, math.nan), ValueError, "Cosine: steps must be > 0, got nan"),
    (lambda: Cosine(0.1, math.inf), ValueError, "Cosine: steps must be finite, got inf"),
    (
        lambda: Cosine(0.1, 10, periodic="yes"),
        TypeError,
        "Cosine: periodic must be True or False, got str 'yes'",
    ),
    (lambda: Step(0.1, -3), ValueError, "Step: step_size must be > 0, got -3"),
    (
        lambda: MultiStep(0.1, 30),
        TypeError,
        "MultiStep: milestones must be a sequence of steps, got 30",
    ),
    (
        lambda: MultiStep(0.1, [10, "20"]),
        TypeError,
        "MultiStep: milestones must hold numbers, got '20' in [10, '20']",
    ),
    (
        lambda: MultiStep(0.1, [10, math.nan]),
        ValueError,
        "MultiStep: milestones must hold finite steps, got nan in [10, nan]",
    ),
    (lambda: Exponential(0.1, 10, 0.0), ValueError, "Exponential: decay_rate must be > 0, got 0.0"),
    (
        lambda: Exponential(0.1, 10, 0.5, end=math.inf),
        ValueError,
        "Exponential: end must be finite, got inf",
    ),
    (
        lambda: Exponential(0.1, 10, 0.5, staircase=1),
        TypeError,
        "Exponential: staircase must be True or False, got int 1",
    ),
    (
        lambda: Polynomial(0.1, 0.0, 10, power=-1),
        ValueError,
        "Polynomial: power must be >= 0, got -1.0",
    ),
    (
        lambda: Polynomial(0.1, 0.0, 10, cycle=None),
        TypeError,
        "Polynomial: cycle must be True or False, got NoneType None",
    ),
    (
        lambda: CosineRestarts(0.1, 10, period_mult=0.5),
        ValueError,
        "CosineRestarts: period_mult must be >= 1, got 0.5",
    ),
    (lambda: CosineRestarts(0.1, 0), ValueError, "CosineRestarts: period must be > 0, got 0"),
    (
        lambda: Cyclic(0.1, 1.0, mode="triangle"),
        ValueError,
        "Cyclic: mode must be one of 'triangular', 'triangular2', 'exp_range', got 'triangle'",
    ),
    (
        lambda: Cyclic(0.1, 1.0, scale_fn=2.0),
        TypeError,
        "Cyclic: scale_fn must be callable, got 2.0",
    ),
    (
        lambda: Cyclic(0.1, 1.0, scale_fn=halving, scale_mode="step"),
        ValueError,
        "Cyclic: scale_mode must be one of 'cycle', 'iterations', got 'step'",
    ),
    (lambda: Cyclic(0.1, 1.0, up=0), ValueError, "Cyclic: up must be > 0, got 0"),
    (lambda: Cyclic(0.1, 1.0, down=-5), ValueError, "Cyclic: down must be > 0, got -5"),
    (
        lambda: OneCycle(0.004, 0.1, 0.0, 100, pct_start=1.5),
        ValueError,
        "OneCycle: pct_start must be in [0, 1], got 1.5",
    ),
    (
        lambda: OneCycle(0.004, 0.1, 0.0, 100, anneal="cosine"),
        ValueError,
        "OneCycle: anneal must be one of 'cos', 'linear', got 'cosine'",
    ),
    (lambda: OneCycle(0.004, 0.1, 0.0, 0), ValueError, "OneCycle: total_steps must be > 0, got 0"),
    (
        lambda: OneCycle(0.004, 0.1, 0.0, 100, three_phase="no"),
        TypeError,
        "OneCycle: three_phase must be True or False, got str 'no'",
    ),
    (lambda: InverseTime(0.1, 0, 0.5), ValueError, "InverseTime: decay_steps must be > 0, got 0"),
    (
        lambda: NaturalExp(0.1, 10, "fast"),
        TypeError,
        "NaturalExp: decay_rate must be a number, got str 'fast'",
    ),
    (
        lambda: PiecewiseConstant([10, 20], [0.1, 0.01]),
        ValueError,
        "PiecewiseConstant: 2 boundaries need 3 levels, got 2: (0.1, 0.01)",
    ),
    (
        lambda: PiecewiseConstant([20, 10], [1, 2, 3]),
        ValueError,
        "PiecewiseConstant: boundaries must be strictly increasing, got [20, 10]",
    ),
    (
        lambda: PiecewiseConstant([10], [0.1, math.inf]),
        ValueError,
        "PiecewiseConstant: levels must hold finite numbers, got [0.1, inf]",
    ),
    (
        lambda: PiecewiseConstant([10], "ab"),
        TypeError,
        "PiecewiseConstant: levels must be a sequence of numbers, got 'ab'",
    ),
    (
        lambda: PiecewiseInterpolated([0, 10], [1.0]),
        ValueError,
        "PiecewiseInterpolated: needs one value per boundary, got 2 boundaries and 1 levels",
    ),
    (
        lambda: PiecewiseInterpolated([0, 10], [1.0, 2.0], kind="cubic"),
        ValueError,
        "PiecewiseInterpolated: kind must be one of 'linear', 'cos', got 'cubic'",
    ),
    (lambda: Warmup(ONE, 0), ValueError, "Warmup: steps must be > 0, got 0"),
    (
        lambda: Warmup(ONE, 5, kind="exponential"),
        ValueError,
        "Warmup: exponential warmup needs start > 0, got 0.0",
    ),
    (
        lambda: Warmup(Constant(0.0), 5, start=0.01, kind="exponential"),
        ValueError,
        "Warmup: exponential warmup needs a schedule that starts above 0, got "
        "Constant(value=0.0), which starts at 0.0",
    ),
    (
        lambda: Warmup("cosine", 5),
        TypeError,
        "Warmup: schedule must be a Schedule or a number, got str 'cosine'",
    ),
    (
        lambda: Warmup(ONE, 5, kind="cos"),
        ValueError,
        "Warmup: kind must be one of 'linear', 'exponential', got 'cos'",
    ),
    (
        lambda: Join([ONE, ONE], []),
        ValueError,
        "Join: 2 schedules need 1 boundaries, got 0: ()",
    ),
    (
        lambda: Join(ONE, [10]),
        TypeError,
        "Join: schedules must be a sequence of schedules, got Constant(value=1.0)",
    ),
    (
        lambda: Join([ONE, ONE, ONE], [10, 10]),
        ValueError,
        "Join: boundaries must be strictly increasing, got [10, 10]",
    ),
    (lambda: Sum([]), ValueError, "Sum: terms must not be empty"),
    (lambda: Sum("ab"), TypeError, "Sum: terms must be a sequence of schedules, got 'ab'"),
    (
        lambda: Product([ONE, "x"]),
        TypeError,
        "Product: factors[1] must be a Schedule or a number, got str 'x'",
    ),
    (lambda: Scale(ONE, "2"), TypeError, "Scale: factor must be a number, got str '2'"),
    (lambda: Shift(ONE, math.inf), ValueError, "Shift: steps must be finite, got inf"),
    (
        lambda: Clamp(ONE, min=1.0, max=0.5),
        ValueError,
        "Clamp: min (1.0) must not exceed max (0.5)",
    ),
    (lambda: Repeat(ONE, 0), ValueError, "Repeat: period must be > 0, got 0"),
    (
        lambda: Quotient("a", 1.0),
        TypeError,
        "Quotient: numerator must be a Schedule or a number, got str 'a'",
    ),
    (lambda: ONE + "x", TypeError, "Sum: terms[1] must be a Schedule or a number, got str 'x'"),
    (lambda: "x" + ONE, TypeError, "Sum: terms[0] must be a Schedule or a number, got str 'x'"),
    (lambda: ONE - None, TypeError, "other must be a Schedule or a number, got NoneType None"),
    (
        lambda: ONE * [2],
        TypeError,
        "Product: factors[1] must be a Schedule or a number, got list [2]",
    ),
    (
        lambda: ONE / "2",
        TypeError,
        "Quotient: denominator must be a Schedule or a number, got str '2'",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "message"), [pytest.param(*b, id=b[2][:60]) for b in BAD]
)
def test_bad_arguments_name_the_argument_and_value(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()


# --------------------------------------------------------------------------------------
# Properties, for any valid arguments
# --------------------------------------------------------------------------------------

values = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)
lengths = st.integers(1, 200) | st.floats(0.5, 200)
begins = st.integers(0, 60)


@st.composite
def boundaries(draw, count: int) -> list[int]:
    return sorted(draw(st.sets(st.integers(-5, 350), min_size=count, max_size=count)))


@st.composite
def piecewise(draw, cls):
    n = draw(st.integers(0 if cls is PiecewiseConstant else 1, 4))
    bounds = draw(boundaries(n))
    levels = draw(
        st.lists(
            values,
            min_size=len(bounds) + (cls is PiecewiseConstant),
            max_size=len(bounds) + (cls is PiecewiseConstant),
        )
    )
    if cls is PiecewiseConstant:
        return PiecewiseConstant(bounds, levels)
    return PiecewiseInterpolated(bounds, levels, draw(st.sampled_from(["linear", "cos"])))


SHAPES = st.one_of(
    st.builds(Constant, values | st.integers(-5, 5) | st.just(np.float64(0.25))),
    st.builds(Linear, values, values, lengths, begins),
    st.builds(Step, values, lengths, st.floats(0.1, 1.5)),
    st.builds(MultiStep, values, st.lists(st.integers(0, 300), max_size=4), st.floats(0.1, 1.5)),
    st.builds(
        Exponential,
        values,
        lengths,
        st.floats(0.05, 2.0),
        st.booleans(),
        begins,
        st.none() | values,
    ),
    st.builds(
        Polynomial,
        values,
        values,
        lengths,
        st.floats(0.0, 4.0),
        begins,
        st.booleans() | st.just(np.True_),
    ),
    st.builds(Cosine, values, lengths, values, st.booleans()),
    st.builds(CosineRestarts, values, lengths, st.sampled_from([1, 2, 3, 1.5, 2.0]), values),
    st.builds(
        Cyclic,
        values,
        values,
        lengths,
        st.none() | lengths,
        st.sampled_from(["triangular", "triangular2", "exp_range"]),
        st.floats(0.9, 1.0),
    ),
    st.builds(
        OneCycle,
        values,
        values,
        values,
        st.integers(1, 400),
        st.floats(0.0, 1.0),
        st.sampled_from(["cos", "linear"]),
        st.booleans(),
    ),
    st.builds(InverseTime, values, lengths, st.floats(0, 2), st.booleans(), st.floats(0, 2)),
    st.builds(NaturalExp, values, lengths, st.floats(-0.1, 2), st.booleans()),
    piecewise(PiecewiseConstant),
    piecewise(PiecewiseInterpolated),
)


@st.composite
def joins(draw, children):
    parts = draw(st.lists(children, min_size=1, max_size=3))
    return Join(parts, draw(boundaries(len(parts) - 1)))


def _combine(children):
    numbers = st.floats(-3, 3, allow_nan=False)
    return st.one_of(
        st.builds(lambda a, b: a + b, children, children | numbers),
        st.builds(lambda a, b: a - b, numbers | children, children),
        st.builds(lambda a, b: a * b, children, children | numbers),
        st.builds(lambda a, b: a / b, children, st.floats(0.5, 4)),
        st.builds(lambda a, b: a / Clamp(b, min=0.5), numbers | children, children),
        st.builds(lambda a: -a, children),
        st.builds(Shift, children, st.integers(-50, 50)),
        st.builds(Clamp, children, st.none() | st.floats(-5, 0), st.none() | st.floats(0, 5)),
        st.builds(Repeat, children, lengths),
        st.builds(Warmup, children, lengths, values),
        joins(children),
    )


SCHEDULES = st.recursive(SHAPES, _combine, max_leaves=5)
STEP_GRID = np.concatenate([np.arange(0.0, 300.0), np.linspace(0.0, 400.0, 60)])
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(SCHEDULES)
def test_values_equal_calls_exactly(schedule):
    with np.errstate(all="ignore"):
        many = schedule.values(STEP_GRID)
        one_by_one = np.array([schedule(t) for t in STEP_GRID])
        assert many.shape == STEP_GRID.shape and many.dtype == np.float64
        np.testing.assert_array_equal(many, one_by_one)
        grid = STEP_GRID.reshape(2, -1)  # any shape
        np.testing.assert_array_equal(schedule.values(grid), one_by_one.reshape(2, -1))
        assert isinstance(schedule(3), float)


@PROPERTY
@given(SCHEDULES)
def test_repr_rebuilds_and_pickle_round_trips(schedule):
    rebuilt = eval(repr(schedule), vars(descend.schedules))
    assert rebuilt == schedule and hash(rebuilt) == hash(schedule)
    assert repr(rebuilt) == repr(schedule)
    restored = pickle.loads(pickle.dumps(schedule))
    assert restored == schedule
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(restored.values(STEP_GRID), schedule.values(STEP_GRID))
        np.testing.assert_array_equal(rebuilt.values(STEP_GRID), schedule.values(STEP_GRID))


nonnegative = st.floats(0, 10, allow_subnormal=False)
unit_rates = st.floats(0.05, 0.999)


@st.composite
def decays(draw):
    """A decaying shape, with arguments drawn so that it never rises."""
    high = draw(nonnegative)
    low = draw(st.floats(0, high)) if high > 0 else 0.0
    return draw(
        st.one_of(
            st.builds(Linear, st.just(high), st.just(low), lengths, begins),
            st.builds(Step, st.just(high), lengths, st.floats(0, 1)),
            st.builds(MultiStep, st.just(high), st.lists(st.integers(0, 300)), st.floats(0, 1)),
            st.builds(
                Exponential,
                st.just(high),
                lengths,
                unit_rates,
                st.booleans(),
                begins,
                st.none() | st.just(low),
            ),
            st.builds(Polynomial, st.just(high), st.just(low), lengths, st.floats(0, 4), begins),
            st.builds(Cosine, st.just(high), lengths, st.just(low)),
            st.builds(
                InverseTime, st.just(high), lengths, st.floats(0, 2), st.booleans(), st.floats(0, 2)
            ),
            st.builds(NaturalExp, st.just(high), lengths, st.floats(0, 2), st.booleans()),
        )
    )


@PROPERTY
@given(decays())
def test_decays_never_rise(schedule):
    v = schedule.values(np.arange(1000))
    assert np.all(np.diff(v) <= 0), np.nonzero(np.diff(v) > 0)


SIMPLE = st.one_of(
    st.builds(lambda a, b, n: (Linear(a, b, n), optax_linear(a, b, n)), values, values, lengths),
    st.builds(
        lambda a, n, e: (Cosine(a, n, e), lambda t: torch_cosine_annealing_lr(a, n, e)(min(t, n))),
        values,
        lengths,
        values,
    ),
    st.builds(
        lambda a, n, r: (Exponential(a, n, r), lambda t: a * r ** (t / n)),
        values,
        lengths,
        st.floats(0.1, 1.5),
    ),
    st.builds(lambda a: (Constant(a), lambda t: a), values),
)


@PROPERTY
@given(st.lists(SIMPLE, min_size=1, max_size=4), st.data())
def test_join_restarts_each_schedule_at_its_boundary(parts, data):
    """optax's join_schedules: ``schedules[i]`` from ``boundaries[i - 1]`` on, at its own
    step ``t - boundaries[i - 1]``; at a boundary the next schedule is in force (at its 0)."""
    bounds = data.draw(boundaries(len(parts) - 1).filter(lambda b: all(x >= 0 for x in b)))
    joined = Join([s for s, _ in parts], bounds)
    check(joined, optax_join([r for _, r in parts], bounds), range(400), rel=1e-11)
    for i, boundary in enumerate(bounds):
        schedule, previous = parts[i + 1][0], parts[i][0]
        assert joined(boundary) == schedule(0)
        start = 0 if i == 0 else bounds[i - 1]
        if boundary - 1 >= start:
            assert joined(boundary - 1) == previous(boundary - 1 - start)


def test_warmup_join_is_continuous_at_the_boundary():
    """A linear warmup into a cosine that starts at the warmup's peak has no jump."""
    schedule = Join([Linear(0.0, 0.1, 100), Cosine(0.1, 900)], [100])
    v = schedule.values(range(1000))
    assert v[100] == 0.1 and np.max(np.abs(np.diff(v))) <= 0.1 / 100 + 1e-15


# --------------------------------------------------------------------------------------
# plot and plot_data
# --------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _group_values(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def _same(a, b) -> bool:
    """Equal, tensors included (by value), inside dicts, lists and tuples."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _sgd(lr=0.1, **kwargs) -> torch.optim.Optimizer:
    w, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.5 * lr}], lr=lr, **kwargs)


def _stepped(scheduler, steps: int, key: str | None = None) -> np.ndarray:
    """What a scheduler gives at each of ``steps`` steps, stepping it as training does: the
    lrs of every group (or ``group[key]``, ``betas[0]`` for "betas")."""
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(steps):
            if step:
                scheduler.step()
            if key is None:
                rows.append([float(lr) for lr in scheduler.get_last_lr()])
            else:
                groups = scheduler.optimizer.param_groups
                rows.append([g[key][0] if key == "betas" else g[key] for g in groups])
    return np.array(rows)


def test_plot_writes_a_png_of_the_schedule(tmp_path):
    schedule = Warmup(Cosine(0.1, 900), steps=100)
    path = descend.schedules.plot(schedule, 1000, tmp_path / "lr.png", title="warmup")
    assert path == tmp_path / "lr.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(path).shape == (300, 600, 4)  # 6 x 3 inches at 100 dpi
    ((label, values),) = descend.schedules.plot_data(schedule, 1000)["value"]
    reference = optax_warmup_cosine_decay(0.0, 0.1, 100, 1000)
    np.testing.assert_allclose(values, [reference(t) for t in range(1000)], rtol=1e-12, atol=1e-15)
    assert label.startswith("Warmup(schedule=Cosine(init=0.1, steps=900") and len(label) <= 60


def test_plot_draws_several_schedules_and_plain_callables(tmp_path):
    def halved(step):
        return 0.05 * 0.5 ** (step // 10)

    data = descend.schedules.plot_data([COSINE, EXP, halved], 50)
    assert list(data) == ["value"]
    assert [label for label, _ in data["value"]] == [
        "Cosine(init=0.1, steps=200, end=0.01, periodic=False)",
        "Exponential(init=1.0, decay_steps=10, decay_rate=0.9, stair…",  # 60 characters
        "halved",
    ]
    for (_, values), reference in zip(data["value"], [COSINE_REF, EXP_REF, halved]):
        np.testing.assert_allclose(values, [reference(t) for t in range(50)], rtol=1e-12)
    path = descend.schedules.plot([COSINE, EXP, halved], 50, tmp_path / "three.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_steps_a_scheduler_ahead_and_puts_everything_back(tmp_path):
    optimizer = _sgd(momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[1.0, 0.5], total_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(7):  # mid-run
            optimizer.step()
            scheduler.step()
    state, groups = copy.deepcopy(scheduler.state_dict()), copy.deepcopy(_group_values(optimizer))

    data = descend.schedules.plot_data(scheduler, 90)
    assert _same(scheduler.state_dict(), state) and _same(_group_values(optimizer), groups)
    path = descend.schedules.plot(scheduler, 90, tmp_path / "one_cycle.png")
    assert _same(scheduler.state_dict(), state) and _same(_group_values(optimizer), groups)
    assert matplotlib.image.imread(path).shape == (600, 600, 4)  # lr and momentum panels

    # the data: what the same scheduler gives when stepped for real, from the same point
    twin = copy.deepcopy(scheduler)
    lrs = _stepped(twin, 90)
    assert list(data) == ["lr", "momentum"]
    assert [label for label, _ in data["lr"]] == ["group 0", "group 1"]
    np.testing.assert_array_equal(np.column_stack([v for _, v in data["lr"]]), lrs)
    momenta = _stepped(copy.deepcopy(scheduler), 90, "momentum")
    np.testing.assert_array_equal(np.column_stack([v for _, v in data["momentum"]]), momenta)
    # and it continues as if nothing happened
    np.testing.assert_array_equal(_stepped(scheduler, 90), lrs)


def test_plot_of_a_scheduler_cycling_betas():
    w = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([w], lr=0.01)
    scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, 0.001, 0.01, step_size_up=5)
    data = descend.schedules.plot_data(scheduler, 30)
    assert list(data) == ["lr", "betas[0]"]
    expected = torch_cyclic(0.8, 0.9, 5)  # betas[0] dips from max_momentum to base_momentum
    np.testing.assert_allclose(data["betas[0]"][0][1], [0.9 - expected(t) + 0.8 for t in range(30)])
    np.testing.assert_allclose(
        data["lr"][0][1], [torch_cyclic(0.001, 0.01, 5)(t) for t in range(30)]
    )
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # CyclicLR's start, put back


def test_plot_puts_back_tensor_learning_rates_in_place():
    w = torch.nn.Parameter(torch.zeros(3))
    lr = torch.tensor(0.1)
    optimizer = torch.optim.SGD([w], lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    ((_, values),) = descend.schedules.plot_data(scheduler, 10)["lr"]
    np.testing.assert_allclose(values, [0.1 * 0.5 ** (t // 3) for t in range(10)], rtol=1e-6)
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.1)
    assert "momentum" not in descend.schedules.plot_data(scheduler, 10)  # SGD's stays 0


def test_plot_of_descend_schedulers_leaves_no_trace():
    import descend
    import descend.lr_scheduler

    w = torch.nn.Parameter(torch.zeros(3))
    optimizer = descend.SGD([w], lr=0.1, momentum=0.9)
    scheduler = descend.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20, eta_min=0.01)
    state, groups = copy.deepcopy(scheduler.state_dict()), copy.deepcopy(_group_values(optimizer))
    ((_, values),) = descend.schedules.plot_data(scheduler, 30)["lr"]
    assert _same(scheduler.state_dict(), state) and _same(_group_values(optimizer), groups)
    np.testing.assert_allclose(
        values, [torch_cosine_annealing_lr(0.1, 20, 0.01)(t) for t in range(30)]
    )
    np.testing.assert_array_equal(_stepped(scheduler, 30)[:, 0], values)


@pytest.mark.parametrize(
    ("target", "steps", "error", "message"),
    [
        (
            "plateau",
            10,
            TypeError,
            "plot: ReduceLROnPlateau steps on a metric (step(metrics)), so its learning rates "
            "cannot be drawn ahead of training",
        ),
        (COSINE, 0, ValueError, "plot: steps must be >= 1, got 0"),
        (COSINE, 10.0, TypeError, "plot: steps must be a whole number, got float 10.0"),
        ("text", 10, TypeError, "plot: expected a schedule, a list of schedules or a scheduler"),
        ([COSINE, 0.1], 10, TypeError, "plot: expected schedules, got float 0.1"),
    ],
)
def test_plot_refuses(target, steps, error, message, tmp_path):
    if target == "plateau":
        target = torch.optim.lr_scheduler.ReduceLROnPlateau(_sgd())
    with pytest.raises(error, match=re.escape(message)):
        descend.schedules.plot(target, steps, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_optimizer_state_with_schedules_loads_with_weights_only():
    import io

    import descend

    lr = descend.schedules.Warmup(
        descend.schedules.Cosine(0.1, 90), 10
    ) * 0.5 + descend.schedules.Join([0.0, descend.schedules.Step(1e-3, 5)], [3])
    beta1 = descend.schedules.Cyclic(0.95, 0.85, 4, mode="triangular2")
    optimizer = descend.AdamW([torch.zeros(2, requires_grad=True)], lr=lr, betas=(beta1, 0.99))
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    group = torch.load(buffer, weights_only=True)["param_groups"][0]
    assert group["lr"] == lr
    assert group["betas"] == (beta1, 0.99)
