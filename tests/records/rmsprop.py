"""Records for descend.optim.rmsprop."""

from __future__ import annotations

import torch

from descend.optim.rmsprop import RMSprop
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# RMSprop has no fused implementation in torch and no ``fused`` keyword to contradict.
_NOT_APPLICABLE = {"foreach and fused"}

RECORDS = [
    Record(
        cls=RMSprop,
        oracle=torch.optim.RMSprop,
        configs=[
            Config(
                "centered, momentum, L2, alpha, eps",
                {
                    "lr": 0.01,
                    "alpha": 0.9,
                    "eps": 1e-6,
                    "weight_decay": 0.1,
                    "momentum": 0.5,
                    "centered": True,
                },
            ),
            Config("momentum, maximize", {"lr": 0.005, "momentum": 0.9, "maximize": True}),
            Config("centered without momentum", {"lr": 0.01, "centered": True, "eps": 1e-4}),
            Config("alpha = 0", {"lr": 0.001, "alpha": 0.0}),
            Config("momentum above 1", {"lr": 0.0005, "momentum": 1.05}),
            Config(
                "tensor lr, centered, maximize",
                {
                    "lr": torch.tensor(0.003, dtype=torch.float64),
                    "centered": True,
                    "maximize": True,
                },
            ),
        ],
        rejects=[r for r in rejects_for_every_optimizer() if r.desc not in _NOT_APPLICABLE]
        + [
            Reject(
                "negative momentum",
                {"momentum": -1.0},
                ValueError,
                "momentum must be >= 0, got -1.0",
            ),
            Reject("negative alpha", {"alpha": -0.5}, ValueError, "alpha must be >= 0, got -0.5"),
            Reject("negative eps", {"eps": -1e-8}, ValueError, "eps must be >= 0, got -1e-08"),
            Reject(
                "centered not a bool",
                {"centered": "yes"},
                TypeError,
                "centered must be True or False, got 'yes'",
            ),
        ],
    ),
]
