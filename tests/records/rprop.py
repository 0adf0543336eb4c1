"""Records for descend.optim.rprop."""

from __future__ import annotations

import re

import torch

from descend.optim.rprop import Rprop
from tests.records import Config, Record, Reject, rejects_for_every_optimizer


def _rprop_rejects() -> list[Reject]:
    # Rprop has no weight_decay, and torch's Rprop no fused= keyword
    common = [
        r
        for r in rejects_for_every_optimizer()
        if "fused" not in r.kwargs and "weight_decay" not in r.kwargs
    ]
    return common + [
        Reject(
            "etaminus = 0",
            {"etas": (0.0, 1.2)},
            ValueError,
            re.escape("etas[0] must be in (0, 1), got 0.0"),
        ),
        Reject(
            "etaminus = 1",
            {"etas": (1.0, 1.2)},
            ValueError,
            re.escape("etas[0] must be in (0, 1), got 1.0"),
        ),
        Reject(
            "etaplus = 1",
            {"etas": (0.5, 1.0)},
            ValueError,
            re.escape("etas[1] must be > 1, got 1.0"),
        ),
        Reject(
            "per-step etaplus dropping to 1",
            {"etas": (0.5, [1.2, 1.1, 1.0])},
            ValueError,
            re.escape("etas[1][2] must be > 1, got 1.0"),
        ),
        Reject(
            "etaminus schedule leaving (0, 1)",
            {"etas": (lambda step: 1.5, 1.2)},
            ValueError,
            re.escape("etas[0] (at step 0) must be in (0, 1), got 1.5"),
        ),
        Reject(
            "missing etaplus",
            {"etas": (0.5, None)},
            TypeError,
            re.escape("etas must be two numbers, got (0.5, None)"),
        ),
        Reject(
            "three etas",
            {"etas": (0.5, 1.2, 2.0)},
            TypeError,
            re.escape("etas must be a tuple of 2 values, got (0.5, 1.2, 2.0)"),
        ),
        Reject(
            "NaN step size bound",
            {"step_sizes": (float("nan"), 50)},
            ValueError,
            re.escape("step_sizes[0] must be a number, got nan"),
        ),
        Reject(
            "one step size",
            {"step_sizes": (1e-6,)},
            TypeError,
            re.escape("step_sizes must be a tuple of 2 values, got (1e-06,)"),
        ),
    ]


RECORDS = [
    Record(
        cls=Rprop,
        oracle=torch.optim.Rprop,
        configs=[
            Config(
                "tight bounds, strong factors",
                {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)},
            ),
            Config("maximize", {"lr": 0.01, "maximize": True}),
            Config("no lower bound", {"lr": 0.02, "step_sizes": (None, 1.0)}),
            Config("no upper bound", {"lr": 0.001, "etas": (0.6, 1.1), "step_sizes": (0, None)}),
            Config("bounds crossed", {"lr": 0.01, "step_sizes": (0.02, 0.005)}),
            Config("zero lr", {"lr": 0.0}),
            Config(
                "tensor hyperparameters",
                {
                    "lr": torch.tensor(0.03, dtype=torch.float64),
                    "etas": (
                        torch.tensor(0.4, dtype=torch.float64),
                        torch.tensor(1.3, dtype=torch.float64),
                    ),
                    "step_sizes": (
                        torch.tensor(1e-4, dtype=torch.float64),
                        torch.tensor(0.5, dtype=torch.float64),
                    ),
                },
            ),
        ],
        rejects=_rprop_rejects(),
    ),
]
