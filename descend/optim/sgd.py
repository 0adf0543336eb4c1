"""Stochastic gradient descent, with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host
from descend.hyperparams import Rule, any_real, is_step_sequence, nonnegative, resolve
from descend.optimizer import (
    Optimizer,
    Scalar,
    Values,
    as_real,
    foreach_add_scaled_,
    foreach_l2_grads,
    kernel_tensor,
    per_device_and_dtype,
)


def sgd_loop(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None] | None,
    *,
    lr: Scalar,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    lr_in_momentum: bool = False,
) -> None:
    r"""SGD, one tensor at a time (the reference). Updates ``params`` in place.

    ``momentum_buffers`` is None for plain SGD; otherwise its ``None`` entries are replaced
    by new buffers, which start as the first (decayed) gradient. ``lr`` may be a 0-d tensor.

    ``lr_in_momentum`` scales the gradient by ``lr`` before it enters the buffer,
    :math:`b = \mu b + (1-\tau)\,\text{lr}\, g`, :math:`p \leftarrow p - b` (MXNet.jl's
    :math:`\nu = \mu\nu - \eta\nabla`, :math:`W \leftarrow W + \nu`, with
    :math:`b = -\nu`), so a changed lr does not rescale the steps already in the buffer.
    """
    for i, param in enumerate(params):
        direction = -grads[i] if maximize else grads[i]
        if weight_decay != 0:
            if direction.is_sparse:  # sparse + dense is only defined the other way round
                direction = param.mul(weight_decay).add_(direction)
            else:
                direction = direction.add(param, alpha=weight_decay)
        if lr_in_momentum:
            direction = direction.mul(lr)
        if momentum_buffers is not None:
            buffer = momentum_buffers[i]
            if buffer is None:
                buffer = momentum_buffers[i] = direction.detach().clone()
            else:
                buffer.mul_(momentum).add_(direction, alpha=1 - dampening)
            direction = direction.add(buffer, alpha=momentum) if nesterov else buffer
        param.add_(direction, alpha=-1.0 if lr_in_momentum else -lr)


@per_device_and_dtype
def sgd_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None] | None,
    *,
    lr: Scalar,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    lr_in_momentum: bool = False,
) -> None:
    """SGD over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`sgd_loop`."""
    directions = foreach_l2_grads(grads, params, weight_decay, maximize)
    if lr_in_momentum:
        directions = torch._foreach_mul(directions, lr)
    if momentum_buffers is not None:
        existing = [i for i, b in enumerate(momentum_buffers) if b is not None]
        if existing:
            buffers = [momentum_buffers[i] for i in existing]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, [directions[i] for i in existing], alpha=1 - dampening)
        for i, buffer in enumerate(momentum_buffers):
            if buffer is None:
                momentum_buffers[i] = directions[i].detach().clone()
        if nesterov:
            directions = torch._foreach_add(directions, momentum_buffers, alpha=momentum)
        else:
            directions = momentum_buffers
    foreach_add_scaled_(params, directions, -1.0 if lr_in_momentum else -lr)


def sgd_kernel(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    c: Tensor,
    *,
    l2: bool,
    nesterov: bool,
) -> None:
    """SGD on one tensor in one pass (see :mod:`descend.compiled`), with the coefficients
    of :func:`sgd_coefficients`: the math of :func:`sgd_loop`.

    ``momentum_buffer`` is None for plain SGD. A buffer created for this step (zeros)
    takes the direction itself, as the loop's clone does, where the coefficient ``fresh``
    is nonzero.
    """
    sign, weight_decay, momentum, one_minus_dampening = c[0], c[1], c[2], c[3]
    fresh, step_size = c[4], c[5]
    direction = grad * sign
    if l2:
        direction = direction + param * weight_decay
    if momentum_buffer is not None:
        buffer = torch.where(
            fresh != 0,
            direction,
            momentum_buffer * momentum + direction * one_minus_dampening,
        )
        momentum_buffer.copy_(buffer)
        direction = direction + buffer * momentum if nesterov else buffer
    param.copy_(param + direction * step_size)


def sgd_coefficients(
    fresh: bool,
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    maximize: bool,
) -> tuple[float, ...]:
    """The coefficient row of :func:`sgd_kernel`; ``fresh`` for a momentum buffer created
    at this step (which starts as the direction)."""
    return (
        -1.0 if maximize else 1.0,
        weight_decay,
        momentum,
        1 - dampening,
        1.0 if fresh else 0.0,
        -lr,
    )


SGD_KERNEL = Kernel(sgd_kernel)


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum; a drop-in for torch's SGD.

    With gradient :math:`g_t` (negated when ``maximize``), weight decay :math:`\lambda`,
    momentum :math:`\mu` and dampening :math:`\tau`:

    .. math::
        d_t = g_t + \lambda p_{t-1}, \quad
        b_t = \mu b_{t-1} + (1 - \tau) d_t \;(b_1 = d_1), \quad
        p_t = p_{t-1} - \text{lr} \cdot (d_t + \mu b_t \text{ if nesterov else } b_t)

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 1e-3).
        momentum: momentum factor :math:`\mu` (default 0: no buffer is kept).
        dampening: dampening :math:`\tau` for the momentum (default 0).
        weight_decay: L2 penalty :math:`\lambda` added to the gradient (default 0).
        nesterov: Nesterov momentum; needs momentum > 0 and dampening 0.
        maximize: ascend the objective instead of descending it.
        foreach, fused, differentiable: torch.optim's keywords, translated to ``impl``.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor or flat buffer, see
            :mod:`descend.compiled`); None picks the fastest.

    Every number above except the flags may also be a schedule, a one-element tensor or
    a sequence of per-step values (see :mod:`descend.hyperparams`). Sparse gradients are
    supported (by the loop).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = SGD_KERNEL
    compile_tensor_by_tensor = False  # descend bench: the loop is as fast on large tensors

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "momentum": nonnegative,
        "dampening": any_real,
        "weight_decay": nonnegative,
    }
    flags = ("nesterov", "maximize")
    per_element_state = ("momentum_buffer",)
    sparse_grad = "accepted"
    tensor_options = frozenset({"lr"})

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        momentum: Any = 0,
        dampening: Any = 0,
        weight_decay: Any = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _check_values(self, values: Values, options: dict[str, Any], where: str) -> None:
        if options.get("nesterov") and (values["momentum"] <= 0 or values["dampening"] != 0):
            raise ValueError(
                f"{where}nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={values['momentum']!r} and dampening={values['dampening']!r}"
            )

    @staticmethod
    def _keeps_buffer(momentum: Any) -> bool:
        """Momentum buffers exist unless momentum is the constant 0, as in torch."""
        if is_step_sequence(momentum) or callable(momentum):
            return True
        return resolve("momentum", momentum, 0) != 0

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        impl = self._impl(group, params)
        if impl == "compiled":
            self._update_compiled(group, values, params)
            return
        buffers = None
        if self._keeps_buffer(group["momentum"]):
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            buffers = [None if b is None else as_real(b) for b in buffers]
        update = sgd_loop if impl == "loop" else sgd_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            buffers,
            lr=values["lr"],
            momentum=values["momentum"],
            dampening=values["dampening"],
            weight_decay=values["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )
        if buffers is not None:
            for param, buffer in zip(params, buffers):
                state = self.state[param]
                if state.get("momentum_buffer") is None:  # new, or None in old checkpoints
                    state["momentum_buffer"] = (
                        torch.view_as_complex(buffer) if param.is_complex() else buffer
                    )

    def _update_compiled(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        """The update with :func:`sgd_kernel`; new momentum buffers start as zeros that
        the kernel fills with the first direction, and join the state once it is done."""
        scalars = dict(
            lr=host(values["lr"]),
            momentum=host(values["momentum"]),
            dampening=host(values["dampening"]),
            weight_decay=host(values["weight_decay"]),
            maximize=group["maximize"],
        )
        buffers = None
        created: dict[int, Tensor] = {}  # new buffers, kept once the update is done
        if self._keeps_buffer(group["momentum"]):
            buffers = []
            for i, param in enumerate(params):
                buffer = self.state[param].get("momentum_buffer")
                if buffer is None:  # new, or None in old checkpoints
                    buffer = created[i] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
                buffers.append(kernel_tensor(buffer, param))
        SGD_KERNEL(
            [
                [kernel_tensor(p, p) for p in params],
                [kernel_tensor(p.grad, p) for p in params],
                buffers,
            ],
            [sgd_coefficients(i in created, **scalars) for i in range(len(params))],
            l2=scalars["weight_decay"] != 0,
            nesterov=buffers is not None and group["nesterov"],
        )
        for i, buffer in created.items():
            self.state[params[i]]["momentum_buffer"] = buffer
