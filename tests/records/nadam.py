"""Records for descend.optim.nadam."""

from __future__ import annotations

import re

import torch

from descend.optim.nadam import NAdam
from tests.records import Config, Record, Reject, rejects_for_every_optimizer


def _nadam_rejects() -> list[Reject]:
    # torch's NAdam has no fused= keyword, so the foreach-and-fused reject does not apply
    common = [r for r in rejects_for_every_optimizer() if "fused" not in r.kwargs]
    return common + [
        Reject(
            "beta1 = 1",
            {"betas": (1.0, 0.999)},
            ValueError,
            re.escape("betas[0] must be in [0, 1), got 1.0"),
        ),
        Reject(
            "negative beta2",
            {"betas": (0.9, -0.1)},
            ValueError,
            re.escape("betas[1] must be in [0, 1), got -0.1"),
        ),
        Reject(
            "three betas",
            {"betas": (0.9, 0.99, 0.9)},
            TypeError,
            re.escape("betas must be a tuple of 2 values, got (0.9, 0.99, 0.9)"),
        ),
        Reject("negative eps", {"eps": -1e-8}, ValueError, "eps must be >= 0, got -1e-08"),
        Reject(
            "negative momentum_decay",
            {"momentum_decay": -0.004},
            ValueError,
            "momentum_decay must be >= 0, got -0.004",
        ),
        Reject(
            "momentum_decay schedule turning negative",
            {"momentum_decay": [0.004, -1.0]},
            ValueError,
            re.escape("momentum_decay[1] must be >= 0, got -1.0"),
        ),
        Reject(
            "decoupled_weight_decay not a bool",
            {"decoupled_weight_decay": 1},
            TypeError,
            "decoupled_weight_decay must be True or False, got 1",
        ),
    ]


RECORDS = [
    Record(
        cls=NAdam,
        oracle=torch.optim.NAdam,
        configs=[
            Config(
                "L2, maximize, momentum_decay",
                {"lr": 0.01, "weight_decay": 0.2, "maximize": True, "momentum_decay": 0.01},
            ),
            Config(
                "decoupled weight decay",
                {"lr": 0.02, "weight_decay": 0.3, "decoupled_weight_decay": True},
            ),
            Config("large eps, low betas", {"lr": 0.05, "eps": 0.1, "betas": (0.5, 0.6)}),
            Config("beta1 = 0", {"lr": 0.01, "betas": (0.0, 0.99)}),
            Config("no momentum decay", {"lr": 0.01, "momentum_decay": 0.0}),
            Config("fast momentum decay", {"lr": 0.01, "momentum_decay": 0.5}),
            Config(
                "tensor hyperparameters",
                {
                    "lr": torch.tensor(0.03, dtype=torch.float64),
                    "betas": (
                        torch.tensor(0.8, dtype=torch.float64),
                        torch.tensor(0.95, dtype=torch.float64),
                    ),
                    "momentum_decay": torch.tensor(0.02, dtype=torch.float64),
                },
            ),
        ],
        rejects=_nadam_rejects(),
    ),
]
