"""RAdam: Adam whose adaptive step is rectified by the variance of its second moment."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host, step_counts
from descend.hyperparams import Rule, in_unit_interval, nonnegative
from descend.optimizer import (
    Optimizer,
    as_real,
    foreach_l2_grads,
    kernel_tensors,
    per_device_and_dtype,
)

RECTIFY_ABOVE = 5.0
"""The adaptive step is used once the approximated SMA length exceeds this (as torch)."""


def rectification(beta2: float, step: float) -> float | None:
    """The variance rectification term r_t at ``step``, or None while the approximated
    simple-moving-average length rho_t is at most :data:`RECTIFY_ABOVE` (the adaptive
    step is then skipped and the update is plain bias-corrected momentum)."""
    rho_inf = 2 / (1 - beta2) - 1
    decay = beta2**step
    rho = rho_inf - 2 * step * decay / (1 - decay)
    if not rho > RECTIFY_ABOVE:
        return None
    return ((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) ** 0.5


def radam_loop(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """RAdam, one tensor at a time (the reference). Updates params and state in place;
    ``steps`` holds each tensor's step count (0-d tensors), incremented here."""
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        step = steps[i].item()
        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)
        exp_avgs[i].lerp_(grad, 1 - beta1)
        exp_avg_sqs[i].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        momentum_scale = lr / (1 - beta1**step)
        rect = rectification(beta2, step)
        if rect is None:
            param.add_(exp_avgs[i], alpha=-momentum_scale)
        else:
            denom = exp_avg_sqs[i].sqrt().add_(eps)
            scale = momentum_scale * rect * math.sqrt(1 - beta2**step)
            param.addcdiv_(exp_avgs[i], denom, value=-scale)


@per_device_and_dtype
def radam_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """RAdam over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`radam_loop`. Tensors whose step is rectified and those whose step is not are
    updated in two batches."""
    torch._foreach_add_(steps, 1)
    counts = [step.item() for step in steps]
    if weight_decay != 0 and decoupled_weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    l2 = 0.0 if decoupled_weight_decay else weight_decay
    grads = foreach_l2_grads(grads, params, l2, maximize)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    adaptive, plain = [], []
    for i, t in enumerate(counts):
        momentum_scale = lr / (1 - beta1**t)
        rect = rectification(beta2, t)
        if rect is None:
            plain.append((i, -momentum_scale))
        else:
            adaptive.append((i, -momentum_scale * rect * math.sqrt(1 - beta2**t)))
    if plain:
        steps_taken = torch._foreach_mul([exp_avgs[i] for i, _ in plain], [s for _, s in plain])
        torch._foreach_add_([params[i] for i, _ in plain], steps_taken)
    if adaptive:
        denoms = torch._foreach_sqrt([exp_avg_sqs[i] for i, _ in adaptive])
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(
            [params[i] for i, _ in adaptive],
            [exp_avgs[i] for i, _ in adaptive],
            denoms,
            [s for _, s in adaptive],
        )


def radam_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    c: Tensor,
    *,
    l2: bool,
    rectified: bool,
) -> None:
    """RAdam on one tensor in one pass (see :mod:`descend.compiled`), with the coefficients
    of :func:`radam_coefficients`: the math of :func:`radam_loop`. ``rectified`` (decided
    on the host from the step) takes the adaptive step, else plain momentum."""
    sign, decay, weight_decay, one_minus_beta1 = c[0], c[1], c[2], c[3]
    beta2, one_minus_beta2, eps, step_size = c[4], c[5], c[6], c[7]
    grad = grad * sign
    param_in = param * decay
    if l2:
        grad = grad + param_in * weight_decay
    m = exp_avg + (grad - exp_avg) * one_minus_beta1
    v = exp_avg_sq * beta2 + grad * grad * one_minus_beta2
    if rectified:
        param.copy_(param_in + step_size * m / (v.sqrt() + eps))
    else:
        param.copy_(param_in + step_size * m)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)


def radam_coefficients(
    step: float,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> tuple[float, ...]:
    """The coefficient row of :func:`radam_kernel` at ``step`` (counted from 1); the
    kernel's ``rectified`` is whether :func:`rectification` is not None at that step."""
    momentum_scale = lr / (1 - beta1**step)
    rect = rectification(beta2, step)
    if rect is None:
        step_size = -momentum_scale
    else:
        step_size = -(momentum_scale * rect * math.sqrt(1 - beta2**step))
    return (
        -1.0 if maximize else 1.0,
        1 - lr * weight_decay if decoupled_weight_decay else 1.0,
        weight_decay,
        1 - beta1,
        beta2,
        1 - beta2,
        eps,
        step_size,
    )


RADAM_KERNEL = Kernel(radam_kernel)


class RAdam(Optimizer):
    r"""RAdam (Liu et al., 2020): rectified Adam; a drop-in for torch's RAdam.

    With gradient :math:`g_t` (negated when ``maximize``), step :math:`t`,
    :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::
        g_t &\leftarrow g_t + \lambda p_{t-1} \quad\text{(L2; or } p_{t-1} \leftarrow
              (1 - \text{lr}\,\lambda) p_{t-1} \text{ if decoupled)} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        \hat m_t = m_t / (1 - \beta_1^t) \\
        p_t &= p_{t-1} - \text{lr}\,\hat m_t \cdot \begin{cases}
              r_t \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
              1 & \text{otherwise} \end{cases}, \quad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
              {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 1e-3); may be a tensor.
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)); each in [0, 1).
        eps: added to the denominator (default 1e-8).
        weight_decay: :math:`\lambda` (default 0), L2 unless ``decoupled_weight_decay``.
        decoupled_weight_decay: shrink the parameters directly (as AdamW does) instead of
            adding :math:`\lambda p` to the gradient.
        maximize: ascend the objective instead of descending it.
        foreach, capturable, differentiable: torch's keywords, translated to ``impl``;
            ``capturable`` has no effect.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`); :math:`\rho_t` uses the
    :math:`\beta_2` in force at step :math:`t`. State per parameter, as in torch: ``step``
    (a 0-d tensor on the host), ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = RAdam(model.parameters(), lr=1e-3)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()

    Paper: L. Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020.
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = RADAM_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "betas": (in_unit_interval, in_unit_interval),
        "eps": nonnegative,
        "weight_decay": nonnegative,
    }
    flags = ("decoupled_weight_decay", "maximize")
    per_element_state = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: Any = 1e-8,
        weight_decay: Any = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], values: dict, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ("exp_avg", "exp_avg_sq"))
        impl = self._impl(group, params)
        beta1, beta2 = values["betas"]
        if impl == "compiled":
            self._compiled_update(group, values, params, states)
            return
        update = radam_loop if impl == "loop" else radam_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["exp_avg"]) for s in states],
            [as_real(s["exp_avg_sq"]) for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=values["eps"],
            weight_decay=values["weight_decay"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )

    def _compiled_update(
        self, group: dict[str, Any], values: dict, params: list[Tensor], states: list[dict]
    ) -> None:
        """``impl="compiled"``: :data:`RADAM_KERNEL` on the tensors whose step is rectified
        and, separately, on those whose step is not (the steps are counted on the host as
        in :func:`radam_loop`, and advance once each call is done)."""
        steps = [s["step"] for s in states]
        counts = step_counts(steps)
        beta1, beta2 = (host(beta) for beta in values["betas"])
        scalars = dict(
            lr=host(values["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=host(values["eps"]),
            weight_decay=host(values["weight_decay"]),
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )
        l2 = scalars["weight_decay"] != 0 and not scalars["decoupled_weight_decay"]
        rows: dict[float, tuple[float, ...]] = {}
        batches: dict[bool, list[int]] = {}
        for i, t in enumerate(counts):
            if t not in rows:
                rows[t] = radam_coefficients(t, **scalars)
            batches.setdefault(rectification(beta2, t) is not None, []).append(i)
        for rectified, indices in batches.items():
            RADAM_KERNEL(
                kernel_tensors(
                    [params[i] for i in indices],
                    [states[i] for i in indices],
                    "exp_avg",
                    "exp_avg_sq",
                ),
                [rows[counts[i]] for i in indices],
                advance=[steps[i] for i in indices],
                l2=l2,
                rectified=rectified,
            )
