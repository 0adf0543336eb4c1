"""Records for descend.optim.adam."""

from __future__ import annotations

import re

import torch

import descend
from tests.records import Config, Record, Reject, rejects_for_every_optimizer


def _adam_rejects() -> list[Reject]:
    return rejects_for_every_optimizer() + [
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
            "one beta",
            {"betas": (0.9,)},
            TypeError,
            re.escape("betas must be a tuple of 2 values, got (0.9,)"),
        ),
        Reject(
            "per-step beta2 leaving [0, 1)",
            {"betas": (0.9, [0.99, 1.5])},
            ValueError,
            re.escape("betas[1][1] must be in [0, 1), got 1.5"),
        ),
        Reject("negative eps", {"eps": -1e-8}, ValueError, "eps must be >= 0, got -1e-08"),
        Reject(
            "amsgrad not a bool",
            {"amsgrad": "yes"},
            TypeError,
            "amsgrad must be True or False, got 'yes'",
        ),
    ]


def _adam_configs() -> list[Config]:
    return [
        Config(
            "amsgrad, maximize, L2",
            {"lr": 0.005, "amsgrad": True, "maximize": True, "weight_decay": 0.2},
        ),
        Config(
            "decoupled weight decay",
            {"lr": 0.02, "weight_decay": 0.3, "decoupled_weight_decay": True},
        ),
        Config(
            "decoupled, amsgrad",
            {"lr": 0.02, "weight_decay": 0.3, "amsgrad": True, "decoupled_weight_decay": True},
        ),
        Config("large eps, low betas", {"lr": 0.1, "eps": 0.1, "betas": (0.5, 0.6)}),
        Config("beta1 = 0", {"lr": 0.01, "betas": (0.0, 0.99)}),
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
    ]


RECORDS = [
    Record(
        cls=descend.Adam, oracle=torch.optim.Adam, configs=_adam_configs(), rejects=_adam_rejects()
    ),
    Record(
        cls=descend.AdamW,
        oracle=torch.optim.AdamW,
        configs=[c for c in _adam_configs() if "decoupled_weight_decay" not in c.kwargs]
        + [Config("no weight decay", {"lr": 0.01, "weight_decay": 0.0})],
        rejects=_adam_rejects(),
    ),
]
