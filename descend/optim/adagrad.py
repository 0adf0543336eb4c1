"""Adagrad: per-element step sizes from the running sum of squared gradients; sparse-ready."""

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
    foreach_addcdiv_,
    foreach_l2_grads,
    kernel_tensors,
    per_device_and_dtype,
    scalar_dtype,
    scalar_value,
)


def _real_unless(sparse: bool, tensor: Tensor) -> Tensor:
    """A real view of a dense complex tensor; tensors of sparse-gradient parameters as they
    are (their update indexes rows, which real views would not keep)."""
    return tensor if sparse else as_real(tensor)


def _refuse_sparse_weight_decay(grads: list[Tensor], weight_decay: float) -> None:
    if weight_decay != 0 and any(g.is_sparse for g in grads):
        raise RuntimeError(
            f"weight_decay={weight_decay!r} cannot be combined with sparse gradients: the "
            "decayed gradient would be dense; use weight_decay=0 for sparse parameters"
        )


def _sparse_adagrad_update(
    param: Tensor,
    grad: Tensor,
    total: Tensor,
    rate: Scalar,
    eps: float,
    update_sum: bool,
    eps_in_sqrt: bool,
) -> None:
    """Adagrad on the rows (or elements) a sparse COO gradient touches, in place."""
    grad = grad.coalesce()  # each touched position once: squaring is not additive
    where = tuple(grad.indices())
    values = grad.values()
    if update_sum:
        total.index_put_(where, values.square(), accumulate=True)
    scale = total[where].add_(eps).sqrt_() if eps_in_sqrt else total[where].sqrt_().add_(eps)
    param.index_put_(where, values.div(scale).mul_(-rate), accumulate=True)


def adagrad_loop(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    update_sum: bool = True,
    eps_in_sqrt: bool = False,
) -> None:
    r"""Adagrad, one tensor at a time (the reference). Updates params and state in place.

    ``steps`` holds each tensor's step count (0-d tensors), incremented here. Gradients may
    be sparse (COO), in which case only the positions they touch change; sparse gradients
    and a nonzero ``weight_decay`` are refused before anything changes.

    ``update_sum=False`` leaves the sums of squares as they are: they only scale the step
    (MindSpore's ``ApplyAdagrad(update_slots=False)``). ``eps_in_sqrt`` divides by
    :math:`\sqrt{s_t + \epsilon}` instead of :math:`\sqrt{s_t} + \epsilon` (SINGA, MXNet).
    """
    _refuse_sparse_weight_decay(grads, weight_decay)
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        rate = lr / (1 + (scalar_value(steps[i]) - 1) * lr_decay)
        if grad.is_sparse:
            _sparse_adagrad_update(param, grad, state_sums[i], rate, eps, update_sum, eps_in_sqrt)
            continue
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if update_sum:
            state_sums[i].addcmul_(grad, grad)
        total = state_sums[i]
        denom = total.add(eps).sqrt_() if eps_in_sqrt else total.sqrt().add_(eps)
        param.addcdiv_(grad, denom, value=-rate)


@per_device_and_dtype
def adagrad_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Scalar,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    update_sum: bool = True,
    eps_in_sqrt: bool = False,
) -> None:
    """Adagrad over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`adagrad_loop`, to which lists holding a sparse gradient are handed."""
    if any(g.is_sparse for g in grads):
        adagrad_loop(
            params,
            grads,
            state_sums,
            steps,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            update_sum=update_sum,
            eps_in_sqrt=eps_in_sqrt,
        )
        return
    torch._foreach_add_(steps, 1)
    rates = [-lr / (1 + (scalar_value(step) - 1) * lr_decay) for step in steps]
    grads = foreach_l2_grads(grads, params, weight_decay, maximize)
    if update_sum:
        torch._foreach_addcmul_(state_sums, grads, grads)
    if eps_in_sqrt:
        denoms = torch._foreach_add(state_sums, eps)
        torch._foreach_sqrt_(denoms)
    else:
        denoms = torch._foreach_sqrt(state_sums)
        torch._foreach_add_(denoms, eps)
    foreach_addcdiv_(params, grads, denoms, rates)


def adagrad_kernel(
    param: Tensor,
    grad: Tensor,
    state_sum: Tensor,
    c: Tensor,
    *,
    l2: bool,
) -> None:
    """Adagrad on one dense tensor in one pass (see :mod:`descend.compiled`), with the
    coefficients of :func:`adagrad_coefficients`: the math of :func:`adagrad_loop` (with
    ``update_sum`` and without ``eps_in_sqrt``)."""
    sign, weight_decay, eps, step_size = c[0], c[1], c[2], c[3]
    grad = grad * sign
    if l2:
        grad = grad + param * weight_decay
    total = state_sum + grad * grad
    param.copy_(param + step_size * (grad / (total.sqrt() + eps)))
    state_sum.copy_(total)


def adagrad_coefficients(
    step: float,
    *,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> tuple[float, ...]:
    """The coefficient row of :func:`adagrad_kernel` at ``step`` (counted from 1): the
    decayed learning rate is computed here, on the host."""
    return (
        -1.0 if maximize else 1.0,
        weight_decay,
        eps,
        -lr / (1 + (step - 1) * lr_decay),
    )


ADAGRAD_KERNEL = Kernel(adagrad_kernel)


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011); a drop-in for torch's Adagrad.

    With gradient :math:`g_t` (negated when ``maximize``), the tensor's step :math:`t`,
    weight decay :math:`\lambda`, lr decay :math:`\eta` and initial accumulator :math:`s_0`:

    .. math::
        g_t \leftarrow g_t + \lambda p_{t-1}, \quad
        s_t = s_{t-1} + g_t^2, \quad
        p_t = p_{t-1} - \frac{\text{lr}}{1 + (t - 1)\,\eta} \cdot
              \frac{g_t}{\sqrt{s_t} + \epsilon}

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 1e-2); may be a tensor.
        lr_decay: :math:`\eta`, the learning rate's decay with the step (default 0).
        weight_decay: L2 penalty :math:`\lambda` added to the gradient (default 0).
        initial_accumulator_value: :math:`s_0`, where the sum of squares starts (default 0).
        eps: added to the denominator (default 1e-10).
        foreach, fused, differentiable: torch.optim's keywords, translated to ``impl``.
        maximize: ascend the objective instead of descending it.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor or flat buffer, see
            :mod:`descend.compiled`); None picks the fastest. Sparse gradients always take the loop.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`). State per parameter: ``step`` and
    ``sum``, created at construction for the parameters given then, as torch does.
    Sparse gradients (``nn.Embedding(sparse=True)``) update only the rows they touch and
    need ``weight_decay=0``.

    Differences from torch, on purpose:

    - ``initial_accumulator_value`` set in a parameter group is used for that group's
      parameters (torch takes the constructor's value for every group).
    - A sparse gradient with nonzero ``weight_decay`` raises before any parameter changes
      (torch raises at that parameter, after updating the ones before it).
    - ``fused=True`` picks descend's fastest implementation, which also takes sparse and
      complex parameters (torch's fused kernel refuses them).

    Example:
        >>> embedding = torch.nn.Embedding(100, 8, sparse=True)
        >>> optimizer = Adagrad(embedding.parameters(), lr=0.1, lr_decay=1e-3)
        >>> embedding(torch.tensor([3, 7])).sum().backward()
        >>> optimizer.step()
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = ADAGRAD_KERNEL

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "lr_decay": nonnegative,
        "weight_decay": nonnegative,
        "initial_accumulator_value": nonnegative,
        "eps": nonnegative,
    }
    flags = ("maximize",)
    per_element_state = ("sum",)
    tensor_options = frozenset({"lr"})
    sparse_grad = "accepted"

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lr_decay: Any = 0,
        weight_decay: Any = 0,
        initial_accumulator_value: Any = 0,
        eps: Any = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
            impl=impl,
        )
        super().__init__(params, defaults)
        for index, group in enumerate(self.param_groups):
            start = self.hyperparameters(index)["initial_accumulator_value"]
            for param in group["params"]:
                self._init_state(param, start)

    def _init_state(self, param: Tensor, start: float) -> None:
        state = self.state[param]
        if "step" not in state:
            state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
        if "sum" not in state:
            fill = complex(start, start) if param.is_complex() else start
            state["sum"] = torch.full_like(param, fill, memory_format=torch.preserve_format)

    def share_memory(self) -> None:
        """Move every ``sum`` accumulator to shared memory (for Hogwild-style training)."""
        for group in self.param_groups:
            for param in group["params"]:
                if "sum" in self.state.get(param, {}):
                    self.state[param]["sum"].share_memory_()

    def _prepare(self, index: int, group: dict[str, Any]) -> tuple[dict, Values, list, list]:
        group, values, params, buffers = super()._prepare(index, group)
        sparse = [p for p in params if p.grad.is_sparse]
        if sparse and values["weight_decay"] != 0:
            raise RuntimeError(
                f"param group {index}: weight_decay={values['weight_decay']!r} cannot be combined "
                f"with sparse gradients; a parameter of shape {tuple(sparse[0].shape)} has "
                "one (use a separate parameter group with weight_decay=0)"
            )
        return group, values, params, buffers

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        for param in params:  # parameters of groups added after construction start here
            self._init_state(param, values["initial_accumulator_value"])
        states = [self.state[p] for p in params]
        impl = self._impl(group, params)
        if impl == "compiled":  # never with sparse gradients: those take the loop
            scalars = dict(
                lr=host(values["lr"]),
                lr_decay=host(values["lr_decay"]),
                weight_decay=host(values["weight_decay"]),
                eps=host(values["eps"]),
                maximize=group["maximize"],
            )
            ADAGRAD_KERNEL(
                kernel_tensors(params, states, "sum"),
                step_rows(
                    [state["step"] for state in states],
                    lambda t: adagrad_coefficients(t, **scalars),
                ),
                advance=[state["step"] for state in states],
                l2=scalars["weight_decay"] != 0,
            )
            return
        sparse = [p.grad.is_sparse for p in params]
        update = adagrad_loop if impl == "loop" else adagrad_foreach
        update(
            [_real_unless(s, p) for s, p in zip(sparse, params)],
            [_real_unless(s, p.grad) for s, p in zip(sparse, params)],
            [_real_unless(s, state["sum"]) for s, state in zip(sparse, states)],
            [state["step"] for state in states],
            lr=values["lr"],
            lr_decay=values["lr_decay"],
            weight_decay=values["weight_decay"],
            eps=values["eps"],
            maximize=group["maximize"],
        )
