"""Records for descend.optim.radam."""

from __future__ import annotations

import re

import torch

from descend.optim.radam import RAdam
from tests.records import Config, Record, Reject, rejects_for_every_optimizer


def _radam_rejects() -> list[Reject]:
    # torch's RAdam has no fused= keyword, so the foreach-and-fused reject does not apply
    common = [r for r in rejects_for_every_optimizer() if "fused" not in r.kwargs]
    return common + [
        Reject(
            "beta1 = 1",
            {"betas": (1.0, 0.999)},
            ValueError,
            re.escape("betas[0] must be in [0, 1), got 1.0"),
        ),
        Reject(
            "beta2 = 1",
            {"betas": (0.9, 1.0)},
            ValueError,
            re.escape("betas[1] must be in [0, 1), got 1.0"),
        ),
        Reject(
            "one beta",
            {"betas": (0.9,)},
            TypeError,
            re.escape("betas must be a tuple of 2 values, got (0.9,)"),
        ),
        Reject("negative eps", {"eps": -1e-8}, ValueError, "eps must be >= 0, got -1e-08"),
        Reject(
            "decoupled_weight_decay not a bool",
            {"decoupled_weight_decay": "no"},
            TypeError,
            "decoupled_weight_decay must be True or False, got 'no'",
        ),
    ]


RECORDS = [
    Record(
        cls=RAdam,
        oracle=torch.optim.RAdam,
        configs=[
            Config(
                "L2, maximize",
                {"lr": 0.01, "weight_decay": 0.2, "maximize": True},
            ),
            Config(
                "decoupled weight decay",
                {"lr": 0.02, "weight_decay": 0.3, "decoupled_weight_decay": True},
            ),
            # rho_inf = 19: the rectified step starts a few steps in
            Config("beta2 = 0.9", {"lr": 0.01, "betas": (0.8, 0.9)}),
            # rho_inf = 4 <= 5: never rectified, plain bias-corrected momentum throughout
            Config("never rectified", {"lr": 0.01, "betas": (0.9, 0.6)}),
            Config("beta2 = 0", {"lr": 0.01, "betas": (0.5, 0.0)}),
            Config("large eps, beta1 = 0", {"lr": 0.05, "eps": 0.1, "betas": (0.0, 0.95)}),
            Config(
                "tensor lr and betas",
                {
                    "lr": torch.tensor(0.03, dtype=torch.float64),
                    "betas": (
                        torch.tensor(0.8, dtype=torch.float64),
                        torch.tensor(0.95, dtype=torch.float64),
                    ),
                },
            ),
        ],
        rejects=_radam_rejects(),
    ),
]
