"""MXNet.jl's optimizers as torch optimizers: ``mx.optim.SGD(model.parameters(), ...)``.

Same keywords, defaults and formulas as the updater-style classes of
:mod:`descend.compat.mxnet`, over parameter groups with ``.step()``; every number may be
a descend schedule or a per-step sequence (of the group's step count) instead of an
MXNet.jl scheduler. The gradient is normalized as MXNet.jl does (times ``grad_scale``
when nonzero, clipped to ``grad_clip`` when positive, plus ``weight_decay * param``);
``grad_scale`` defaults to 0, no rescaling, as torch losses are usually means already.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compat.mxnet._optimizers import scale_clip_decay
from descend.compat.mxnet._schedulers import NadamScheduler
from descend.hyperparams import (
    Rule,
    in_open_unit_interval,
    is_step_sequence,
    nonnegative,
    positive,
    resolve,
)
from descend.optim.adadelta import adadelta_foreach, adadelta_loop
from descend.optim.adagrad import adagrad_foreach, adagrad_loop
from descend.optim.adam import adam_foreach, adam_loop
from descend.optim.adamax import adamax_foreach, adamax_loop
from descend.optim.nadam import nadam_foreach, nadam_loop
from descend.optim.rmsprop import rmsprop_foreach, rmsprop_loop
from descend.optim.sgd import sgd_foreach, sgd_loop
from descend.optimizer import Optimizer, Values

_COMMON: dict[str, Rule] = {
    "grad_clip": nonnegative,
    "weight_decay": nonnegative,
    "grad_scale": nonnegative,
}


class _MXNetOptimizer(Optimizer):
    """Shared by the MXNet.jl torch optimizers: MXNet.jl's gradient normalization."""

    flags: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any, impl: str | None = None, **options: Any) -> None:
        super().__init__(params, dict(options, impl=impl))

    @staticmethod
    def _normalized(values: Values, params: list[Tensor]) -> list[Tensor]:
        scale = values["grad_scale"] if values["grad_scale"] != 0 else None
        clip, decay = values["grad_clip"], values["weight_decay"]
        return [scale_clip_decay(p.grad, p, scale, clip, decay) for p in params]

    def _pick(self, group: dict[str, Any], params: list[Tensor], loop: Any, foreach: Any) -> Any:
        return loop if self._impl(group, params) == "loop" else foreach


class SGD(_MXNetOptimizer):
    r"""MXNet.jl's SGD: :math:`\nu \leftarrow \mu\nu - \text{lr}\,\nabla`,
    :math:`p \leftarrow p + \nu` (:math:`\nu_0 = 0`; the state ``momentum_buffer`` holds
    :math:`-\nu`). Defaults: lr 0.01, momentum 0, grad_clip 0, weight_decay 1e-4."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        "momentum": nonnegative,
        **_COMMON,
    }
    per_element_state = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 0.01,
        momentum: Any = 0.0,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.0001,
        grad_scale: Any = 0.0,
        impl: str | None = None,
    ) -> None:
        super().__init__(
            params,
            impl,
            lr=lr,
            momentum=momentum,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        momentum = group["momentum"]
        keeps = is_step_sequence(momentum) or callable(momentum)
        keeps = keeps or resolve("momentum", momentum, 0) != 0
        buffers = None
        if keeps:
            buffers = [s["momentum_buffer"] for s in self._lazy_state(params, ["momentum_buffer"])]
        self._pick(group, params, sgd_loop, sgd_foreach)(
            params,
            self._normalized(values, params),
            buffers,
            lr=values["lr"],
            momentum=values["momentum"],
            dampening=0.0,
            weight_decay=0.0,
            nesterov=False,
            maximize=False,
            lr_in_momentum=True,
        )


class ADAM(_MXNetOptimizer):
    r"""MXNet.jl's ADAM: epsilon after the bias correction, as torch; each parameter keeps the
    learning rate of its first step (state ``lr``), as MXNet.jl reads it at state
    creation. Defaults: lr 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8, weight_decay
    1e-5. ``beta1`` and ``beta2`` must lie in (0, 1)."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        # MXNet.jl documents > 0; 1 and above divide by zero or take the square root of a
        # negative number in the bias corrections
        "beta1": in_open_unit_interval,
        "beta2": in_open_unit_interval,
        "epsilon": positive,
        **_COMMON,
    }
    per_element_state = ("mt", "vt")

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 0.001,
        beta1: Any = 0.9,
        beta2: Any = 0.999,
        epsilon: Any = 1e-8,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.00001,
        grad_scale: Any = 0.0,
        impl: str | None = None,
    ) -> None:
        super().__init__(
            params,
            impl,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ["mt", "vt"])
        for state in states:
            state.setdefault("lr", float(values["lr"]))
        grads = self._normalized(values, params)
        # parameters that started at different steps keep different learning rates
        by_lr: dict[float, list[int]] = {}
        for i, state in enumerate(states):
            by_lr.setdefault(state["lr"], []).append(i)
        update = self._pick(group, params, adam_loop, adam_foreach)
        for lr, members in by_lr.items():
            update(
                [params[i] for i in members],
                [grads[i] for i in members],
                [states[i]["mt"] for i in members],
                [states[i]["vt"] for i in members],
                None,
                [states[i]["step"] for i in members],
                lr=lr,
                beta1=values["beta1"],
                beta2=values["beta2"],
                eps=values["epsilon"],
                weight_decay=0.0,
                maximize=False,
                decoupled_weight_decay=False,
            )


class AdaGrad(_MXNetOptimizer):
    r"""MXNet.jl's AdaGrad: :math:`p \leftarrow p - \text{lr}\,\nabla/\sqrt{x+\epsilon}`.
    Defaults: lr 0.1, epsilon 1e-6, weight_decay 1e-5."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        "epsilon": positive,
        **_COMMON,
    }
    per_element_state = ("sum",)

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 0.1,
        epsilon: Any = 1e-6,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.00001,
        grad_scale: Any = 0.0,
        impl: str | None = None,
    ) -> None:
        super().__init__(
            params,
            impl,
            lr=lr,
            epsilon=epsilon,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ["sum"])
        self._pick(group, params, adagrad_loop, adagrad_foreach)(
            params,
            self._normalized(values, params),
            [s["sum"] for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            lr_decay=0.0,
            weight_decay=0.0,
            eps=values["epsilon"],
            maximize=False,
            eps_in_sqrt=True,
        )


class AdaDelta(_MXNetOptimizer):
    """MXNet.jl's AdaDelta (torch's formula). Defaults: lr 1.0, rho 0.95, epsilon 1e-6,
    weight_decay 1e-5."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        "rho": in_open_unit_interval,
        "epsilon": positive,
        **_COMMON,
    }
    per_element_state = ("x", "delta_x")

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 1.0,
        rho: Any = 0.95,
        epsilon: Any = 1e-6,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.00001,
        grad_scale: Any = 0.0,
        impl: str | None = None,
    ) -> None:
        super().__init__(
            params,
            impl,
            lr=lr,
            rho=rho,
            epsilon=epsilon,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ["x", "delta_x"])
        self._pick(group, params, adadelta_loop, adadelta_foreach)(
            params,
            self._normalized(values, params),
            [s["x"] for s in states],
            [s["delta_x"] for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            rho=values["rho"],
            eps=values["epsilon"],
            weight_decay=0.0,
            maximize=False,
        )


class AdaMax(_MXNetOptimizer):
    r"""MXNet.jl's AdaMax: :math:`u = \max(\beta_2 u, |\nabla|)`, :math:`p \leftarrow p -
    \frac{\text{lr}}{1-\beta_1^t} \frac{m}{u+\epsilon}`. Defaults: lr 2e-3, beta1 0.9,
    beta2 0.999, epsilon 1e-8, weight_decay 1e-5."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        "beta1": in_open_unit_interval,
        "beta2": in_open_unit_interval,
        "epsilon": positive,
        **_COMMON,
    }
    per_element_state = ("mt", "ut")

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 0.002,
        beta1: Any = 0.9,
        beta2: Any = 0.999,
        epsilon: Any = 1e-8,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.00001,
        grad_scale: Any = 0.0,
        impl: str | None = None,
    ) -> None:
        super().__init__(
            params,
            impl,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ["mt", "ut"])
        self._pick(group, params, adamax_loop, adamax_foreach)(
            params,
            self._normalized(values, params),
            [s["mt"] for s in states],
            [s["ut"] for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            beta1=values["beta1"],
            beta2=values["beta2"],
            eps=values["epsilon"],
            weight_decay=0.0,
            maximize=False,
            eps_in_denominator=True,
        )


class RMSProp(_MXNetOptimizer):
    r"""MXNet.jl's RMSProp: :math:`p \leftarrow p - \text{lr}\,\nabla/\sqrt{r+\epsilon}`.
    Defaults: lr 1e-3, rho 0.9, epsilon 1e-6, weight_decay 1e-5."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        "rho": in_open_unit_interval,
        "epsilon": positive,
        **_COMMON,
    }
    per_element_state = ("r",)

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 0.001,
        rho: Any = 0.9,
        epsilon: Any = 1e-6,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.00001,
        grad_scale: Any = 0.0,
        impl: str | None = None,
    ) -> None:
        super().__init__(
            params,
            impl,
            lr=lr,
            rho=rho,
            epsilon=epsilon,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ["r"])
        self._pick(group, params, rmsprop_loop, rmsprop_foreach)(
            params,
            self._normalized(values, params),
            [s["r"] for s in states],
            None,
            None,
            [s["step"] for s in states],
            lr=values["lr"],
            alpha=values["rho"],
            eps=values["epsilon"],
            weight_decay=0.0,
            momentum=0.0,
            maximize=False,
            eps_in_sqrt=True,
        )


class Nadam(_MXNetOptimizer):
    """MXNet.jl's Nadam, with ``momentum_scheduler`` a ``Momentum.NadamScheduler``
    (default ``NadamScheduler(mu=beta1)``, for a constant beta1). Defaults: lr 1e-3, beta1
    0.99, beta2 0.999, epsilon 1e-8, weight_decay 1e-5."""

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": positive,
        "beta1": in_open_unit_interval,
        "beta2": in_open_unit_interval,
        "epsilon": positive,
        **_COMMON,
    }
    per_element_state = ("mt", "nt")

    def __init__(
        self,
        params: Any,
        *,
        lr: Any = 0.001,
        beta1: Any = 0.99,
        beta2: Any = 0.999,
        epsilon: Any = 1e-8,
        grad_clip: Any = 0.0,
        weight_decay: Any = 0.00001,
        grad_scale: Any = 0.0,
        momentum_scheduler: NadamScheduler | None = None,
        impl: str | None = None,
    ) -> None:
        if momentum_scheduler is not None and not isinstance(momentum_scheduler, NadamScheduler):
            raise TypeError(
                f"momentum_scheduler must be a Momentum.NadamScheduler, got {momentum_scheduler!r}"
            )
        super().__init__(
            params,
            impl,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            grad_scale=grad_scale,
        )
        if momentum_scheduler is None:
            momentum_scheduler = NadamScheduler(mu=resolve("beta1", beta1, 0))
        self.momentum_scheduler = momentum_scheduler

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ["mt", "nt"])
        for state in states:
            if "mu_product" not in state:
                state["mu_product"] = torch.ones((), dtype=torch.float64)  # Julia: Float64
        schedule = self.momentum_scheduler
        self._pick(group, params, nadam_loop, nadam_foreach)(
            params,
            self._normalized(values, params),
            [s["mt"] for s in states],
            [s["nt"] for s in states],
            [s["mu_product"] for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            beta1=values["beta1"],
            beta2=values["beta2"],
            eps=values["epsilon"],
            weight_decay=0.0,
            momentum_decay=schedule.delta,
            maximize=False,
            decoupled_weight_decay=False,
            momentum_base=schedule.mu,
            momentum_gamma=schedule.gamma,
            momentum_alpha=schedule.alpha,
        )
