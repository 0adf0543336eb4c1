"""Adafactor: Adam-like steps from factored second moments, with relative step sizes."""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.hyperparams import Rule, at_least, nonnegative, optional
from descend.optimizer import Optimizer, Values, is_dtensor, per_device_and_dtype, scalar_dtype


def at_most(bound: float) -> Rule:
    """A rule: the value must be ``<= bound``."""

    def rule(name: str, value: float) -> None:
        if not value <= bound:  # also rejects NaN
            raise ValueError(f"{name} must be <= {bound:g}, got {value!r}")

    return rule


def _schedule(
    step: float,
    lr: float,
    beta2_decay: float,
    relative_step: bool = True,
    warmup_init: bool = False,
) -> tuple[float, float]:
    """The weight given to the newest squared gradient, :math:`t^{\\tau}`, and the relative
    step size :math:`\\rho_t = \\min(\\text{lr}, 1/\\sqrt{t})` at step ``step``; with
    ``warmup_init``, :math:`\\min(10^{-6} t, 1/\\sqrt{t})`; without ``relative_step``,
    ``lr`` itself."""
    if not relative_step:
        return step**beta2_decay, lr
    cap = 1e-6 * step if warmup_init else lr
    return step**beta2_decay, min(cap, 1 / math.sqrt(step))


def _rms(norm: float, tensor: Tensor) -> float:
    """Root mean square of ``tensor`` from its 2-norm."""
    return norm / math.sqrt(max(tensor.numel(), 1))  # an empty tensor's RMS is 0


def _row_and_col_means(grad: Tensor) -> tuple[Tensor, Tensor]:
    """Means of the squared gradient over its last and its second-to-last dimension (kept
    as size-1 dimensions), without a full-size temporary."""
    rows = torch.linalg.vector_norm(grad, dim=-1, keepdim=True).square_().div_(grad.size(-1))
    cols = torch.linalg.vector_norm(grad, dim=-2, keepdim=True).square_().div_(grad.size(-2))
    return rows, cols


def _factored_estimate(row_var: Tensor, col_var: Tensor, eps1: float) -> Tensor:
    """The second-moment estimate rebuilt from its factors: row times column, divided by
    the mean of the row factor (at least ``eps1``)."""
    scale = row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1)
    return torch.matmul(row_var, col_var).div_(scale)


def _added_eps1_direction(
    grad: Tensor,
    row_var: Tensor | None,
    col_var: Tensor | None,
    variance: Tensor | None,
    newest: float,
    eps1: float,
) -> Tensor:
    r""":math:`U_t = G_t / \sqrt{\hat V_t}` with ``eps1`` added to :math:`G_t^2` before it
    is averaged into the moments, and no floor after (Shazeer & Stern's Algorithms 4 and
    5, as fairseq and MindSpore compute them); updates the moments in place.

    A ``variance`` kept in a narrower dtype than ``grad`` (MindSpore's ``compression``
    keeps it in float16) is updated in ``grad``'s dtype, stored rounded, and read back
    rounded: its inverse square root is taken in its own dtype, as MindSpore does."""
    square = torch.addcmul(torch.full_like(grad, eps1), grad, grad)
    if variance is None:
        row_var.lerp_(square.mean(dim=-1, keepdim=True), newest)
        col_var.lerp_(square.mean(dim=-2, keepdim=True), newest)
        row_factor = row_var.div(row_var.mean(dim=-2, keepdim=True)).sqrt_().reciprocal_()
        return col_var.sqrt().reciprocal_().mul(row_factor).mul_(grad)
    if variance.dtype == grad.dtype:
        variance.lerp_(square, newest)
    else:
        variance.copy_(variance.to(grad.dtype).lerp_(square, newest))
    return variance.sqrt().reciprocal_().to(grad.dtype).mul_(grad)


def adafactor_loop(
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list[Tensor | None],
    col_vars: list[Tensor | None],
    variances: list[Tensor | None],
    steps: list[Tensor],
    exp_avgs: list[Tensor] | None = None,
    *,
    lr: float,
    beta2_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    weight_decay: float,
    maximize: bool,
    beta1: float = 0.0,
    relative_step: bool = True,
    warmup_init: bool = False,
    scale_parameter: bool = True,
    add_eps1: bool = False,
    decay_by_step_size: bool = False,
) -> None:
    r"""Adafactor, one tensor at a time (the reference). Updates params and state in place.

    Tensors of two or more dimensions keep ``row_vars``/``col_vars`` (their ``variances``
    entry is None); others keep a full ``variances`` entry (their factors are None).
    ``steps`` holds each tensor's step count (0-d tensors), incremented here. ``eps1=None``
    stands for the machine epsilon of each tensor's dtype.

    The options below select the original algorithm of Shazeer & Stern (2018), as fairseq
    and MindSpore implement it; their defaults are torch's algorithm:

    - ``exp_avgs`` (given positionally, as the lists before it), ``beta1``: keep a first
      moment of the clipped and scaled update,
      :math:`m \leftarrow \beta_1 m + (1 - \beta_1)\, \alpha_t U_t / \max(1,
      \mathrm{RMS}(U_t) / d)`, and step along it, :math:`p \leftarrow p - m`. None (the
      default) steps along the update itself.
    - ``relative_step=False``: :math:`\rho_t` = ``lr`` instead of
      :math:`\min(\text{lr}, 1/\sqrt{t})`; ``warmup_init=True``:
      :math:`\rho_t = \min(10^{-6} t, 1/\sqrt{t})`.
    - ``scale_parameter=False``: :math:`\alpha_t = \rho_t` instead of
      :math:`\rho_t \max(\epsilon_2, \mathrm{RMS}(p_{t-1}))`.
    - ``add_eps1=True``: :math:`\epsilon_1` is added to :math:`G_t^2` before it enters
      the moments and the estimate has no floor, instead of flooring the row mean and
      :math:`\sqrt{\hat V_t}` at :math:`\epsilon_1`; a full ``variances`` entry may then be
      kept in a narrower dtype than its parameter (see :func:`_added_eps1_direction`).
    - ``decay_by_step_size=True``: weight decay multiplies :math:`p` by
      :math:`1 - \lambda \alpha_t` instead of :math:`1 - \lambda\, \text{lr}`.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        newest, rho = _schedule(steps[i].item(), lr, beta2_decay, relative_step, warmup_init)
        # the step size is relative to the parameter's scale before weight decay
        alpha = rho
        if scale_parameter:
            alpha = rho * max(eps2, _rms(torch.linalg.vector_norm(param).item(), param))
        if weight_decay != 0:
            param.mul_(1 - (alpha if decay_by_step_size else lr) * weight_decay)
        floor = torch.finfo(param.dtype).eps if eps1 is None else eps1
        if add_eps1:
            update = _added_eps1_direction(
                grad, row_vars[i], col_vars[i], variances[i], newest, floor
            )
        else:
            if variances[i] is None:
                rows, cols = _row_and_col_means(grad)
                row_vars[i].lerp_(rows, newest)
                col_vars[i].lerp_(cols, newest)
                estimate = _factored_estimate(row_vars[i], col_vars[i], floor)
            else:
                variances[i].lerp_(grad * grad, newest)
                estimate = variances[i].clone()
            # clamp the variance at eps1**2 so that its square root is at least eps1
            update = estimate.clamp_(min=floor * floor).rsqrt_().mul_(grad)
        clip = max(1.0, _rms(torch.linalg.vector_norm(update).item(), update) / d)
        if exp_avgs is None:
            param.add_(update, alpha=-alpha / clip)
        else:
            exp_avgs[i].mul_(beta1).add_(update.mul_(alpha / clip), alpha=1 - beta1)
            param.sub_(exp_avgs[i])


def _scale_(tensors: list[Tensor], factor: float) -> None:
    """Multiply every tensor by ``factor`` in place, with ``factor`` at full precision."""
    if tensors[0].device.type == "cpu" and tensors[0].element_size() < 4:
        # on CPU, torch._foreach_mul_ rounds a scalar to the tensors' dtype first (in
        # bfloat16, 1 - 1e-4 becomes 1.0), where Tensor.mul_ does not
        for tensor in tensors:
            tensor.mul_(factor)
    else:
        torch._foreach_mul_(tensors, factor)


@per_device_and_dtype
def adafactor_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list[Tensor | None],
    col_vars: list[Tensor | None],
    variances: list[Tensor | None],
    steps: list[Tensor],
    exp_avgs: list[Tensor] | None = None,
    *,
    lr: float,
    beta2_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    weight_decay: float,
    maximize: bool,
    beta1: float = 0.0,
    relative_step: bool = True,
    warmup_init: bool = False,
    scale_parameter: bool = True,
    add_eps1: bool = False,
    decay_by_step_size: bool = False,
) -> None:
    """Adafactor over all tensors at once with ``torch._foreach_*`` ops; same contract and
    options as :func:`adafactor_loop`. Peak memory grows by about the size of the
    parameters, since every tensor's update exists at once."""
    grads = torch._foreach_neg(grads) if maximize else list(grads)
    torch._foreach_add_(steps, 1)
    schedule = [
        _schedule(step.item(), lr, beta2_decay, relative_step, warmup_init) for step in steps
    ]
    newest = [weight for weight, _ in schedule]
    alphas = [rho for _, rho in schedule]
    if scale_parameter:
        # one host transfer for every norm, rather than one per tensor
        param_norms = torch.stack(torch._foreach_norm(params)).tolist()
        alphas = [
            rho * max(eps2, _rms(norm, p)) for rho, norm, p in zip(alphas, param_norms, params)
        ]
    if weight_decay != 0:
        if decay_by_step_size:
            for param, alpha in zip(params, alphas):
                param.mul_(1 - alpha * weight_decay)
        else:
            _scale_(params, 1 - lr * weight_decay)
    floor = torch.finfo(params[0].dtype).eps if eps1 is None else eps1
    factored = [i for i, v in enumerate(variances) if v is None]
    full = [i for i, v in enumerate(variances) if v is not None]
    estimates: list[Tensor | None] = [None] * len(params)
    if add_eps1:
        estimates = [
            _added_eps1_direction(grads[i], row_vars[i], col_vars[i], variances[i], w, floor)
            for i, w in enumerate(newest)
        ]
        factored = full = []
    if factored:
        means = [_row_and_col_means(grads[i]) for i in factored]
        weights = [newest[i] for i in factored]
        torch._foreach_lerp_([row_vars[i] for i in factored], [m[0] for m in means], weights)
        torch._foreach_lerp_([col_vars[i] for i in factored], [m[1] for m in means], weights)
        for i in factored:
            estimates[i] = _factored_estimate(row_vars[i], col_vars[i], floor)
    if full:
        full_grads = [grads[i] for i in full]
        squares = torch._foreach_mul(full_grads, full_grads)
        torch._foreach_lerp_([variances[i] for i in full], squares, [newest[i] for i in full])
        for i in full:
            estimates[i] = variances[i].clone()
    if not add_eps1:
        torch._foreach_clamp_min_(estimates, floor * floor)
        torch._foreach_rsqrt_(estimates)
        torch._foreach_mul_(estimates, grads)
    update_norms = torch.stack(torch._foreach_norm(estimates)).tolist()
    scales = [
        -alpha / max(1.0, _rms(norm, update) / d)
        for alpha, norm, update in zip(alphas, update_norms, estimates)
    ]
    if exp_avgs is not None:
        torch._foreach_mul_(estimates, [-scale for scale in scales])
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, estimates, alpha=1 - beta1)
        torch._foreach_sub_(params, exp_avgs)
    elif params[0].element_size() < 4:
        # below 32 bits, scaling then adding would round twice; add_ with alpha rounds once
        for param, update, scale in zip(params, estimates, scales):
            param.add_(update, alpha=scale)
    else:
        torch._foreach_mul_(estimates, scales)
        torch._foreach_add_(params, estimates)


class Adafactor(Optimizer):
    r"""Adafactor (Shazeer & Stern, 2018) as torch 2.13 defines it; torch's Adafactor drop-in.

    With gradient :math:`G_t` (negated when ``maximize``) and the parameter's own step
    count :math:`t`, :math:`\hat\beta_t = 1 - t^{\tau}` (:math:`\tau` = ``beta2_decay``):

    .. math::
        \rho_t &= \min(\text{lr}, 1/\sqrt{t}), \quad
        \alpha_t = \rho_t \max(\epsilon_2, \mathrm{RMS}(p_{t-1})), \quad
        p \leftarrow (1 - \text{lr}\,\lambda)\, p \\
        R_t &= \hat\beta_t R_{t-1} + (1 - \hat\beta_t)\,\mathrm{mean}_{\text{cols}}(G_t^2),
        \quad C_t = \hat\beta_t C_{t-1} + (1 - \hat\beta_t)\,\mathrm{mean}_{\text{rows}}(G_t^2),
        \quad \hat V_t = \frac{R_t C_t}{\max(\mathrm{mean}(R_t), \epsilon_1)} \\
        U_t &= \frac{G_t}{\max(\sqrt{\hat V_t}, \epsilon_1)}, \quad
        p_t = p - \frac{\alpha_t\, U_t}{\max(1, \mathrm{RMS}(U_t) / d)}

    Tensors of two or more dimensions are factored over their last two dimensions (state
    ``row_var`` and ``col_var``); 0-d and 1-d tensors keep the full
    :math:`\hat V_t = \hat\beta_t \hat V_{t-1} + (1 - \hat\beta_t) G_t^2` (state
    ``variance``). State also holds ``step``, as in torch.

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: the cap on the relative step size :math:`\rho_t`, and the weight-decay
            factor (default 1e-2); may be a tensor.
        beta2_decay: :math:`\tau \le 0`, the decay of the second-moment weight
            (default -0.8).
        eps: :math:`(\epsilon_1, \epsilon_2)` (default (None, 1e-3)): the floor of the
            variance estimate's square root and of its row mean, None meaning the
            parameter dtype's machine epsilon; and the floor of the parameter's RMS.
        d: clipping threshold :math:`d \ge 1` for the update's RMS (default 1.0).
        weight_decay: decoupled weight decay :math:`\lambda` (default 0).
        foreach: torch's keyword, translated to ``impl``.
        maximize: ascend the objective instead of descending it.
        impl: ``"loop"`` (per tensor, the reference) or ``"foreach"`` (multi-tensor);
            None takes the loop, as torch does, since the multi-tensor path holds every
            update at once (about the parameters' size in extra memory).

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`); so may each entry of ``eps``, and
    ``eps[0]`` may stay None. Complex parameters and sparse gradients are refused.

    Differences from torch, on purpose:

    - ``eps[0]=None`` takes each parameter's own dtype; torch takes the dtype of the first
      parameter with a gradient for its whole group (groups mixing dtypes differ).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = Adafactor(model.parameters(), lr=1e-2, weight_decay=1e-3)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()

    Paper: N. Shazeer and M. Stern, "Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost", ICML 2018, https://arxiv.org/abs/1804.04235
    """

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "beta2_decay": at_most(0.0),
        "eps": (optional(nonnegative), nonnegative),  # eps[0] None: the dtype's epsilon
        "d": at_least(1.0),
        "weight_decay": nonnegative,
    }
    flags = ("maximize",)
    per_element_state = ("variance",)

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        beta2_decay: Any = -0.8,
        eps: tuple[Any, Any] = (None, 1e-3),
        d: Any = 1.0,
        weight_decay: Any = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            impl=impl,
        )
        super().__init__(params, defaults)

    def _check_values(self, values: Values, options: dict[str, Any], where: str) -> None:
        if "eps" in values and values["eps"][1] is None:
            raise TypeError(
                f"{where}eps[1] must be a number (only eps[0] may be None), got {options['eps']!r}"
            )

    def _prepare(self, index: int, group: dict[str, Any]) -> tuple[dict, Values, list]:
        prepared = super()._prepare(index, group)
        for param in prepared[2]:
            if param.is_complex():
                raise RuntimeError(
                    f"param group {index}: Adafactor does not support complex parameters; "
                    f"one of shape {tuple(param.shape)} is {param.dtype}"
                )
            if is_dtensor(param):
                raise RuntimeError(
                    f"param group {index}: Adafactor does not support DTensor parameters "
                    "(sharded by FSDP2, say), as its second moments are means over whole rows "
                    f"and columns; got one of shape {tuple(param.shape)}. Use an elementwise "
                    "optimizer such as AdamW"
                )
        return prepared

    def _impl(self, group: dict[str, Any], params: Any) -> str:
        """The group's ``impl``, else the loop (torch's default too: less peak memory)."""
        return group.get("impl") or "loop"

    def _update(self, group: dict[str, Any], values: Values, params: list[Tensor]) -> None:
        for param in params:
            state = self.state[param]
            if "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
            if param.dim() > 1:
                if "row_var" not in state:
                    state["row_var"] = param.new_zeros((*param.shape[:-1], 1))
                if "col_var" not in state:
                    state["col_var"] = param.new_zeros((*param.shape[:-2], 1, param.shape[-1]))
            elif "variance" not in state:
                state["variance"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        factored = [p.dim() > 1 for p in params]
        update = adafactor_loop if self._impl(group, params) == "loop" else adafactor_foreach
        eps1, eps2 = values["eps"]
        update(
            params,
            [p.grad for p in params],
            [s["row_var"] if f else None for s, f in zip(states, factored)],
            [s["col_var"] if f else None for s, f in zip(states, factored)],
            [None if f else s["variance"] for s, f in zip(states, factored)],
            [s["step"] for s in states],
            lr=values["lr"],
            beta2_decay=values["beta2_decay"],
            eps1=eps1,
            eps2=eps2,
            d=values["d"],
            weight_decay=values["weight_decay"],
            maximize=group["maximize"],
        )

    def _check_state_dict(self, state_dict: Any) -> None:
        super()._check_state_dict(state_dict)
        saved_keys = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        own = chain.from_iterable(g["params"] for g in self.param_groups)
        for key, param in zip(saved_keys, own):
            entries = state_dict["state"].get(key)
            if not isinstance(entries, dict):
                continue
            for name, dim in (("row_var", -1), ("col_var", -2)):
                value = entries.get(name)
                if value is None:
                    continue
                expected = None
                if param.dim() > 1:
                    expected = list(param.shape)
                    expected[dim] = 1
                if not isinstance(value, Tensor) or list(value.shape) != expected:
                    found = (
                        f"has shape {tuple(value.shape)}"
                        if isinstance(value, Tensor)
                        else f"is a {type(value).__name__}"
                    )
                    wanted = "no such entry" if expected is None else f"{tuple(expected)}"
                    raise ValueError(
                        f"state_dict state for parameter {key}: {name} {found}, the parameter "
                        f"has shape {tuple(param.shape)} (expected {wanted})"
                    )
