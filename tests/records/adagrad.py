"""Records for descend.optim.adagrad."""

from __future__ import annotations

import torch

from descend.optim.adagrad import Adagrad
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

RECORDS = [
    Record(
        cls=Adagrad,
        oracle=torch.optim.Adagrad,
        configs=[
            Config(
                "lr decay, initial accumulator, L2, eps",
                {
                    "lr": 0.05,
                    "lr_decay": 0.1,
                    "weight_decay": 0.05,
                    "initial_accumulator_value": 0.1,
                    "eps": 1e-6,
                },
            ),
            Config("maximize, large eps", {"lr": 0.01, "maximize": True, "eps": 0.1}),
            Config("large lr decay", {"lr": 0.2, "lr_decay": 2.0}),
            Config("zero lr", {"lr": 0.0, "initial_accumulator_value": 0.5}),
            Config("tensor lr", {"lr": torch.tensor(0.02, dtype=torch.float64)}),
            Config(
                # torch's fused kernel refuses complex parameters; descend picks its own impl
                "fused flag",
                {"lr": 0.05, "fused": True},
                oracle_kwargs={"lr": 0.05},
            ),
        ],
        rejects=rejects_for_every_optimizer()
        + [
            Reject(
                "negative lr_decay",
                {"lr_decay": -0.5},
                ValueError,
                "lr_decay must be >= 0, got -0.5",
            ),
            Reject(
                "negative initial_accumulator_value",
                {"initial_accumulator_value": -0.1},
                ValueError,
                "initial_accumulator_value must be >= 0, got -0.1",
            ),
            Reject("negative eps", {"eps": -1e-10}, ValueError, "eps must be >= 0, got -1e-10"),
            Reject(
                "lr_decay schedule turning negative",
                {"lr_decay": [0.1, -0.1]},
                ValueError,
                r"lr_decay\[1\] must be >= 0, got -0.1",
            ),
        ],
    ),
]
