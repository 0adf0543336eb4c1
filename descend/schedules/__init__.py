"""Pure schedules: values that depend on the step alone.

A schedule is a frozen dataclass you call with a step (``schedule(step) -> float``) or
evaluate at many steps at once (``schedule.values(steps) -> ndarray``). Schedules compare
by value, pickle, and ``repr`` to the expression that rebuilds them. Give one to any
hyperparameter of a descend optimizer and it is evaluated at the group's step::

    from descend.schedules import Cosine, Warmup

    lr = Warmup(Cosine(0.1, 900), steps=100)      # 100 warmup steps, then cosine decay
    opt = descend.SGD(model.parameters(), lr=lr, momentum=Cosine(0.95, 1000, end=0.85))

Shapes: :class:`Constant`, :class:`Linear`, :class:`Step`, :class:`MultiStep`,
:class:`Exponential`, :class:`Polynomial`, :class:`Cosine`, :class:`CosineRestarts`,
:class:`Cyclic`, :class:`OneCycle`, :class:`InverseTime`, :class:`NaturalExp`,
:class:`PiecewiseConstant`, :class:`PiecewiseInterpolated`, :class:`Warmup`.

Combinators: :class:`Join` (one after another at step boundaries), :class:`Sum`,
:class:`Product`, :class:`Quotient`, :class:`Scale`, :class:`Shift`, :class:`Clamp`,
:class:`Repeat`; ``+``, ``-``, ``*``, ``/`` build the first four.

Pictures: :func:`plot` draws schedules, or a stateful scheduler's learning rates, into a
PNG; :func:`plot_data` gives the numbers it draws.
"""

import torch.serialization as _torch_serialization

from descend.schedules.base import (
    Clamp,
    Join,
    Product,
    Quotient,
    Repeat,
    Scale,
    Schedule,
    Shift,
    Sum,
)
from descend.schedules.plot import plot, plot_data
from descend.schedules.shapes import (
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseTime,
    Linear,
    MultiStep,
    NaturalExp,
    OneCycle,
    PiecewiseConstant,
    PiecewiseInterpolated,
    Polynomial,
    Step,
    Warmup,
)

__all__ = [
    "Clamp",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "Exponential",
    "InverseTime",
    "Join",
    "Linear",
    "MultiStep",
    "NaturalExp",
    "OneCycle",
    "PiecewiseConstant",
    "PiecewiseInterpolated",
    "Polynomial",
    "Product",
    "Quotient",
    "Repeat",
    "Scale",
    "Schedule",
    "Shift",
    "Step",
    "Sum",
    "Warmup",
    "plot",
    "plot_data",
]

# Schedules are plain data: let torch.load(weights_only=True) rebuild them, so optimizer
# state dicts whose hyperparameters are schedules load with torch's safe default.
_torch_serialization.add_safe_globals(
    [
        value
        for value in globals().values()
        if isinstance(value, type) and issubclass(value, Schedule)
    ]
)
