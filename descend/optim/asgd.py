"""ASGD: stochastic gradient descent with a decaying step and Polyak-Ruppert averaging."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compiled import Kernel, host, step_counts
from descend.hyperparams import Rule, any_real, nonnegative
from descend.optimizer import Optimizer, as_real, kernel_tensors, per_device_and_dtype, scalar_dtype


def _next_eta_and_mu(
    step: float, *, lr: float, lambd: float, alpha: float, t0: float
) -> tuple[float, float]:
    """The step size and averaging weight the following step uses, after ``step`` steps.

    Raises ``ValueError`` where the step size is no real number (a negative base under a
    fractional power, zero under a negative one, or overflow), which a negative ``lambd``
    or an ``alpha`` outside [0, 1] can give.
    """
    base = 1 + lambd * lr * step
    try:
        eta = lr / (base**alpha)
    except (ZeroDivisionError, OverflowError):
        eta = None
    if not isinstance(eta, float):
        raise ValueError(
            f"the step size lr / (1 + lambd * lr * t) ** alpha is not a real number at step "
            f"t={step:g} (lr={lr!r}, lambd={lambd!r}, alpha={alpha!r})"
        )
    mu = 1 / max(1, step - t0)
    return eta, mu


def _always_real(*, lr: float, lambd: float, alpha: float) -> bool:
    """Whether :func:`_next_eta_and_mu` gives a real step size at every step: the base
    then stays >= 1 and its power between 1 and the base."""
    return lambd * lr >= 0 and 0 <= alpha <= 1


def asgd_loop(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    lambd: float,
    alpha: float,
    t0: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """ASGD, one tensor at a time (the reference). Updates params and state in place.

    ``etas`` and ``mus`` (0-d tensors) hold the step size and averaging weight this step
    uses; they are replaced by the next step's, and ``steps`` is incremented.
    """
    for i, param in enumerate(params):
        grad = -grads[i] if maximize else grads[i]
        steps[i] += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        eta = etas[i].item()
        param.mul_(1 - lambd * eta)
        param.add_(grad, alpha=-eta)
        mu = mus[i].item()
        if mu == 1:
            axs[i].copy_(param)
        else:
            axs[i].add_(param.sub(axs[i]).mul_(mu))
        eta, mu = _next_eta_and_mu(steps[i].item(), lr=lr, lambd=lambd, alpha=alpha, t0=t0)
        etas[i].fill_(eta)
        mus[i].fill_(mu)


@per_device_and_dtype
def asgd_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    lambd: float,
    alpha: float,
    t0: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """ASGD over all tensors at once with ``torch._foreach_*`` ops; same contract as
    :func:`asgd_loop`. The 0-d ``etas`` and ``mus`` enter the ops as tensors, so reading
    them costs no device synchronization."""
    grads = torch._foreach_neg(grads) if maximize else grads
    torch._foreach_add_(steps, 1)
    # direction = g + (weight_decay + lambd) p, applied as p -= eta * direction
    if maximize:
        directions = grads
        torch._foreach_add_(directions, params, alpha=lambd)
    else:
        directions = torch._foreach_add(grads, params, alpha=lambd)
    if weight_decay != 0:
        torch._foreach_add_(directions, params, alpha=weight_decay)
    torch._foreach_addcmul_(params, directions, etas, value=-1)
    del directions
    gaps = torch._foreach_sub(params, axs)
    torch._foreach_addcmul_(axs, gaps, mus)
    del gaps
    for step, eta, mu in zip(steps, etas, mus):
        next_eta, next_mu = _next_eta_and_mu(step.item(), lr=lr, lambd=lambd, alpha=alpha, t0=t0)
        eta.fill_(next_eta)
        mu.fill_(next_mu)


def asgd_kernel(param: Tensor, grad: Tensor, ax: Tensor, c: Tensor, *, l2: bool) -> None:
    """ASGD on one tensor in one pass (see :mod:`descend.compiled`), with the coefficients
    of :func:`asgd_coefficients`: the math of :func:`asgd_loop`. Where the averaging
    weight is 1 the average becomes a copy of the parameter, as there."""
    sign, weight_decay, decay, neg_eta, mu = c[0], c[1], c[2], c[3], c[4]
    grad = grad * sign
    if l2:
        grad = grad + weight_decay * param
    new_param = param * decay + neg_eta * grad
    average = torch.where(mu == 1, new_param, ax + (new_param - ax) * mu)
    param.copy_(new_param)
    ax.copy_(average)


def asgd_coefficients(
    eta: float, mu: float, *, lambd: float, weight_decay: float, maximize: bool
) -> tuple[float, ...]:
    """The coefficient row of :func:`asgd_kernel` for a step with step size ``eta`` and
    averaging weight ``mu`` (the values of the state's ``eta`` and ``mu``)."""
    return (-1.0 if maximize else 1.0, weight_decay, 1 - lambd * eta, -eta, mu)


ASGD_KERNEL = Kernel(asgd_kernel)


def _host_values(tensors: list[Tensor]) -> list[float]:
    """The values of 0-d tensors as Python floats, with one transfer per device."""
    by_device: dict[torch.device, list[int]] = {}
    for i, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(i)
    values = [0.0] * len(tensors)
    for indices in by_device.values():
        # stacking promotes mixed float dtypes to the widest, exactly
        for i, value in zip(indices, torch.stack([tensors[i] for i in indices]).tolist()):
            values[i] = value
    return values


class ASGD(Optimizer):
    r"""Averaged SGD (Polyak & Juditsky, 1992); a drop-in for torch's ASGD.

    With gradient :math:`g_t` (negated when ``maximize``), weight decay :math:`\lambda_w`
    and step :math:`t`, each step uses the step size :math:`\eta` and averaging weight
    :math:`\mu` computed at the end of the previous one (:math:`\eta = \text{lr}`,
    :math:`\mu = 1` at the first step):

    .. math::
        p_t &= (1 - \lambda \eta)\, p_{t-1} - \eta\,(g_t + \lambda_w p_{t-1}), \quad
        \bar p_t = \bar p_{t-1} + \mu\,(p_t - \bar p_{t-1}) \\
        \eta &\leftarrow \text{lr} / (1 + \lambda\,\text{lr}\,t)^{\alpha}, \quad
        \mu \leftarrow 1 / \max(1, t - t_0)

    The average :math:`\bar p` is kept in the state as ``ax``; the parameters themselves
    follow the SGD iterates.

    Args:
        params: tensors, ``(name, tensor)`` pairs or parameter-group dicts.
        lr: learning rate (default 1e-2); may be a tensor.
        lambd: decay term :math:`\lambda` (default 1e-4).
        alpha: power :math:`\alpha` of the step-size decay (default 0.75).
        t0: the step :math:`t_0` after which averaging starts (default 1e6).
        weight_decay: L2 penalty :math:`\lambda_w` (default 0).
        foreach, maximize, differentiable, capturable: as in torch (positional there
            too); ``foreach``/``differentiable`` translate to ``impl``, ``capturable`` has
            no effect.
        impl: ``"loop"`` (per tensor, the reference), ``"foreach"`` (multi-tensor) or
            ``"compiled"`` (one fused pass per tensor); None picks the fastest.

    Every number above may also be a schedule, a one-element tensor or a sequence of
    per-step values (see :mod:`descend.hyperparams`); ``lambd``, ``alpha`` and ``t0`` take
    any real number, as in torch. As torch does, the first step's :math:`\eta` is the
    ``lr`` in force at the step a parameter's state is created, and later values of
    ``lr``, ``lambd``, ``alpha`` and ``t0`` act through the :math:`\eta` and :math:`\mu`
    computed for the following step. State per parameter, as in torch: ``step``, ``eta``
    and ``mu`` (0-d tensors of the default float dtype on the parameter's device) and
    ``ax``.

    One difference from torch: where the next step size has no real value (a negative
    ``lambd`` can make :math:`1 + \lambda\,\text{lr}\,t` negative under a fractional
    :math:`\alpha`), the step raises ``ValueError`` before changing anything; torch keeps
    the real part of the complex number, or raises midway.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> optimizer = ASGD(model.parameters(), lr=0.01, t0=100)
        >>> model(torch.ones(1, 4)).sum().backward()
        >>> optimizer.step()

    Paper: B. T. Polyak and A. B. Juditsky, "Acceleration of Stochastic Approximation by
    Averaging", SIAM J. Control Optim. 30(4), 1992.
    """

    flat_update = True
    impls = ("loop", "foreach", "compiled")
    compiled_kernel = ASGD_KERNEL
    compile_tensor_by_tensor = False  # descend bench: the loop is as fast on large tensors

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        "lr": nonnegative,
        "lambd": any_real,
        "alpha": any_real,
        "t0": any_real,
        "weight_decay": nonnegative,
    }
    flags = ("maximize",)
    per_element_state = ("ax",)

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lambd: Any = 1e-4,
        alpha: Any = 0.75,
        t0: Any = 1e6,
        weight_decay: Any = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        impl: str | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
            impl=impl,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # very old checkpoints kept numbers; torch turns them into 0-d tensors on the
        # parameter's device (the base would put ``step`` on the host)
        numbers = {
            (param, name)
            for param, entries in state.get("state", {}).items()
            if isinstance(entries, dict)
            for name in ("step", "eta", "mu")
            if name in entries and not isinstance(entries[name], Tensor)
        }
        super().__setstate__(state)
        for param, name in numbers:
            value = float(self.state[param][name])
            self.state[param][name] = torch.tensor(
                value, dtype=scalar_dtype(), device=getattr(param, "device", None)
            )

    def _prepare(self, index: int, group: dict[str, Any]) -> tuple[dict, dict, list, list]:
        group, values, params, buffers = super()._prepare(index, group)
        schedule = {k: values[k] for k in ("lr", "lambd", "alpha", "t0")}
        if not _always_real(lr=values["lr"], lambd=values["lambd"], alpha=values["alpha"]):
            # check the step sizes this step computes, before it runs (a flat buffer's
            # parameters share one step count)
            for param in params + [flat.params[0] for flat in buffers]:
                step = self.state[param].get("step") if param in self.state else None
                try:
                    _next_eta_and_mu(1.0 if step is None else float(step) + 1, **schedule)
                except ValueError as error:
                    raise ValueError(f"param group {index}: {error}") from None
        return group, values, params, buffers

    def _update(self, group: dict[str, Any], values: dict, params: list[Tensor]) -> None:
        for param in params:
            state = self.state[param]
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=scalar_dtype(), device=param.device)
            if "eta" not in state:
                state["eta"] = torch.tensor(values["lr"], dtype=scalar_dtype(), device=param.device)
            if "mu" not in state:
                state["mu"] = torch.ones((), dtype=scalar_dtype(), device=param.device)
            if "ax" not in state:
                state["ax"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        impl = self._impl(group, params)
        if impl == "compiled":
            self._update_compiled(group, values, params, states)
            return
        update = asgd_loop if impl == "loop" else asgd_foreach
        update(
            [as_real(p) for p in params],
            [as_real(p.grad) for p in params],
            [as_real(s["ax"]) for s in states],
            [s["mu"] for s in states],
            [s["eta"] for s in states],
            [s["step"] for s in states],
            lr=values["lr"],
            lambd=values["lambd"],
            alpha=values["alpha"],
            t0=values["t0"],
            weight_decay=values["weight_decay"],
            maximize=group["maximize"],
        )

    def _update_compiled(
        self, group: dict[str, Any], values: dict, params: list[Tensor], states: list[dict]
    ) -> None:
        """``impl="compiled"``: as :func:`asgd_loop`, each parameter's step uses the
        ``eta`` and ``mu`` in its state (read on the host, one transfer per device); once
        the kernel is done, the step counts advance and these are replaced by the next
        step's."""
        schedule = {k: host(values[k]) for k in ("lr", "lambd", "alpha", "t0")}
        weight_decay = host(values["weight_decay"])
        steps = [s["step"] for s in states]
        numbers = _host_values([s["eta"] for s in states] + [s["mu"] for s in states])
        etas, mus = numbers[: len(states)], numbers[len(states) :]
        counts = step_counts(steps)
        # real numbers: _prepare has checked them
        nexts = [_next_eta_and_mu(t, **schedule) for t in counts]
        rows = [
            asgd_coefficients(
                eta,
                mu,
                lambd=schedule["lambd"],
                weight_decay=weight_decay,
                maximize=group["maximize"],
            )
            for eta, mu in zip(etas, mus)
        ]
        ASGD_KERNEL(
            kernel_tensors(params, states, "ax"),
            rows,
            advance=steps,
            l2=weight_decay != 0,
        )
        for state, (eta, mu) in zip(states, nexts):
            state["eta"].fill_(eta)
            state["mu"].fill_(mu)
