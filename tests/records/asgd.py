"""Records for descend.optim.asgd."""

from __future__ import annotations

import re

import torch

from descend.optim.asgd import ASGD
from tests.records import Config, Record, Reject, rejects_for_every_optimizer


def _asgd_rejects() -> list[Reject]:
    # torch's ASGD has no fused= keyword, so the foreach-and-fused reject does not apply
    common = [r for r in rejects_for_every_optimizer() if "fused" not in r.kwargs]
    return common + [
        Reject("NaN lambd", {"lambd": float("nan")}, ValueError, "lambd must be a number, got nan"),
        Reject("NaN alpha", {"alpha": float("nan")}, ValueError, "alpha must be a number, got nan"),
        Reject(
            "per-step t0 with a NaN",
            {"t0": [10.0, float("nan")]},
            ValueError,
            re.escape("t0[1] must be a number, got nan"),
        ),
        Reject("text t0", {"t0": "soon"}, TypeError, "t0 must be a number.*got str 'soon'"),
    ]


RECORDS = [
    Record(
        cls=ASGD,
        oracle=torch.optim.ASGD,
        configs=[
            Config(
                "averaging from step 3, strong decay, L2",
                {"lr": 0.05, "lambd": 0.5, "alpha": 0.6, "t0": 3.0, "weight_decay": 0.1},
            ),
            Config(
                "maximize, averaging from the start",
                {"lr": 0.01, "lambd": 0.1, "t0": 0.0, "maximize": True},
            ),
            Config("negative t0", {"lr": 0.02, "t0": -4.5}),
            Config("negative lambd and alpha", {"lr": 0.01, "lambd": -0.2, "alpha": -0.5}),
            Config("zero lr", {"lr": 0.0, "t0": 2.0}),
            Config(
                "tensor hyperparameters",
                {
                    "lr": torch.tensor(0.03, dtype=torch.float64),
                    "lambd": torch.tensor(0.2, dtype=torch.float64),
                    "alpha": torch.tensor(1.5, dtype=torch.float64),
                    "t0": torch.tensor(5.0, dtype=torch.float64),
                },
            ),
        ],
        rejects=_asgd_rejects(),
    ),
]
