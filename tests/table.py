"""The test table: one record per optimizer, driving the parametrized tests.

A record names the class, its torch.optim oracle, the configs to run (descend's own plus
every config torch's own test matrix, ``optim_db``, uses for the oracle), the inputs that
must be rejected, and the implementations to test. Adding an optimizer means adding a
record here; ``test_every_exported_optimizer_has_a_record`` checks that none is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

import descend


@dataclass(frozen=True)
class Config:
    """Constructor keyword arguments for descend, and for the oracle where they differ."""

    desc: str
    kwargs: dict[str, Any]
    oracle_kwargs: dict[str, Any] | None = None

    def for_oracle(self) -> dict[str, Any]:
        return dict(self.kwargs if self.oracle_kwargs is None else self.oracle_kwargs)


@dataclass(frozen=True)
class Reject:
    """Keyword arguments that must be refused with ``error`` matching ``match``."""

    desc: str
    kwargs: dict[str, Any]
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class Record:
    cls: type[descend.Optimizer]
    oracle: type[torch.optim.Optimizer] | None
    configs: list[Config]
    rejects: list[Reject] = field(default_factory=list)
    supports_complex: bool = True

    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def impls(self) -> tuple[str, ...]:
        return self.cls.impls

    def all_configs(self) -> list[Config]:
        return self.configs + torch_configs(self.oracle)


def torch_configs(oracle: type[torch.optim.Optimizer] | None) -> list[Config]:
    """Every config torch's own test matrix (``optim_db``) runs for ``oracle``, on CPU and
    CUDA alike, built under a float64 default so that tensor hyperparameters are float64.

    ``capturable`` only moves torch's step counters onto the device; descend accepts and
    ignores it, and it is dropped for the CPU oracle, which refuses it.
    """
    if oracle is None:
        return []
    from torch.testing._internal.common_optimizers import optim_db

    (info,) = [info for info in optim_db if info.optim_cls is oracle]
    configs: dict[str, Config] = {}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for device in ("cpu", "cuda"):
            for optim_input in info.optim_inputs_func(device):
                kwargs = dict(optim_input.kwargs)
                oracle_kwargs = {k: v for k, v in kwargs.items() if k != "capturable"}
                configs.setdefault(
                    optim_input.desc,
                    Config(f"torch: {optim_input.desc}", kwargs, oracle_kwargs),
                )
    finally:
        torch.set_default_dtype(previous)
    return list(configs.values())


def _rejects_for_every_optimizer() -> list[Reject]:
    return [
        Reject("negative lr", {"lr": -1e-3}, ValueError, "lr must be >= 0, got -0.001"),
        Reject("NaN lr", {"lr": float("nan")}, ValueError, "lr must be >= 0, got nan"),
        Reject("text lr", {"lr": "fast"}, TypeError, "lr must be a number.*got str 'fast'"),
        Reject("bool lr", {"lr": True}, TypeError, "lr must be a number.*got bool True"),
        Reject(
            "negative entry in per-step lr",
            {"lr": [0.1, 0.1, -0.2]},
            ValueError,
            re.escape("lr[2] must be >= 0, got -0.2"),
        ),
        Reject("empty per-step lr", {"lr": []}, ValueError, "lr is an empty sequence"),
        Reject(
            "2-D tensor lr",
            {"lr": torch.ones(2, 2)},
            ValueError,
            re.escape(
                "lr must be a number, a one-element tensor or a 1-D tensor of per-step "
                "values, got a tensor of shape (2, 2)"
            ),
        ),
        Reject(
            "schedule returning text",
            {"lr": lambda step: "high"},
            TypeError,
            "lr is a schedule.*at step 0 it returned str 'high'",
        ),
        Reject(
            "negative weight_decay",
            {"weight_decay": -0.1},
            ValueError,
            "weight_decay must be >= 0, got -0.1",
        ),
        Reject(
            "maximize not a bool",
            {"maximize": 1},
            TypeError,
            "maximize must be True or False, got 1",
        ),
        Reject("unknown impl", {"impl": "magic"}, ValueError, "impl must be one of .*got 'magic'"),
        Reject(
            "differentiable",
            {"differentiable": True},
            ValueError,
            "differentiable=True is not supported",
        ),
        Reject(
            "foreach and fused",
            {"foreach": True, "fused": True},
            ValueError,
            "foreach=True and fused=True cannot be used together",
        ),
        Reject(
            "impl contradicting foreach",
            {"impl": "loop", "foreach": True},
            ValueError,
            "impl='loop' contradicts foreach=True",
        ),
    ]


def _adam_rejects() -> list[Reject]:
    return _rejects_for_every_optimizer() + [
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


RECORDS: list[Record] = [
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
        rejects=_rejects_for_every_optimizer()
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

BY_NAME = {record.name: record for record in RECORDS}
