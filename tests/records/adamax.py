"""Records for descend.optim.adamax."""

from __future__ import annotations

import re

import torch

from descend.optim.adamax import Adamax
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# Adamax has no fused implementation in torch and no ``fused`` keyword to contradict.
_NOT_APPLICABLE = {"foreach and fused"}

RECORDS = [
    Record(
        cls=Adamax,
        oracle=torch.optim.Adamax,
        configs=[
            Config(
                "betas, eps, L2",
                {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-4, "weight_decay": 0.1},
            ),
            Config("beta1 = 0, maximize", {"lr": 0.02, "betas": (0.0, 0.9), "maximize": True}),
            Config("beta2 = 0", {"lr": 0.01, "betas": (0.9, 0.0)}),
            Config(
                "tensor lr and betas",
                {
                    "lr": torch.tensor(0.03, dtype=torch.float64),
                    "betas": (
                        torch.tensor(0.85, dtype=torch.float64),
                        torch.tensor(0.99, dtype=torch.float64),
                    ),
                },
            ),
        ],
        rejects=[r for r in rejects_for_every_optimizer() if r.desc not in _NOT_APPLICABLE]
        + [
            Reject(
                "beta2 = 1",
                {"betas": (0.0, 1.0)},
                ValueError,
                re.escape("betas[1] must be in [0, 1), got 1.0"),
            ),
            Reject(
                "negative beta1",
                {"betas": (-0.1, 0.999)},
                ValueError,
                re.escape("betas[0] must be in [0, 1), got -0.1"),
            ),
            Reject(
                "one beta",
                {"betas": (0.9,)},
                TypeError,
                re.escape("betas must be a tuple of 2 values, got (0.9,)"),
            ),
            Reject("negative eps", {"eps": -1e-8}, ValueError, "eps must be >= 0, got -1e-08"),
        ],
    ),
]
