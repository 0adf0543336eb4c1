"""Records for descend.optim.lbfgs."""

from __future__ import annotations

import re

import torch

from descend.optim.lbfgs import LBFGS
from tests.records import Config, Record, Reject, rejects_for_every_optimizer

# torch's LBFGS has no weight_decay, maximize, differentiable, foreach or fused argument:
# the rejects that pass one do not apply (the constructor refuses them as unknown keywords).
_NOT_LBFGS_ARGUMENTS = {"weight_decay", "maximize", "differentiable", "foreach", "fused"}


def _rejects() -> list[Reject]:
    common = [
        reject
        for reject in rejects_for_every_optimizer()
        if not _NOT_LBFGS_ARGUMENTS & set(reject.kwargs)
    ]
    return common + [
        Reject(
            "unknown line search",
            {"line_search_fn": "armijo"},
            ValueError,
            "line_search_fn must be None or 'strong_wolfe', got 'armijo'",
        ),
        Reject(
            "history_size 0",
            {"history_size": 0},
            ValueError,
            "history_size must be a positive integer, got 0",
        ),
        Reject(
            "max_iter 0", {"max_iter": 0}, ValueError, "max_iter must be a positive integer, got 0"
        ),
        Reject(
            "max_eval 0", {"max_eval": 0}, ValueError, "max_eval must be a positive integer, got 0"
        ),
        Reject(
            "fractional max_iter",
            {"max_iter": 2.5},
            TypeError,
            "max_iter must be a positive integer, got 2.5",
        ),
        Reject(
            "bool history_size",
            {"history_size": True},
            TypeError,
            "history_size must be a positive integer, got True",
        ),
        Reject(
            "NaN tolerance_grad",
            {"tolerance_grad": float("nan")},
            ValueError,
            "tolerance_grad must be a number, got nan",
        ),
        Reject(
            "text tolerance_change",
            {"tolerance_change": "small"},
            TypeError,
            "tolerance_change must be a number.*got str 'small'",
        ),
        Reject(
            "per-step lr going negative",
            {"lr": [1.0, -1.0]},
            ValueError,
            re.escape("lr[1] must be >= 0, got -1.0"),
        ),
    ]


def _configs() -> list[Config]:
    return [
        Config("strong wolfe, history 3", {"line_search_fn": "strong_wolfe", "history_size": 3}),
        Config(
            "strong wolfe, short first trials",
            {"line_search_fn": "strong_wolfe", "lr": 0.01, "max_iter": 6},
        ),
        Config(
            "strong wolfe, long first trials",
            {"line_search_fn": "strong_wolfe", "lr": 30.0, "max_iter": 6},
        ),
        Config(
            "fixed step, history 2, 5 iterations", {"lr": 0.2, "history_size": 2, "max_iter": 5}
        ),
        Config(
            "strong wolfe, evaluations run out",
            {"line_search_fn": "strong_wolfe", "max_iter": 10, "max_eval": 4, "lr": 2.0},
        ),
        Config(
            "strong wolfe, one evaluation per step",
            {"line_search_fn": "strong_wolfe", "max_iter": 3, "max_eval": 1},
        ),
        Config("one iteration per step", {"lr": 0.3, "max_iter": 1}),
        Config(
            "strong wolfe, loose tolerances",
            {"line_search_fn": "strong_wolfe", "tolerance_grad": 1e-3, "tolerance_change": 1e-4},
        ),
        Config("gradient already small enough", {"lr": 0.5, "tolerance_grad": 100.0}),
        Config("zero lr", {"lr": 0.0, "max_iter": 4}),
        Config(
            "tensor lr, strong wolfe",
            {"lr": torch.tensor(0.8, dtype=torch.float64), "line_search_fn": "strong_wolfe"},
        ),
        Config("tensor lr, fixed step", {"lr": torch.tensor([0.25], dtype=torch.float64)}),
    ]


RECORDS = [
    Record(
        cls=LBFGS,
        oracle=torch.optim.LBFGS,
        configs=_configs(),
        rejects=_rejects(),
        problem="ridge",  # on the bare problem torch's own lr=1 config diverges by step 4
        closure=True,
        groups=False,
        supports_complex=True,
    ),
]
