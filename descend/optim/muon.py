"""Muon: momentum orthogonalized by a Newton-Schulz iteration, for 2-D parameters."""

from __future__ import annotations

import math
import operator
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.hyperparams import Rule, any_real, nonnegative
from descend.optimizer import Optimizer, Values, is_dtensor, per_device_and_dtype

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
MAX_NS_STEPS = 99  # torch refuses 100 or more Newton-Schulz steps


def _in_bfloat16_range(name: str, value: float) -> None:
    """A rule: a real number that bfloat16, the dtype of the iteration, can hold."""
    any_real(name, value)
    if abs(value) > torch.finfo(torch.bfloat16).max:
        raise ValueError(
            f"{name} must be within bfloat16's range (the Newton-Schulz iteration's dtype), "
            f"got {value!r}"
        )


def newton_schulz(
    matrix: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> Tensor:
    """An approximately orthogonal matrix with the singular vectors of ``matrix``, in bfloat16.

    ``matrix`` (2-D) is scaled to Frobenius norm at most 1 (dividing by its norm, floored
    at ``eps``), then ``steps`` times mapped by the odd quintic
    :math:`X \\mapsto aX + (bA + cA^2)X` with :math:`A = XX^\\top`, which pushes every
    singular value towards an interval around 1. The work is on the wide orientation
    (rows <= columns), so that :math:`A` is the smaller Gram matrix, and in bfloat16, as in
    torch; each operation matches torch's so that the result is bitwise the same.
    """
    a, b, c = coefficients
    tall = matrix.size(0) > matrix.size(1)
    x = matrix.to(torch.bfloat16)
    if tall:
        x = x.mT
    x = x / x.norm().clamp(min=eps)  # out of place: ``x`` may alias ``matrix``
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.addmm(x, polynomial, x, beta=a)  # a X + (b A + c A^2) X
    return x.mT if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """The learning rate for a ``rows x cols`` matrix: ``lr * sqrt(max(1, rows / cols))``
    ("original", Keller Jordan's, the default) or ``lr * 0.2 * sqrt(max(rows, cols))``
    ("match_rms_adamw", Moonshot's, for an update RMS like AdamW's)."""
    rows, cols = shape[0], shape[1]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * (0.2 * math.sqrt(max(rows, cols)))
    return lr * math.sqrt(max(1, rows / cols))


def muon_loop(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: tuple[float, float, float],
    ns_steps: int,
    eps: float,
    adjust_lr_fn: str | None,
) -> None:
    """Muon, one matrix at a time (the reference). Updates params and buffers in place."""
    for param, grad, buffer in zip(params, grads, momentum_buffers):
        buffer.lerp_(grad, 1 - momentum)
        direction = grad.lerp(buffer, momentum) if nesterov else buffer
        orthogonal = newton_schulz(direction, ns_coefficients, ns_steps, eps)
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        param.add_(orthogonal, alpha=-adjusted_lr(lr, adjust_lr_fn, param.shape))


def _scale_(tensors: list[Tensor], factor: float) -> None:
    """Multiply every tensor by ``factor`` in place, with ``factor`` at full precision."""
    if tensors[0].device.type == "cpu" and tensors[0].element_size() < 4:
        # on CPU, torch._foreach_mul_ rounds a scalar to the tensors' dtype first (in
        # bfloat16, 1 - 1e-3 becomes 1.0), where Tensor.mul_ does not
        for tensor in tensors:
            tensor.mul_(factor)
    else:
        torch._foreach_mul_(tensors, factor)


@per_device_and_dtype
def muon_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients: tuple[float, float, float],
    ns_steps: int,
    eps: float,
    adjust_lr_fn: str | None,
) -> None:
    """Muon with the elementwise work (momentum, Nesterov, weight decay, the step) done by
    ``torch._foreach_*`` ops over all matrices; the Newton-Schulz iteration, a chain of
    matrix products, runs per matrix. Same contract as :func:`muon_loop`."""
    torch._foreach_lerp_(momentum_buffers, grads, 1 - momentum)
    if nesterov:
        directions = torch._foreach_lerp(grads, momentum_buffers, momentum)
    else:
        directions = momentum_buffers
    # the bfloat16 result widened exactly (float16 cannot hold it all: it gets float32), then
    # one add per distinct learning rate (one per shape class), rounding once as the loop does
    steps = [
        newton_schulz(m, ns_coefficients, ns_steps, eps).to(
            torch.promote_types(p.dtype, torch.bfloat16)
        )
        for m, p in zip(directions, params)
    ]
    by_lr: dict[float, list[int]] = {}
    for i, param in enumerate(params):
        by_lr.setdefault(adjusted_lr(lr, adjust_lr_fn, param.shape), []).append(i)
    if weight_decay != 0:
        _scale_(params, 1 - lr * weight_decay)
    for step_lr, indices in by_lr.items():
        torch._foreach_add_(
            [params[i] for i in indices], [steps[i] for i in indices], alpha=-step_lr
        )


class Muon(Optimizer):
    r"""Muon (Jordan et al., 2024) for 2-D parameters; torch's Muon drop-in.

    With gradient :math:`G_t`, momentum :math:`\mu` and the buffer :math:`B_0 = 0`:

    .. math::
        B_t &= \mu B_{t-1} + (1 - \mu) G_t, \quad
        D_t = (1 - \mu) G_t + \mu B_t \text{ if nesterov else } B_t \\
        O_t &= \mathrm{NS}^{(a, b, c)}_k(D_t;\, \epsilon), \quad
        p_t = (1 - \text{lr}\,\lambda)\, p_{t-1} - \text{lr}' O_t

    where :math:`\mathrm{NS}` is ``ns_steps`` Newton-Schulz iterations in bfloat16 (see
    :func:`newton_schulz`) and :math:`\text{lr}'` is ``lr`` scaled for the matrix shape
    :math:`A \times B`: :math:`\sqrt{\max(1, A/B)}` ("original") or
    :math:`0.2\sqrt{\max(A, B)}` ("match_rms_adamw"). Only 2-D parameters are accepted;
    optimize biases, gains and embeddings with another optimizer such as AdamW.

    Args:
        params: 2-D tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 1e-3); may be a tensor.
        weight_decay: decoupled weight decay :math:`\lambda` (default 0.1).
        momentum: :math:`\mu` (default 0.95).
        nesterov: use the Nesterov direction :math:`D_t` above (default True).
        ns_coefficients: :math:`(a, b, c)` of the Newton-Schulz quintic
            (default (3.4445, -4.775, 2.0315)).
        eps: floor of the norm the matrix is divided by before the iteration (default 1e-7).
        ns_steps: number of Newton-Schulz iterations, an integer from 0 to 99 (default 5).
        adjust_lr_fn: None or "original" (default), or "match_rms_adamw".
        impl: ``"loop"`` (per matrix, the reference) or ``"foreach"`` (elementwise parts
            multi-tensor); None picks the fastest.

    ``lr``, ``weight_decay``, ``momentum``, ``eps`` and each entry of ``ns_coefficients``
    may also be a schedule, a one-element tensor or a sequence of per-step values (see
    :mod:`descend.hyperparams`); ``ns_steps`` and ``adjust_lr_fn`` are fixed. State per
    parameter: ``momentum_buffer``, as in torch. Complex parameters and sparse gradients
    are refused.

    Differences from torch, on purpose:

    - ``add_param_group`` refuses parameters that are not 2-D too (torch checks only at
      construction).
    - ``ns_steps`` outside 0..99 and a wrong number of ``ns_coefficients`` are refused at
      construction and in ``add_param_group``; torch refuses 100+ steps and the count at
      the step, and takes negative ``ns_steps`` as 0.
    - bfloat16 parameters with ``nesterov=False``: torch's iteration normalizes the
      momentum buffer in place (its bfloat16 copy is the buffer itself); descend does not.

    Example:
        >>> model = torch.nn.Linear(4, 3, bias=False)
        >>> optimizer = Muon(model.parameters(), lr=0.02)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()

    Papers: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks",
    2024, https://kellerjordan.github.io/posts/muon/ ; J. Liu et al., "Muon is Scalable for
    LLM Training", 2025, https://arxiv.org/abs/2502.16982
    """

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "weight_decay": nonnegative,
        "momentum": nonnegative,
        "ns_coefficients": (any_real, any_real, any_real),
        "eps": _in_bfloat16_range,
    }
    flags = ("nesterov",)
    per_element_state = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        weight_decay: Any = 0.1,
        momentum: Any = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[Any, Any, Any] = (3.4445, -4.775, 2.0315),
        eps: Any = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        *,
        impl: str | None = None,
    ) -> None:
        if isinstance(ns_coefficients, (list, Tensor)):
            ns_coefficients = tuple(ns_coefficients)
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _check_values(self, values: Values, options: dict[str, Any], where: str) -> None:
        if "ns_steps" in options:
            steps = options["ns_steps"]
            try:
                count = None if isinstance(steps, bool) else operator.index(steps)
            except TypeError:
                count = None
            if count is None or not 0 <= count <= MAX_NS_STEPS:
                raise ValueError(
                    f"{where}ns_steps must be an integer from 0 to {MAX_NS_STEPS}, got {steps!r}"
                )
        adjust = options.get("adjust_lr_fn")
        if adjust not in ADJUST_LR_FNS:
            raise ValueError(
                f"{where}adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got "
                f"{adjust!r} (Adjust learning rate function {adjust} is not supported)"
            )

    def _check_params(self, entries: list, index: int) -> None:
        super()._check_params(entries, index)
        for position, entry in enumerate(entries):
            name = f"parameter {position}"
            if isinstance(entry, tuple) and len(entry) == 2:
                name, entry = f"parameter {entry[0]!r}", entry[1]
            if entry.dim() != 2:
                raise ValueError(
                    f"param group {index}: Muon only supports 2D parameters (matrices); "
                    f"{name} has shape {tuple(entry.shape)}. Optimize biases, gains and "
                    "embeddings with another optimizer, such as AdamW"
                )

    def _prepare(self, index: int, group: dict[str, Any]) -> tuple[dict, Values, list]:
        prepared = super()._prepare(index, group)
        for param in prepared[2]:
            if param.is_complex():
                raise RuntimeError(
                    f"param group {index}: Muon does not support complex parameters; one of "
                    f"shape {tuple(param.shape)} is {param.dtype}"
                )
            if is_dtensor(param):
                raise RuntimeError(
                    f"param group {index}: Muon does not support DTensor parameters (sharded "
                    "by FSDP2, say), as it orthogonalizes whole matrices; got one of shape "
                    f"{tuple(param.shape)}. Use an elementwise optimizer such as AdamW"
                )
        return prepared

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        for param in params:
            state = self.state[param]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(
                    param, memory_format=torch.preserve_format
                )
        update = muon_loop if self._impl(group, params) == "loop" else muon_foreach
        update(
            params,
            [p.grad for p in params],
            [self.state[p]["momentum_buffer"] for p in params],
            lr=values["lr"],
            weight_decay=values["weight_decay"],
            momentum=values["momentum"],
            nesterov=group["nesterov"],
            ns_coefficients=values["ns_coefficients"],
            ns_steps=int(group["ns_steps"]),
            eps=values["eps"],
            adjust_lr_fn=group["adjust_lr_fn"],
        )
