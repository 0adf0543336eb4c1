"""NAdam: Adam with Nesterov momentum and a warming momentum schedule (optionally NAdamW)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host, step_counts
from descend.hyperparams import Rule, in_unit_interval, nonnegative
from descend.optimizer import (
    Optimizer,
    Scalar,
    as_real,
    foreach_addcdiv_,
    foreach_l2_grads,
    kernel_tensors,
    per_device_and_dtype,
    scalar_dtype,
    scalar_sqrt,
    scalar_value,
)


def _momentum_at(
    beta1: float,
    momentum_decay: float,
    step: Scalar,
    gamma: float = 0.5,
    alpha: float = 0.96,
) -> Scalar:
    """The momentum coefficient mu_t = beta1 * (1 - gamma * alpha ** (t * psi)) at step t
    (torch: gamma = 0.5, alpha = 0.96)."""
    return beta1 * (1.0 - gamma * (alpha ** (step * momentum_decay)))


def _advance_products(
    mu_products: list[Tensor],
    counts: list[Scalar],
    beta1: float,
    momentum_decay: float,
    gamma: float = 0.5,
    alpha: float = 0.96,
) -> tuple[list[Scalar], list[Scalar], list[Scalar]]:
    """Multiply each running product by its mu_t; return mu_t, mu_{t+1} and the products."""
    mus = [_momentum_at(beta1, momentum_decay, t, gamma, alpha) for t in counts]
    mu_nexts = [_momentum_at(beta1, momentum_decay, t + 1, gamma, alpha) for t in counts]
    # The products are 0-d, kept where torch keeps them (the host, unless loaded elsewhere).
    # One multi-tensor op, not product.mul_(mu) each: torch.compile (2.13) drops a 0-d
    # float64 input's own in-place ops from the graph, but keeps multi-tensor ones.
    torch._foreach_mul_(mu_products, mus)
    return mus, mu_nexts, [scalar_value(product) for product in mu_products]


def nadam_loop(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    momentum_base: float | None = None,
    momentum_gamma: float = 0.5,
    momentum_alpha: float = 0.96,
) -> None:
    r"""NAdam, one tensor at a time (the reference). Updates params and state in place.

    ``steps`` and ``mu_products`` hold each tensor's step count and running product of
    momentum coefficients (0-d tensors); both advance here.

    The momentum schedule is :math:`\mu_t = \mu_0 (1 - \gamma \alpha^{t\psi})` with
    :math:`\psi` = ``momentum_decay``; torch fixes :math:`\mu_0 = \beta_1`, :math:`\gamma =
    0.5`, :math:`\alpha = 0.96`. ``momentum_base`` (:math:`\mu_0`, None for ``beta1``),
    ``momentum_gamma`` and ``momentum_alpha`` change them (MXNet.jl's ``NadamScheduler``).
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        step = scalar_value(steps[i])
        if weight_decay != 0:
            if decoupled_weight_decay:
                param.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(param, alpha=weight_decay)
        (mu,), (mu_next,), (product,) = _advance_products(
            [mu_products[i]],
            [step],
            beta1 if momentum_base is None else momentum_base,
            momentum_decay,
            momentum_gamma,
            momentum_alpha,
        )
        exp_avgs[i].lerp_(grad, 1 - beta1)
        exp_avg_sqs[i].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sqs[i].sqrt().div_(scalar_sqrt(1 - beta2**step)).add_(eps)
        # Nesterov: the current gradient weighted by (1 - mu_t), the momentum by mu_{t+1}
        param.addcdiv_(grad, denom, value=-lr * (1 - mu) / (1 - product))
        param.addcdiv_(exp_avgs[i], denom, value=-lr * mu_next / (1 - product * mu_next))


@per_device_and_dtype
def nadam_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
    momentum_base: float | None = None,
    momentum_gamma: float = 0.5,
    momentum_alpha: float = 0.96,
) -> None:
    """NAdam over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`nadam_loop`."""
    torch._foreach_add_(steps, 1)
    counts = [scalar_value(step) for step in steps]
    if weight_decay != 0 and decoupled_weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    l2 = 0.0 if decoupled_weight_decay else weight_decay
    grads = foreach_l2_grads(grads, params, l2, maximize)
    mus, mu_nexts, products = _advance_products(
        mu_products,
        counts,
        beta1 if momentum_base is None else momentum_base,
        momentum_decay,
        momentum_gamma,
        momentum_alpha,
    )
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denoms = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denoms, [scalar_sqrt(1 - beta2**t) for t in counts])
    torch._foreach_add_(denoms, eps)
    grad_scales = [-lr * (1 - mu) / (1 - prod) for mu, prod in zip(mus, products)]
    avg_scales = [-lr * nxt / (1 - prod * nxt) for nxt, prod in zip(mu_nexts, products)]
    foreach_addcdiv_(params, grads, denoms, grad_scales)
    foreach_addcdiv_(params, exp_avgs, denoms, avg_scales)


def nadam_kernel(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    c: Tensor,
    *,
    l2: bool,
) -> None:
    """NAdam on one tensor in one pass (see :mod:`descend.compiled`), with the coefficients
    of :func:`nadam_coefficients`: the math of :func:`nadam_loop`."""
    sign, decay, weight_decay, one_minus_beta1 = c[0], c[1], c[2], c[3]
    beta2, one_minus_beta2, correction2 = c[4], c[5], c[6]
    eps, grad_scale, avg_scale = c[7], c[8], c[9]
    grad = grad * sign
    param_in = param * decay
    if l2:
        grad = grad + param_in * weight_decay
    m = exp_avg + (grad - exp_avg) * one_minus_beta1
    v = exp_avg_sq * beta2 + grad * grad * one_minus_beta2
    denom = v.sqrt() / correction2 + eps
    param.copy_(param_in + grad_scale * grad / denom + avg_scale * m / denom)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)


def nadam_coefficients(
    step: float,
    mu: float,
    mu_next: float,
    product: float,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> tuple[float, ...]:
    r"""The coefficient row of :func:`nadam_kernel` at ``step`` (counted from 1), with the
    momentum coefficients :math:`\mu_t`, :math:`\mu_{t+1}` and the running product
    :math:`P_t` of :func:`_advance_products`."""
    return (
        -1.0 if maximize else 1.0,
        1 - lr * weight_decay if decoupled_weight_decay else 1.0,
        weight_decay,
        1 - beta1,
        beta2,
        1 - beta2,
        math.sqrt(1 - beta2**step),
        eps,
        -lr * (1 - mu) / (1 - product),
        -lr * mu_next / (1 - product * mu_next),
    )


NADAM_KERNEL = Kernel(nadam_kernel)


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016): Adam with Nesterov momentum; a drop-in for torch's NAdam.

    With gradient :math:`g_t` (negated when ``maximize``), step :math:`t` and momentum
    decay :math:`\psi`, the momentum coefficient warms up as
    :math:`\mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi})`, and with
    :math:`P_t = \prod_{i \le t} \mu_i`:

    .. math::
        g_t &\leftarrow g_t + \lambda p_{t-1} \quad\text{(L2; or } p_{t-1} \leftarrow
              (1 - \text{lr}\,\lambda) p_{t-1} \text{ if decoupled)} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        p_t &= p_{t-1} - \text{lr} \cdot \Big(\frac{(1 - \mu_t)\, g_t}{1 - P_t}
              + \frac{\mu_{t+1} m_t}{1 - P_t \mu_{t+1}}\Big) \Big/
              \Big(\sqrt{v_t / (1 - \beta_2^t)} + \epsilon\Big)

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 2e-3); may be a tensor.
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)); each in [0, 1).
        eps: added to the denominator (default 1e-8).
        weight_decay: :math:`\lambda` (default 0), L2 unless ``decoupled_weight_decay``.
        momentum_decay: :math:`\psi`, how fast :math:`\mu_t` approaches :math:`\beta_1`
            (default 4e-3); >= 0.
        decoupled_weight_decay: shrink the parameters directly (NAdamW) instead of adding
            :math:`\lambda p` to the gradient.
        maximize: ascend the objective instead of descending it.
        foreach, capturable, differentiable: torch's keywords, translated to ``impl``;
            ``capturable`` has no effect.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`); a scheduled :math:`\beta_1` or
    :math:`\psi` enters :math:`\mu_t` at the step it is in force, as setting torch's group
    values by hand does. State per parameter, as in torch: ``step`` and ``mu_product``
    (0-d tensors of the default float dtype, on the host), ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = NAdam(model.parameters(), lr=2e-3, momentum_decay=4e-3)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()

    Paper: T. Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = NADAM_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "betas": (in_unit_interval, in_unit_interval),
        "eps": nonnegative,
        "weight_decay": nonnegative,
        "momentum_decay": nonnegative,
    }
    flags = ("decoupled_weight_decay", "maximize")
    per_element_state = ("exp_avg", "exp_avg_sq")
    tensor_options = frozenset({"lr"})

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: tuple[Any, Any] = (0.9, 0.999),
        eps: Any = 1e-8,
        weight_decay: Any = 0,
        momentum_decay: Any = 4e-3,
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
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for param_state in self.state.values():
            product = param_state.get("mu_product") if isinstance(param_state, dict) else None
            if product is not None and not isinstance(product, Tensor):
                # very old checkpoints kept a number; torch converts it on load too
                param_state["mu_product"] = torch.tensor(float(product), dtype=scalar_dtype())

    def _update(self, group: dict[str, Any], values: dict, params: list[Tensor]) -> None:
        states = self._lazy_state(params, ("exp_avg", "exp_avg_sq"))
        for state in states:
            if "mu_product" not in state:
                state["mu_product"] = torch.tensor(1.0, dtype=scalar_dtype())
        impl = self._impl(group, params)
        beta1, beta2 = values["betas"]
        if impl == "compiled":
            self._compiled_update(group, values, params, states)
            return
        update = nadam_loop if impl == "loop" else nadam_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["exp_avg"]) for s in states],
            [as_real(s["exp_avg_sq"]) for s in states],
            [s["mu_product"] for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=values["eps"],
            weight_decay=values["weight_decay"],
            momentum_decay=values["momentum_decay"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )

    def _compiled_update(
        self, group: dict[str, Any], values: dict, params: list[Tensor], states: list[dict]
    ) -> None:
        """``impl="compiled"``: the step counts and momentum products of this step are
        computed on the host as in :func:`nadam_loop`, :data:`NADAM_KERNEL` updates each
        tensor, and then the counts and products advance (so that a step that fails
        while compiling leaves them as they were)."""
        steps = [s["step"] for s in states]
        counts = step_counts(steps)
        beta1, beta2 = (host(beta) for beta in values["betas"])
        decay = host(values["momentum_decay"])
        mus = [_momentum_at(beta1, decay, t) for t in counts]
        mu_nexts = [_momentum_at(beta1, decay, t + 1) for t in counts]
        # the products as the loop's in-place multiply leaves them, in their own dtype
        new_products = torch._foreach_mul([s["mu_product"] for s in states], mus)
        products = [product.item() for product in new_products]
        scalars = dict(
            lr=host(values["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=host(values["eps"]),
            weight_decay=host(values["weight_decay"]),
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )
        NADAM_KERNEL(
            kernel_tensors(params, states, "exp_avg", "exp_avg_sq"),
            [
                nadam_coefficients(t, mu, nxt, prod, **scalars)
                for t, mu, nxt, prod in zip(counts, mus, mu_nexts, products)
            ],
            advance=steps,
            l2=scalars["weight_decay"] != 0 and not scalars["decoupled_weight_decay"],
        )
        torch._foreach_copy_([s["mu_product"] for s in states], new_products)
