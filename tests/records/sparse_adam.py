"""Records for descend.optim.sparse_adam."""

from __future__ import annotations

import re

import torch

from descend.optim.sparse_adam import SparseAdam
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# torch's SparseAdam has no weight_decay, differentiable, foreach or fused argument: the
# rejects that pass one do not apply (the constructor refuses them as unknown keywords).
_NOT_SPARSE_ADAM_ARGUMENTS = {"weight_decay", "differentiable", "foreach", "fused"}


def _rejects() -> list[Reject]:
    common = [
        reject
        for reject in rejects_for_every_optimizer()
        if not _NOT_SPARSE_ADAM_ARGUMENTS & set(reject.kwargs)
    ]
    return common + [
        Reject(
            "beta1 = 1",
            {"betas": (1.0, 0.0)},
            ValueError,
            re.escape("betas[0] must be in [0, 1), got 1.0"),
        ),
        Reject(
            "negative beta2",
            {"betas": (0.9, -0.5)},
            ValueError,
            re.escape("betas[1] must be in [0, 1), got -0.5"),
        ),
        Reject(
            "three betas",
            {"betas": (0.9, 0.99, 0.9)},
            TypeError,
            re.escape("betas must be a tuple of 2 values, got (0.9, 0.99, 0.9)"),
        ),
        Reject("zero eps", {"eps": 0}, ValueError, "eps must be > 0, got 0.0"),
        Reject("negative eps", {"eps": -1e-8}, ValueError, "eps must be > 0, got -1e-08"),
        Reject(
            "per-step eps reaching 0",
            {"eps": [1e-8, 0.0]},
            ValueError,
            re.escape("eps[1] must be > 0, got 0.0"),
        ),
    ]


def _configs() -> list[Config]:
    return [
        Config("maximize, low betas", {"lr": 0.05, "betas": (0.5, 0.6), "maximize": True}),
        Config("large eps", {"lr": 0.1, "eps": 0.5}),
        Config("beta1 = 0", {"lr": 0.02, "betas": (0.0, 0.99)}),
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
        cls=SparseAdam,
        oracle=torch.optim.SparseAdam,
        configs=_configs(),
        rejects=_rejects(),
        problem="sparse",
        supports_complex=False,
    ),
]
