"""RMSprop: gradients divided by a running RMS, optionally centered and with momentum."""

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
    foreach_addcdiv_,
    foreach_l2_grads,
    kernel_tensors,
    per_device_and_dtype,
)


def rmsprop_loop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor] | None,
    momentum_buffers: list[Tensor] | None,
    steps: list[Tensor],
    *,
    lr: Scalar,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    maximize: bool,
    eps_in_sqrt: bool = False,
    lr_in_momentum: bool = False,
) -> None:
    r"""RMSprop, one tensor at a time (the reference). Updates params and state in place.

    ``grad_avgs`` is given for the centered variant and None otherwise;
    ``momentum_buffers`` is given when ``momentum > 0`` and None otherwise. ``steps``
    holds each tensor's step count (0-d tensors), incremented here.

    ``eps_in_sqrt`` divides by :math:`\sqrt{v + \epsilon}` instead of
    :math:`\sqrt{v} + \epsilon`; ``lr_in_momentum`` accumulates the scaled step
    :math:`b = \mu b + \text{lr}\, g / d` and subtracts :math:`b` (MindSpore's
    ``ApplyRMSProp``), so that a changed lr does not rescale the steps already in the
    buffer.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        square_avgs[i].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if grad_avgs is not None:
            grad_avgs[i].lerp_(grad, 1 - alpha)
            # the running variance: E[g^2] - E[g]^2
            variance = square_avgs[i].addcmul(grad_avgs[i], grad_avgs[i], value=-1)
            denom = variance.add_(eps).sqrt_() if eps_in_sqrt else variance.sqrt_().add_(eps)
        elif eps_in_sqrt:
            denom = square_avgs[i].add(eps).sqrt_()
        else:
            denom = square_avgs[i].sqrt().add_(eps)
        if momentum_buffers is not None and lr_in_momentum:
            momentum_buffers[i].mul_(momentum).addcdiv_(grad, denom, value=lr)
            param.sub_(momentum_buffers[i])
        elif momentum_buffers is not None:
            momentum_buffers[i].mul_(momentum).addcdiv_(grad, denom)
            param.add_(momentum_buffers[i], alpha=-lr)
        else:
            param.addcdiv_(grad, denom, value=-lr)


@per_device_and_dtype
def rmsprop_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor] | None,
    momentum_buffers: list[Tensor] | None,
    steps: list[Tensor],
    *,
    lr: Scalar,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    maximize: bool,
    eps_in_sqrt: bool = False,
    lr_in_momentum: bool = False,
) -> None:
    """RMSprop over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`rmsprop_loop`."""
    torch._foreach_add_(steps, 1)
    grads = foreach_l2_grads(grads, params, weight_decay, maximize)
    torch._foreach_mul_(square_avgs, alpha)
    torch._foreach_addcmul_(square_avgs, grads, grads, 1 - alpha)
    if grad_avgs is not None:
        torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)
        denoms = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, -1)
        if eps_in_sqrt:
            torch._foreach_add_(denoms, eps)
            torch._foreach_sqrt_(denoms)
        else:
            torch._foreach_sqrt_(denoms)
            torch._foreach_add_(denoms, eps)
    elif eps_in_sqrt:
        denoms = torch._foreach_add(square_avgs, eps)
        torch._foreach_sqrt_(denoms)
    else:
        denoms = torch._foreach_sqrt(square_avgs)
        torch._foreach_add_(denoms, eps)
    if momentum_buffers is not None and lr_in_momentum:
        torch._foreach_mul_(momentum_buffers, momentum)
        foreach_addcdiv_(momentum_buffers, grads, denoms, lr)
        torch._foreach_sub_(params, momentum_buffers)
    elif momentum_buffers is not None:
        torch._foreach_mul_(momentum_buffers, momentum)
        torch._foreach_addcdiv_(momentum_buffers, grads, denoms)
        foreach_add_scaled_(params, momentum_buffers, -lr)
    else:
        foreach_addcdiv_(params, grads, denoms, -lr)


def rmsprop_kernel(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor | None,
    momentum_buffer: Tensor | None,
    c: Tensor,
    *,
    l2: bool,
) -> None:
    """RMSprop on one tensor in one pass (see :mod:`descend.compiled`), with the
    coefficients of :func:`rmsprop_coefficients`: the math of :func:`rmsprop_loop` (torch's
    RMSprop). ``grad_avg`` is given when centered, ``momentum_buffer`` with momentum."""
    sign, weight_decay, alpha, one_minus_alpha = c[0], c[1], c[2], c[3]
    eps, momentum, step_size = c[4], c[5], c[6]
    grad = grad * sign
    if l2:
        grad = grad + param * weight_decay
    v = square_avg * alpha + grad * grad * one_minus_alpha
    if grad_avg is not None:
        mean = grad_avg + (grad - grad_avg) * one_minus_alpha
        denom = (v - mean * mean).sqrt() + eps
        grad_avg.copy_(mean)
    else:
        denom = v.sqrt() + eps
    if momentum_buffer is not None:
        buf = momentum_buffer * momentum + grad / denom
        param.copy_(param + step_size * buf)
        momentum_buffer.copy_(buf)
    else:
        param.copy_(param + step_size * grad / denom)
    square_avg.copy_(v)


def rmsprop_coefficients(
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    maximize: bool,
) -> tuple[float, ...]:
    """The coefficient row of :func:`rmsprop_kernel` (the same at every step)."""
    return (-1.0 if maximize else 1.0, weight_decay, alpha, 1 - alpha, eps, momentum, -lr)


RMSPROP_KERNEL = Kernel(rmsprop_kernel)


class RMSprop(Optimizer):
    r"""RMSprop (Tieleman & Hinton, 2012), centered as in Graves (2013); a drop-in
    for torch's RMSprop.

    With gradient :math:`g_t` (negated when ``maximize``), weight decay :math:`\lambda`,
    smoothing :math:`\alpha` and momentum :math:`\mu`:

    .. math::
        g_t &\leftarrow g_t + \lambda p_{t-1}, \quad
        v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t \text{ (centered)}, \\
        d_t &= \frac{g_t}{\sqrt{v_t - \bar g_t^2} + \epsilon}
              \;\Big(\frac{g_t}{\sqrt{v_t} + \epsilon} \text{ if not centered}\Big), \quad
        b_t = \mu b_{t-1} + d_t, \quad
        p_t = p_{t-1} - \text{lr} \cdot (b_t \text{ if } \mu > 0 \text{ else } d_t)

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 1e-2); may be a tensor.
        alpha: smoothing constant :math:`\alpha` of the running averages (default 0.99);
            any value >= 0, as torch allows.
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty :math:`\lambda` added to the gradient (default 0).
        momentum: momentum factor :math:`\mu` (default 0: no buffer is kept).
        centered: divide by the running variance of the gradient instead of its
            running second moment (Graves, 2013).
        capturable, foreach, differentiable: torch.optim's keywords, translated to
            ``impl``; ``capturable`` has no effect.
        maximize: ascend the objective instead of descending it.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`). State per parameter, as in torch:
    ``step`` and ``square_avg``; ``momentum_buffer`` if momentum is above 0 at the
    parameter's first step; ``grad_avg`` if centered then.

    Differences from torch, on purpose:

    - Momentum (or ``centered``) switched on after a parameter's first step starts its
      buffer (``grad_avg``) at zero, where torch raises ``KeyError``.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = RMSprop(model.parameters(), lr=1e-3, momentum=0.9, centered=True)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = RMSPROP_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "alpha": nonnegative,
        "eps": nonnegative,
        "weight_decay": nonnegative,
        "momentum": nonnegative,
    }
    flags = ("centered", "maximize")
    per_element_state = ("square_avg", "momentum_buffer", "grad_avg")
    tensor_options = frozenset({"lr"})

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        alpha: Any = 0.99,
        eps: Any = 1e-8,
        weight_decay: Any = 0,
        momentum: Any = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        with_momentum = values["momentum"] > 0
        centered = group["centered"]
        needed = ["square_avg"]
        needed += ["momentum_buffer"] if with_momentum else []
        needed += ["grad_avg"] if centered else []
        states = self._lazy_state(params, needed)
        impl = self._impl(group, params)
        if impl == "compiled":
            row = rmsprop_coefficients(
                lr=host(values["lr"]),
                alpha=host(values["alpha"]),
                eps=host(values["eps"]),
                weight_decay=host(values["weight_decay"]),
                momentum=host(values["momentum"]),
                maximize=group["maximize"],
            )
            RMSPROP_KERNEL(
                kernel_tensors(
                    params,
                    states,
                    "square_avg",
                    "grad_avg" if centered else None,
                    "momentum_buffer" if with_momentum else None,
                ),
                step_rows([s["step"] for s in states], row),
                advance=[s["step"] for s in states],
                l2=row[1] != 0,
            )
            return
        update = rmsprop_loop if impl == "loop" else rmsprop_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["square_avg"]) for s in states],
            [as_real(s["grad_avg"]) for s in states] if centered else None,
            [as_real(s["momentum_buffer"]) for s in states] if with_momentum else None,
            [s["step"] for s in states],
            lr=values["lr"],
            alpha=values["alpha"],
            eps=values["eps"],
            weight_decay=values["weight_decay"],
            momentum=values["momentum"],
            maximize=group["maximize"],
        )
