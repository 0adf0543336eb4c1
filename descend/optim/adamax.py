"""Adamax: Adam with the second moment replaced by an exponentially weighted infinity norm."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host, step_rows
from descend.hyperparams import Rule, in_unit_interval, nonnegative
from descend.optimizer import (
    Optimizer,
    Scalar,
    Values,
    as_real,
    foreach_addcdiv_,
    foreach_l2_grads,
    kernel_tensors,
    per_device_and_dtype,
    scalar_value,
)


def adamax_loop(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_infs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    eps_in_denominator: bool = False,
) -> None:
    r"""Adamax, one tensor at a time (the reference). Updates params and state in place.

    ``steps`` holds each tensor's step count (0-d tensors), incremented here.

    With ``eps_in_denominator`` (MindSpore's ``ApplyAdaMax``), ``eps`` is added to the
    denominator instead of to :math:`|g_t|` inside the maximum:
    :math:`u_t = \max(\beta_2 u_{t-1}, |g_t|)`, :math:`p \leftarrow p -
    \frac{\text{lr}}{1 - \beta_1^t} \frac{m_t}{u_t + \epsilon}`.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        exp_avgs[i].lerp_(grad, 1 - beta1)
        step_size = lr / (1 - beta1 ** scalar_value(steps[i]))
        if eps_in_denominator:
            torch.maximum(exp_infs[i].mul_(beta2), grad.abs(), out=exp_infs[i])
            param.addcdiv_(exp_avgs[i], exp_infs[i].add(eps), value=-step_size)
        else:
            # u_t = max(beta2 * u_{t-1}, |g_t| + eps), elementwise
            torch.maximum(exp_infs[i].mul_(beta2), grad.abs().add_(eps), out=exp_infs[i])
            param.addcdiv_(exp_avgs[i], exp_infs[i], value=-step_size)


@per_device_and_dtype
def adamax_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_infs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    eps_in_denominator: bool = False,
) -> None:
    """Adamax over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`adamax_loop`."""
    torch._foreach_add_(steps, 1)
    grads = foreach_l2_grads(grads, params, weight_decay, maximize)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_infs, beta2)
    magnitudes = torch._foreach_abs(grads)
    if not eps_in_denominator:
        torch._foreach_add_(magnitudes, eps)
    torch._foreach_maximum_(exp_infs, magnitudes)
    denoms = torch._foreach_add(exp_infs, eps) if eps_in_denominator else exp_infs
    step_sizes = [-lr / (1 - beta1 ** scalar_value(step)) for step in steps]
    foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)


def adamax_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_inf: Tensor,
    c: Tensor,
    *,
    l2: bool,
) -> None:
    """Adamax on one tensor in one pass (see :mod:`descend.compiled`), with the
    coefficients of :func:`adamax_coefficients`: the math of :func:`adamax_loop`.

    ``eps`` is added to :math:`|g_t|` inside the maximum and ``denominator_eps`` to the
    denominator: one of them is 0, which adds nothing."""
    sign, weight_decay, one_minus_beta1, beta2 = c[0], c[1], c[2], c[3]
    eps, denominator_eps, step_size = c[4], c[5], c[6]
    grad = grad * sign
    if l2:
        grad = grad + param * weight_decay
    m = exp_avg + (grad - exp_avg) * one_minus_beta1
    u = torch.maximum(exp_inf * beta2, grad.abs() + eps)
    param.copy_(param + step_size * (m / (u + denominator_eps)))
    exp_avg.copy_(m)
    exp_inf.copy_(u)


def adamax_coefficients(
    step: float,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    eps_in_denominator: bool = False,
) -> tuple[float, ...]:
    """The coefficient row of :func:`adamax_kernel` at ``step`` (counted from 1)."""
    return (
        -1.0 if maximize else 1.0,
        weight_decay,
        1 - beta1,
        beta2,
        0.0 if eps_in_denominator else eps,
        eps if eps_in_denominator else 0.0,
        -lr / (1 - beta1**step),
    )


ADAMAX_KERNEL = Kernel(adamax_kernel)


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7.1); a drop-in for torch's Adamax.

    With gradient :math:`g_t` (negated when ``maximize``), weight decay :math:`\lambda`
    and step :math:`t`:

    .. math::
        g_t &\leftarrow g_t + \lambda p_{t-1}, \quad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \\
        p_t &= p_{t-1} - \frac{\text{lr}}{1 - \beta_1^t} \cdot \frac{m_t}{u_t}

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 2e-3); may be a tensor.
        betas: decay rates :math:`(\beta_1, \beta_2)` of the first moment and of the
            infinity norm (default (0.9, 0.999)); each in [0, 1).
        eps: added to :math:`|g_t|` (default 1e-8).
        weight_decay: L2 penalty :math:`\lambda` added to the gradient (default 0).
        foreach, capturable, differentiable: torch.optim's keywords, translated to
            ``impl``; ``capturable`` has no effect.
        maximize: ascend the objective instead of descending it.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor or flat buffer, see
            :mod:`descend.compiled`); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`). State per parameter: ``step``,
    ``exp_avg`` (:math:`m`) and ``exp_inf`` (:math:`u`), as in torch.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = Adamax(model.parameters(), lr=2e-3, betas=(0.9, 0.99))
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = ADAMAX_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "betas": (in_unit_interval, in_unit_interval),
        "eps": nonnegative,
        "weight_decay": nonnegative,
    }
    flags = ("maximize",)
    per_element_state = ("exp_avg", "exp_inf")
    tensor_options = frozenset({"lr"})

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: Any = 1e-8,
        weight_decay: Any = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ("exp_avg", "exp_inf"))
        impl = self._impl(group, params)
        beta1, beta2 = values["betas"]
        if impl == "compiled":
            scalars = dict(
                lr=host(values["lr"]),
                beta1=host(beta1),
                beta2=host(beta2),
                eps=host(values["eps"]),
                weight_decay=host(values["weight_decay"]),
                maximize=group["maximize"],
            )
            ADAMAX_KERNEL(
                kernel_tensors(params, states, "exp_avg", "exp_inf"),
                step_rows([s["step"] for s in states], lambda t: adamax_coefficients(t, **scalars)),
                advance=[s["step"] for s in states],
                l2=scalars["weight_decay"] != 0,
            )
            return
        update = adamax_loop if impl == "loop" else adamax_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["exp_avg"]) for s in states],
            [as_real(s["exp_inf"]) for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=values["eps"],
            weight_decay=values["weight_decay"],
            maximize=group["maximize"],
        )
