"""Rprop: resilient backpropagation, per-element step sizes driven by gradient signs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host, step_rows
from descend.hyperparams import Rule, any_real, in_open_unit_interval, nonnegative, optional
from descend.optimizer import (
    Optimizer,
    Values,
    as_real,
    foreach_copy_,
    kernel_tensors,
    per_device_and_dtype,
    scalar_dtype,
)


def growth_factor(name: str, value: float) -> None:
    """A rule: the value must be greater than 1 (Rprop's etaplus)."""
    if not value > 1.0:
        raise ValueError(f"{name} must be > 1, got {value!r}")


def _factors(agreement: Tensor, etaminus: float, etaplus: float) -> Tensor:
    """Per element: etaplus where the gradient kept its sign, etaminus where it flipped,
    1 where either is zero or their product is NaN (whose ``sign`` is 0)."""
    signs = agreement.sign()
    return (
        signs.masked_fill(signs > 0, etaplus)
        .masked_fill_(signs < 0, etaminus)
        .masked_fill_(signs == 0, 1)
    )


def rprop_loop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    steps: list[Tensor],
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float | None,
    step_size_max: float | None,
    maximize: bool,
) -> None:
    """Rprop, one tensor at a time (the reference). Updates params and state in place.

    ``prevs`` holds the previous (sign-flip-zeroed) gradients, ``step_sizes`` the
    per-element step sizes; ``steps`` (0-d tensors) is incremented. A None bound of the
    step sizes is no bound.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        agreement = grad.mul(prevs[i])
        step_size = step_sizes[i]
        step_size.mul_(_factors(agreement, etaminus, etaplus))
        if step_size_min is not None or step_size_max is not None:
            step_size.clamp_(step_size_min, step_size_max)
        # where the sign flipped, skip this step and forget the gradient
        grad = grad.masked_fill(agreement < 0, 0)
        param.addcmul_(grad.sign(), step_size, value=-1)
        prevs[i].copy_(grad)


@per_device_and_dtype
def rprop_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    steps: list[Tensor],
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float | None,
    step_size_max: float | None,
    maximize: bool,
) -> None:
    """Rprop over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`rprop_loop`."""
    torch._foreach_add_(steps, 1)
    agreements = torch._foreach_mul(grads, prevs)
    if maximize:
        torch._foreach_neg_(agreements)
    torch._foreach_mul_(step_sizes, [_factors(a, etaminus, etaplus) for a in agreements])
    if step_size_min is not None:
        torch._foreach_clamp_min_(step_sizes, step_size_min)
    if step_size_max is not None:
        torch._foreach_clamp_max_(step_sizes, step_size_max)
    foreach_copy_(prevs, grads)
    if maximize:
        torch._foreach_neg_(prevs)
    for prev, agreement in zip(prevs, agreements):
        prev.masked_fill_(agreement < 0, 0)
    torch._foreach_addcmul_(params, torch._foreach_sign(prevs), step_sizes, value=-1)


def rprop_kernel(
    param: Tensor,
    grad: Tensor,
    prev: Tensor,
    step_size: Tensor,
    c: Tensor,
    *,
    clamp_min: bool,
    clamp_max: bool,
) -> None:
    """Rprop on one tensor in one pass (see :mod:`descend.compiled`), with the coefficients
    of :func:`rprop_coefficients`: the math of :func:`rprop_loop`, its factors chosen per
    element with ``torch.where`` (a NaN product, whose sign is 0, keeps the step size)."""
    sign, etaminus, etaplus, step_size_min, step_size_max = c[0], c[1], c[2], c[3], c[4]
    grad = grad * sign
    agreement = grad * prev
    size = torch.where(
        agreement > 0,
        step_size * etaplus,
        torch.where(agreement < 0, step_size * etaminus, step_size),
    )
    if clamp_min:
        size = torch.where(size < step_size_min, step_size_min.to(size.dtype), size)
    if clamp_max:
        size = torch.where(size > step_size_max, step_size_max.to(size.dtype), size)
    # where the sign flipped, skip this step and forget the gradient
    grad = torch.where(agreement < 0, 0, grad)
    param.copy_(param - grad.sign() * size)
    prev.copy_(grad)
    step_size.copy_(size)


def rprop_coefficients(
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float | None,
    step_size_max: float | None,
    maximize: bool,
) -> tuple[float, ...]:
    """The coefficient row of :func:`rprop_kernel` (the same at every step); a None bound
    is left to the kernel's flags and stands as 0 here."""
    return (
        -1.0 if maximize else 1.0,
        etaminus,
        etaplus,
        0.0 if step_size_min is None else step_size_min,
        0.0 if step_size_max is None else step_size_max,
    )


RPROP_KERNEL = Kernel(rprop_kernel)


class Rprop(Optimizer):
    r"""Rprop (Riedmiller & Braun, 1993): resilient backpropagation; a drop-in for torch's
    Rprop.

    Each element keeps its own step size :math:`s` (starting at ``lr``) and moves by
    :math:`s` against the sign of its gradient :math:`g_t` (negated when ``maximize``):

    .. math::
        s_t &= \operatorname{clip}\big(s_{t-1} \cdot \begin{cases}
              \eta_+ & g_t g_{t-1} > 0 \\ \eta_- & g_t g_{t-1} < 0 \\ 1 & \text{otherwise}
              \end{cases},\; s_{min},\; s_{max}\big) \\
        g_t &\leftarrow 0 \text{ where } g_t g_{t-1} < 0, \qquad
        p_t = p_{t-1} - s_t \operatorname{sign}(g_t)

    and :math:`g_t` (zeroed where the sign flipped) is remembered as ``prev``.

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: the initial step size (default 1e-2); may be a tensor.
        etas: :math:`(\eta_-, \eta_+)`, the factors that shrink and grow step sizes
            (default (0.5, 1.2)); :math:`0 < \eta_- < 1 < \eta_+`.
        step_sizes: :math:`(s_{min}, s_{max})`, the bounds of the step sizes
            (default (1e-6, 50)); any real numbers, as in torch.
        maximize: ascend the objective instead of descending it.
        capturable, foreach, differentiable: torch's keywords, translated to ``impl``;
            ``capturable`` has no effect.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`). As in torch, ``lr`` only sets a
    parameter's step sizes when its state is created, so a scheduled ``lr`` counts at
    that step only. State per parameter, as in torch: ``step`` (a 0-d tensor on the host),
    ``prev`` and ``step_size``.

    One difference from torch: a None bound in ``step_sizes`` means no bound, and
    ``(None, None)`` is accepted (torch refuses it at the first step).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = Rprop(model.parameters(), lr=0.01, etas=(0.5, 1.2))
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()

    Paper: M. Riedmiller and H. Braun, "A Direct Adaptive Method for Faster
    Backpropagation Learning: The RPROP Algorithm", IEEE ICNN 1993.
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = RPROP_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "etas": (in_open_unit_interval, growth_factor),
        "step_sizes": (optional(any_real), optional(any_real)),  # None: no bound
    }
    flags = ("maximize",)
    per_element_state = ("prev", "step_size")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        etas: tuple[Any, Any] = (0.5, 1.2),
        step_sizes: tuple[Any, Any] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            etas=etas,
            step_sizes=step_sizes,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _check_values(self, values: Values, options: dict[str, Any], where: str) -> None:
        etas = values.get("etas")
        if etas is not None and None in etas:
            raise TypeError(f"{where}etas must be two numbers, got {options['etas']!r}")

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        lr = values["lr"]
        for param in params:
            state = self.state[param]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=scalar_dtype())
            if "prev" not in state:
                state["prev"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if "step_size" not in state:
                start = complex(lr, lr) if param.is_complex() else lr
                state["step_size"] = torch.full_like(param.grad, start)
        states = [self.state[p] for p in params]
        impl = self._impl(group, params)
        etaminus, etaplus = values["etas"]
        step_size_min, step_size_max = values["step_sizes"]
        if impl == "compiled":
            step_size_min = None if step_size_min is None else host(step_size_min)
            step_size_max = None if step_size_max is None else host(step_size_max)
            row = rprop_coefficients(
                etaminus=host(etaminus),
                etaplus=host(etaplus),
                step_size_min=step_size_min,
                step_size_max=step_size_max,
                maximize=group["maximize"],
            )
            RPROP_KERNEL(
                kernel_tensors(params, states, "prev", "step_size"),
                step_rows([s["step"] for s in states], row),
                advance=[s["step"] for s in states],
                clamp_min=step_size_min is not None,
                clamp_max=step_size_max is not None,
            )
            return
        update = rprop_loop if impl == "loop" else rprop_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["prev"]) for s in states],
            [as_real(s["step_size"]) for s in states],
            [s["step"] for s in states],
            etaminus=etaminus,
            etaplus=etaplus,
            step_size_min=step_size_min,
            step_size_max=step_size_max,
            maximize=group["maximize"],
        )
