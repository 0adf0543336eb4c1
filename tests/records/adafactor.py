"""Records for descend.optim.adafactor."""

from __future__ import annotations

import re

import torch

from descend.optim.adafactor import Adafactor
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# torch's Adafactor has no fused/differentiable keywords: passing them is a TypeError
# there and here, so the shared rejects about them do not apply.
_NOT_IN_SIGNATURE = {"differentiable", "foreach and fused"}


def _rejects() -> list[Reject]:
    shared = [r for r in rejects_for_every_optimizer() if r.desc not in _NOT_IN_SIGNATURE]
    return shared + [
        Reject(
            "positive beta2_decay",
            {"beta2_decay": 0.8},
            ValueError,
            "beta2_decay must be <= 0, got 0.8",
        ),
        Reject("d below 1", {"d": 0.0}, ValueError, "d must be >= 1, got 0.0"),
        Reject(
            "per-step d dipping below 1",
            {"d": [1.5, 1.2, 0.9]},
            ValueError,
            re.escape("d[2] must be >= 1, got 0.9"),
        ),
        Reject(
            "negative eps1",
            {"eps": (-1e-30, 1e-3)},
            ValueError,
            re.escape("eps[0] must be >= 0, got -1e-30"),
        ),
        Reject(
            "negative eps2",
            {"eps": (None, -1e-3)},
            ValueError,
            re.escape("eps[1] must be >= 0, got -0.001"),
        ),
        Reject(
            "eps2 None",
            {"eps": (1e-30, None)},
            TypeError,
            re.escape("eps[1] must be a number (only eps[0] may be None)"),
        ),
        Reject(
            "one eps",
            {"eps": (1e-3,)},
            TypeError,
            re.escape("eps must be a tuple of 2 values, got (0.001,)"),
        ),
        Reject(
            "schedule of eps1 turning negative",
            {"eps": (lambda step: -1.0, 1e-3)},
            ValueError,
            re.escape("eps[0] (at step 0) must be >= 0, got -1.0"),
        ),
        Reject(
            "maximize not a bool",
            {"maximize": "no"},
            TypeError,
            "maximize must be True or False, got 'no'",
        ),
    ]


def _configs() -> list[Config]:
    return [
        # first: the generic schedule tests make every number here dynamic (d stays >= 1)
        Config(
            "every option",
            {
                "lr": 0.05,
                "beta2_decay": -0.6,
                "eps": (1e-3, 1e-2),
                "d": 1.5,
                "weight_decay": 0.1,
            },
        ),
        Config("maximize, eps1 large enough to clamp", {"eps": (0.5, 1e-3), "maximize": True}),
        Config("lr above 1/sqrt(t)", {"lr": 0.5, "d": 2.0}),
        Config("beta2_decay 0: only the newest gradient", {"beta2_decay": 0.0, "lr": 0.03}),
        Config("eps2 0, d large: no clipping", {"eps": (None, 0.0), "d": 10.0, "lr": 0.02}),
        Config(
            "tensor lr, weight decay",
            {"lr": torch.tensor(0.03, dtype=torch.float64), "weight_decay": 0.5},
        ),
        Config("eps as a list", {"eps": [1e-20, 1e-3]}, {"eps": (1e-20, 1e-3)}),
    ]


RECORDS = [
    Record(
        cls=Adafactor,
        oracle=torch.optim.Adafactor,
        configs=_configs(),
        rejects=_rejects(),
        supports_complex=False,
    ),
]
