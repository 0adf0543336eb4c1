"""Records for descend.optim.sgd."""

from __future__ import annotations

import torch

import descend
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

RECORDS = [
    Record(
        cls=descend.SGD,
        oracle=torch.optim.SGD,
        configs=[
            Config(
                "nesterov, L2", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}
            ),
            Config(
                "dampening, maximize",
                {"lr": 0.005, "momentum": 0.5, "dampening": 0.3, "maximize": True},
            ),
            Config("negative dampening", {"lr": 0.03, "momentum": 0.9, "dampening": -0.5}),
            Config("momentum above 1", {"lr": 0.001, "momentum": 1.1}),
            Config("zero lr", {"lr": 0.0, "momentum": 0.9}),
        ],
        rejects=rejects_for_every_optimizer()
        + [
            Reject(
                "negative momentum",
                {"momentum": -0.5},
                ValueError,
                "momentum must be >= 0, got -0.5",
            ),
            Reject(
                "nesterov without momentum",
                {"nesterov": True},
                ValueError,
                "nesterov=True needs momentum > 0 and dampening == 0, got momentum=0.0",
            ),
            Reject(
                "nesterov with dampening",
                {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
                ValueError,
                "nesterov=True needs momentum > 0 and dampening == 0.*dampening=0.1",
            ),
            Reject(
                "nesterov not a bool",
                {"nesterov": None},
                TypeError,
                "nesterov must be True or False, got None",
            ),
        ],
    ),
]
