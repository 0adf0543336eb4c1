"""Records for descend.optim.muon."""

from __future__ import annotations

import re

import torch

from descend.optim.muon import Muon
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# torch's Muon has no maximize/foreach/fused/differentiable keywords: passing them is a
# TypeError there and here, so the shared rejects about them do not apply.
_NOT_IN_SIGNATURE = {
    "maximize not a bool",
    "differentiable",
    "foreach and fused",
    "impl contradicting foreach",
}


def _rejects() -> list[Reject]:
    shared = [r for r in rejects_for_every_optimizer() if r.desc not in _NOT_IN_SIGNATURE]
    return shared + [
        Reject("negative momentum", {"momentum": -0.1}, ValueError, "momentum must be >= 0"),
        Reject(
            "unknown adjust_lr_fn",
            {"adjust_lr_fn": "arbitrary"},
            ValueError,
            "adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got 'arbitrary'.*"
            "Adjust learning rate function arbitrary is not supported",
        ),
        Reject(
            "100 ns_steps",
            {"ns_steps": 100},
            ValueError,
            "ns_steps must be an integer from 0 to 99, got 100",
        ),
        Reject(
            "negative ns_steps",
            {"ns_steps": -1},
            ValueError,
            "ns_steps must be an integer from 0 to 99, got -1",
        ),
        Reject(
            "fractional ns_steps",
            {"ns_steps": 2.5},
            ValueError,
            "ns_steps must be an integer from 0 to 99, got 2.5",
        ),
        Reject(
            "bool ns_steps",
            {"ns_steps": True},
            ValueError,
            "ns_steps must be an integer from 0 to 99, got True",
        ),
        Reject(
            "two ns_coefficients",
            {"ns_coefficients": (3.0, -4.0)},
            TypeError,
            re.escape("ns_coefficients must be a tuple of 3 values, got (3.0, -4.0)"),
        ),
        Reject(
            "NaN in per-step ns_coefficients",
            {"ns_coefficients": (3.4, [-4.7, float("nan")], 2.0)},
            ValueError,
            re.escape("ns_coefficients[1][1] must be a number, got nan"),
        ),
        Reject(
            "nesterov not a bool",
            {"nesterov": 1},
            TypeError,
            "nesterov must be True or False, got 1",
        ),
    ]


def _configs() -> list[Config]:
    return [
        # first: the generic schedule tests make every number here dynamic
        Config(
            "every number",
            {
                "lr": 0.02,
                "weight_decay": 0.05,
                "momentum": 0.9,
                "ns_coefficients": (3.4445, -4.775, 2.0315),
                "eps": 1e-7,
            },
        ),
        Config(
            "no nesterov, match_rms_adamw",
            {"lr": 0.01, "nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
        ),
        Config(
            "original, 3 steps, large eps",
            {"lr": 0.02, "adjust_lr_fn": "original", "ns_steps": 3, "eps": 20.0},
        ),
        Config("no momentum, no weight decay", {"lr": 0.02, "momentum": 0.0, "weight_decay": 0}),
        Config("0 ns_steps: the normalized direction", {"lr": 0.05, "ns_steps": 0}),
        Config(
            "tensor lr, no nesterov",
            {"lr": torch.tensor(0.03, dtype=torch.float64), "nesterov": False},
        ),
        Config(
            "coefficients as a list",
            {"ns_coefficients": [3.0, -3.2, 1.2], "lr": 0.02},
            {"ns_coefficients": (3.0, -3.2, 1.2), "lr": 0.02},
        ),
    ]


RECORDS = [
    Record(
        cls=Muon,
        oracle=torch.optim.Muon,
        configs=_configs(),
        rejects=_rejects(),
        supports_complex=False,
        problem="matrices",
    ),
]
