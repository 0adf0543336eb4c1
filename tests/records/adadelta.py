"""Records for descend.optim.adadelta."""

from __future__ import annotations

import torch

from descend.optim.adadelta import Adadelta
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# Adadelta has no fused implementation in torch and no ``fused`` keyword to contradict.
_NOT_APPLICABLE = {"foreach and fused"}

RECORDS = [
    Record(
        cls=Adadelta,
        oracle=torch.optim.Adadelta,
        configs=[
            Config(
                "rho, eps, L2",
                {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.05},
            ),
            Config("rho = 1", {"lr": 0.1, "rho": 1.0}),
            Config("rho = 0, maximize", {"lr": 0.5, "rho": 0.0, "maximize": True}),
            Config("tensor lr", {"lr": torch.tensor(2.0, dtype=torch.float64), "eps": 1e-3}),
        ],
        rejects=[r for r in rejects_for_every_optimizer() if r.desc not in _NOT_APPLICABLE]
        + [
            Reject("rho above 1", {"rho": 1.1}, ValueError, r"rho must be in \[0, 1\], got 1.1"),
            Reject("negative rho", {"rho": -0.1}, ValueError, r"rho must be in \[0, 1\], got -0.1"),
            Reject(
                "rho schedule leaving [0, 1]",
                {"rho": lambda step: 2.0},
                ValueError,
                r"rho \(at step 0\) must be in \[0, 1\], got 2.0",
            ),
            Reject("negative eps", {"eps": -1e-6}, ValueError, "eps must be >= 0, got -1e-06"),
        ],
    ),
]
