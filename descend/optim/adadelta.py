"""Adadelta: steps scaled by the ratio of running RMS of past updates to that of gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host, step_rows
from descend.hyperparams import Rule, nonnegative
from descend.optimizer import (
    Optimizer,
    Scalar,
    Values,
    as_real,
    foreach_add_scaled_,
    foreach_l2_grads,
    kernel_tensors,
    per_device_and_dtype,
)


def in_closed_unit_interval(name: str, value: float) -> None:
    """A rule: the value must lie in ``[0, 1]`` (Adadelta's ``rho`` may be 1)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def adadelta_loop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adadelta, one tensor at a time (the reference). Updates params and state in place.

    ``steps`` holds each tensor's step count (0-d tensors), incremented here (Adadelta
    itself does not use it).
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        square_avgs[i].mul_(rho).addcmul_(grad, grad, value=1 - rho)
        grad_rms = square_avgs[i].add(eps).sqrt_()
        delta = acc_deltas[i].add(eps).sqrt_().div_(grad_rms).mul_(grad)
        acc_deltas[i].mul_(rho).addcmul_(delta, delta, value=1 - rho)
        param.add_(delta, alpha=-lr)


@per_device_and_dtype
def adadelta_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Adadelta over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`adadelta_loop`."""
    torch._foreach_add_(steps, 1)
    grads = foreach_l2_grads(grads, params, weight_decay, maximize)
    torch._foreach_mul_(square_avgs, rho)
    torch._foreach_addcmul_(square_avgs, grads, grads, 1 - rho)
    grad_rms = torch._foreach_add(square_avgs, eps)
    torch._foreach_sqrt_(grad_rms)
    deltas = torch._foreach_add(acc_deltas, eps)
    torch._foreach_sqrt_(deltas)
    torch._foreach_div_(deltas, grad_rms)
    torch._foreach_mul_(deltas, grads)
    torch._foreach_mul_(acc_deltas, rho)
    torch._foreach_addcmul_(acc_deltas, deltas, deltas, 1 - rho)
    foreach_add_scaled_(params, deltas, -lr)


def adadelta_kernel(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    acc_delta: Tensor,
    c: Tensor,
    *,
    l2: bool,
) -> None:
    """Adadelta on one tensor in one pass (see :mod:`descend.compiled`), with the
    coefficients of :func:`adadelta_coefficients`: the math of :func:`adadelta_loop`."""
    sign, weight_decay, rho, one_minus_rho, eps, neg_lr = c[0], c[1], c[2], c[3], c[4], c[5]
    grad = grad * sign
    if l2:
        grad = grad + weight_decay * param
    v = square_avg * rho + one_minus_rho * grad * grad
    grad_rms = (v + eps).sqrt()
    delta = (acc_delta + eps).sqrt() / grad_rms * grad
    u = acc_delta * rho + one_minus_rho * delta * delta
    param.copy_(param + neg_lr * delta)
    square_avg.copy_(v)
    acc_delta.copy_(u)


def adadelta_coefficients(
    *, lr: float, rho: float, eps: float, weight_decay: float, maximize: bool
) -> tuple[float, ...]:
    """The coefficient row of :func:`adadelta_kernel` (the same at every step)."""
    return (-1.0 if maximize else 1.0, weight_decay, rho, 1 - rho, eps, -lr)


ADADELTA_KERNEL = Kernel(adadelta_kernel)


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012); a drop-in for torch's Adadelta.

    With gradient :math:`g_t` (negated when ``maximize``), weight decay :math:`\lambda`
    and decay rate :math:`\rho`:

    .. math::
        g_t &\leftarrow g_t + \lambda p_{t-1}, \quad
        v_t = \rho v_{t-1} + (1 - \rho) g_t^2, \\
        \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t, \quad
        u_t = \rho u_{t-1} + (1 - \rho) \Delta_t^2, \quad
        p_t = p_{t-1} - \text{lr} \cdot \Delta_t

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: scale of the update :math:`\Delta_t` (default 1.0); may be a tensor.
        rho: decay rate :math:`\rho` of both running averages (default 0.9), in [0, 1].
        eps: added inside both square roots (default 1e-6).
        weight_decay: L2 penalty :math:`\lambda` added to the gradient (default 0).
        foreach, capturable, differentiable: torch.optim's keywords, translated to
            ``impl``; ``capturable`` has no effect.
        maximize: ascend the objective instead of descending it.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`). State per parameter: ``step``,
    ``square_avg`` (:math:`v`) and ``acc_delta`` (:math:`u`), as in torch.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = Adadelta(model.parameters(), rho=0.95)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = ADADELTA_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "rho": in_closed_unit_interval,
        "eps": nonnegative,
        "weight_decay": nonnegative,
    }
    flags = ("maximize",)
    per_element_state = ("square_avg", "acc_delta")
    tensor_options = frozenset({"lr"})

    def __init__(
        self,
        params: Any,
        lr: Any = 1.0,
        rho: Any = 0.9,
        eps: Any = 1e-6,
        weight_decay: Any = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            foreach=foreach,
            differentiable=differentiable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ("square_avg", "acc_delta"))
        impl = self._impl(group, params)
        if impl == "compiled":
            weight_decay = host(values["weight_decay"])
            row = adadelta_coefficients(
                lr=host(values["lr"]),
                rho=host(values["rho"]),
                eps=host(values["eps"]),
                weight_decay=weight_decay,
                maximize=group["maximize"],
            )
            ADADELTA_KERNEL(
                kernel_tensors(params, states, "square_avg", "acc_delta"),
                step_rows([s["step"] for s in states], row),
                advance=[s["step"] for s in states],
                l2=weight_decay != 0,
            )
            return
        update = adadelta_loop if impl == "loop" else adadelta_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["square_avg"]) for s in states],
            [as_real(s["acc_delta"]) for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            rho=values["rho"],
            eps=values["eps"],
            weight_decay=values["weight_decay"],
            maximize=group["maximize"],
        )
