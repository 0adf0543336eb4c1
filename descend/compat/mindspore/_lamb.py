"""MindSpore's ``nn.Lamb`` and ``nn.LARS``: layer-wise adaptive optimizers, which
torch.optim lacks.

Each keeps MindSpore's name, arguments, defaults, checks and state names, and computes
what MindSpore's kernels compute: Lamb with descend's pure update functions
(:mod:`descend.optim.lamb`), LARS's gradient rescaling with :func:`lars_gradient`, here.
Where MindSpore's kernels disagree with each other, the docstrings say which one is
followed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compat.mindspore._checks import (
    MOMENT_RULES,
    check_flag,
    check_moments,
    check_number,
    f32,
)
from descend.compat.mindspore._optimizer import (
    Optimizer,
    _is_dynamic_lr,
    _scaled_decay,
    _state_tuple,
    value_at,
)
from descend.hyperparams import Rule
from descend.optim.lamb import lamb_foreach, lamb_loop

__all__ = ["LARS", "Lamb", "lars_gradient"]


# --------------------------------------------------------------------------------------
# Lamb
# --------------------------------------------------------------------------------------


class Lamb(Optimizer):
    r"""MindSpore's ``nn.Lamb``: Adam moments with a per-tensor trust ratio (the ``Lamb``
    kernel).

    The gradients get no weight decay and no loss scale before the update (Lamb takes no
    ``loss_scale``); gradient centralization applies in groups that ask for it. Weight
    decay :math:`\lambda` enters the update itself, for the parameters MindSpore's
    ``decay_flags`` select (without groups: names without ``beta`` or ``gamma``; in
    groups: positive or dynamic weight decay), and :math:`\lambda = 0` for the others.
    With the global step :math:`t` counted from 1 (state ``lamb_m``, ``lamb_v``):

    .. math::
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
        \hat m = \frac{m}{1 - \beta_1^t}, \quad \hat v = \frac{v}{1 - \beta_2^t} \\
        u &= \frac{\hat m}{\sqrt{\hat v} + \epsilon} + \lambda w, \quad
        r = \operatorname{clip}\Bigl(\frac{\lVert w \rVert}
            {\lVert \hat m / \sqrt{\hat v + \epsilon} + \lambda w \rVert}, 0, 10\Bigr), \quad
        w \leftarrow w - \text{lr}\, r\, u

    where :math:`r = 1` if either norm is 0, and 0 if it is NaN. Note :math:`\epsilon`
    inside the square root in the trust ratio's norm only, as the kernel has it.

    Args:
        params: ``(name, tensor)`` pairs, tensors, or group dicts.
        learning_rate: a number, per-step values or a schedule (required).
        beta1, beta2: moment decay rates, floats in (0, 1) (default 0.9, 0.999).
        eps: a float > 0 (default 1e-6).
        weight_decay: :math:`\lambda` (default 0.0): a number, or a callable of the global
            step.

    Follows MindSpore's GPU kernel (``gpu/kernel/nn/lamb_gpu_kernel.h`` and
    ``cuda_ops/lamb_impl.cu``). That kernel takes a one-element tensor's value for its
    norm (it skips the reduction), so a one-element parameter or update that is negative
    gets the trust ratio 1 there; here norms are norms.
    """

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        **Optimizer.hyperparameter_rules,
        **MOMENT_RULES,
    }
    per_element_state = ("lamb_m", "lamb_v")

    def __init__(
        self,
        params: Any,
        learning_rate: Any,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-6,
        weight_decay: Any = 0.0,
    ) -> None:
        check_moments("Lamb", beta1, beta2, eps)
        super().__init__(learning_rate, params, weight_decay, beta1=beta1, beta2=beta2, eps=eps)
        self._filled_state(self.parameters, {"lamb_m": 0.0, "lamb_v": 0.0}, step=True)

    moments1 = _state_tuple("lamb_m", "The first moments :math:`m` (state ``lamb_m``).")
    moments2 = _state_tuple("lamb_v", "The second moments :math:`v` (state ``lamb_v``).")

    def decay_weight(self, gradients: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Nothing: Lamb's weight decay is part of its update."""
        return tuple(gradients)

    def _apply(
        self, group: dict[str, Any], values: dict[str, Any], params: list[Tensor], grads: list
    ) -> None:
        decay = values["weight_decay"] * self.loss_scale
        update = lamb_loop if self._impl_for(group, params, grads) == "loop" else lamb_foreach
        for decayed, chosen in self._split_by_decay_flag(group, params):
            subset = [params[i] for i in chosen]
            states = self._filled_state(subset, {"lamb_m": 0.0, "lamb_v": 0.0}, step=True)
            update(
                subset,
                [grads[i] for i in chosen],
                [s["lamb_m"] for s in states],
                [s["lamb_v"] for s in states],
                [s["step"] for s in states],
                lr=f32(values["lr"]),
                beta1=f32(values["beta1"]),
                beta2=f32(values["beta2"]),
                eps=f32(values["eps"]),
                weight_decay=f32(decay) if decayed else 0.0,
                max_trust_ratio=10.0,
                trust_eps_in_sqrt=True,
            )


# --------------------------------------------------------------------------------------
# LARS
# --------------------------------------------------------------------------------------


def lars_gradient(
    param: Tensor,
    grad: Tensor,
    *,
    weight_decay: float,
    lr: float,
    epsilon: float,
    coefficient: float,
    use_clip: bool,
) -> Tensor:
    r"""MindSpore's ``LARSUpdate``: the gradient rescaled by the layer's local learning
    rate, with weight decay :math:`\lambda` added,

    .. math::
        c = \frac{\theta \lVert w \rVert}{\lVert g \rVert + \lambda \lVert w \rVert
            + \epsilon}, \quad
        (\text{with } \texttt{use\_clip}: c \leftarrow \min(\max(c / \text{lr}, 0), 1)),
        \quad g' = c\,(g + \lambda w)

    with :math:`\theta` = ``coefficient``. A new tensor; nothing is changed.
    """
    weight_norm = torch.linalg.vector_norm(param)
    coeff = (
        weight_norm
        * coefficient
        / (torch.linalg.vector_norm(grad) + weight_norm * weight_decay + epsilon)
    )
    if use_clip:
        coeff = (coeff / lr).clamp_(0.0, 1.0)
    return param.mul(weight_decay).add_(grad).mul_(coeff)


class _Named:
    """What a ``lars_filter`` is called with: the parameter's ``name`` (from the
    ``(name, tensor)`` pairs the optimizer got), and the tensor's other attributes."""

    __slots__ = ("name", "tensor")

    def __init__(self, name: str, tensor: Tensor) -> None:
        self.name = name
        self.tensor = tensor

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.tensor, attribute)

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={tuple(self.tensor.shape)})"


def _not_layer_norm_or_bias(param: Any) -> bool:
    """LARS's default filter: parameters whose names contain neither ``LayerNorm`` nor
    ``bias``."""
    return "LayerNorm" not in param.name and "bias" not in param.name


def _delegated(name: str) -> property:
    """An attribute of the wrapped optimizer (``param_groups``, ``state``, ``defaults``),
    so that LARS and the optimizer it wraps always share them."""

    def get(self: LARS) -> Any:
        inner = self.__dict__.get("opt")
        return self.__dict__[f"_own_{name}"] if inner is None else getattr(inner, name)

    def set_(self: LARS, value: Any) -> None:
        inner = self.__dict__.get("opt")
        if inner is None:  # torch.optim.Optimizer.__init__, before the wrapping
            self.__dict__[f"_own_{name}"] = value
        else:
            setattr(inner, name, value)

    return property(get, set_)


class LARS(Optimizer):
    r"""MindSpore's ``nn.LARS``: wraps another optimizer of this module, rescaling each
    gradient by its layer's local learning rate (the ``LARSUpdate`` kernel) before the
    wrapped optimizer's step.

    At each step, gradients are divided by the wrapped optimizer's loss scale; then each
    parameter that ``lars_filter`` selects gets :func:`lars_gradient`, with the wrapped
    optimizer's weight decay :math:`\lambda` (at the global step) where its decay flags
    select it, and 0 elsewhere; parameters the filter leaves out keep their (unscaled)
    gradient and get no weight decay at all. The wrapped optimizer then steps with these
    gradients, its own weight decay and loss scale switched off (LARS sets its groups'
    ``weight_decay`` to 0 and its ``loss_scale`` to 1, as MindSpore's LARS switches them
    off); its gradient centralization still applies.

    Args:
        optimizer: the optimizer to wrap (an optimizer of ``descend.compat.mindspore``).
        epsilon: added to the denominator of the local learning rate, a float
            (default 1e-05).
        coefficient: the trust coefficient :math:`\theta`, a float (default 0.001).
        use_clip: divide the local learning rate by the wrapped optimizer's learning rate
            and clip it to [0, 1] (default False); not with both group and dynamic
            learning rates.
        lars_filter: called with each parameter (with its ``.name``, from the ``(name,
            tensor)`` pairs the wrapped optimizer got); True applies LARS (default: names
            without ``LayerNorm`` or ``bias``).

    LARS shares the wrapped optimizer's parameter groups, state and step count, so a
    scheduler or ``state_dict()`` of either sees the same thing. It is called, or
    stepped, instead of the wrapped optimizer.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        epsilon: float = 1e-05,
        coefficient: float = 0.001,
        use_clip: bool = False,
        lars_filter: Callable[[Any], bool] = _not_layer_norm_or_bias,
    ) -> None:
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, LARS):
            raise TypeError(
                "LARS: optimizer must be an optimizer of descend.compat.mindspore (not a "
                f"LARS), got {type(optimizer).__name__}"
            )
        if getattr(optimizer, "_wrapped_by_lars", False):
            raise ValueError(f"LARS: this {type(optimizer).__name__} is wrapped by a LARS already")
        check_number("LARS", "epsilon", epsilon)
        check_number("LARS", "coefficient", coefficient)
        check_flag("LARS", "use_clip", use_clip)
        if not callable(lars_filter):
            raise TypeError(f"LARS: lars_filter must be callable, got {lars_filter!r}")
        groups = optimizer.param_groups
        dynamic_lr = any(
            _is_dynamic_lr(lr) for lr in [optimizer.defaults["lr"], *(g["lr"] for g in groups)]
        )
        if use_clip and optimizer.is_group_lr and dynamic_lr:
            raise ValueError(
                "LARS: with use_clip=True, the wrapped optimizer cannot have both group and "
                "dynamic learning rates, as in MindSpore"
            )
        lars_flags = {
            id(p): bool(lars_filter(_Named(optimizer._names[id(p)], p)))
            for p in optimizer.parameters
        }
        # torch's bookkeeping (hooks, the patched step); its placeholder group is
        # replaced by the wrapped optimizer's groups below
        torch.optim.Optimizer.__init__(self, [torch.zeros((), requires_grad=True)], {})
        for name in ("param_groups", "state", "defaults"):
            del self.__dict__[f"_own_{name}"]
        group_of = optimizer._group_of()
        self._decays = {
            id(p): (group_of[id(p)]["weight_decay"], optimizer._decay_flag(group_of[id(p)], p))
            for p in optimizer.parameters
        }
        self.opt = optimizer
        self.epsilon = epsilon
        self.coefficient = coefficient
        self.use_clip = use_clip
        self.lars_filter = lars_filter
        self.lars_flag = tuple(lars_flags[id(p)] for p in optimizer.parameters)
        self._lars_flags = lars_flags
        self.parameters = optimizer.parameters
        self._names = optimizer._names
        self.is_group = optimizer.is_group
        self.is_group_lr = optimizer.is_group_lr
        self.loss_scale = optimizer.loss_scale
        for group in groups:
            group["weight_decay"] = 0.0
        optimizer.loss_scale = 1.0
        optimizer._wrapped_by_lars = True

    param_groups = _delegated("param_groups")
    state = _delegated("state")
    defaults = _delegated("defaults")

    @property
    def steps_taken(self) -> int:
        return self.opt.steps_taken

    @property
    def steps_skipped(self) -> int:
        return self.opt.steps_skipped

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "opt" not in self.__dict__:  # torch's constructor adds the placeholder group
            torch.optim.Optimizer.add_param_group(self, param_group)
            return
        raise RuntimeError(
            "LARS cannot take new parameters: give them to the optimizer it wraps before "
            "wrapping it"
        )

    def _count(self, skipped: bool) -> None:
        self.opt._count(skipped)

    @property
    def learning_rate(self) -> Any:
        """The wrapped optimizer's ``learning_rate``."""
        return self.opt.learning_rate

    @property
    def weight_decay(self) -> Any:
        """The wrapped optimizer's weight decay as it was before LARS took it over (times its
        loss scale, as MindSpore's LARS keeps it); a tuple per parameter with groups."""
        values = tuple(
            _scaled_decay(self._decays[id(p)][0], self.loss_scale) for p in self.parameters
        )
        return values if self.is_group else values[0]

    def _run(self, gradients: tuple[Tensor, ...]) -> Any:
        self._check_sparse(gradients)
        opt = self.opt
        for index, group in enumerate(self.param_groups):
            opt._resolve(group, group["step"], f"param group {index}: ")  # fail early
        if self._skips_nonfinite(gradients):  # skip_nonfinite=True and an inf or NaN
            return False
        step = self.global_step
        group_of = opt._group_of()
        reciprocal = f32(1.0 / self.loss_scale)
        rescaled = []
        with torch.no_grad():
            for param, grad in zip(self.parameters, gradients):
                if self.loss_scale != 1.0:
                    grad = grad * reciprocal
                if self._lars_flags[id(param)]:
                    decay, applies = self._decays[id(param)]
                    value = value_at("weight_decay", decay, step) if applies else 0.0
                    lr = value_at("lr", group_of[id(param)]["lr"], step) if self.use_clip else 0.0
                    grad = lars_gradient(
                        param,
                        grad,
                        weight_decay=f32(value),
                        lr=f32(lr),
                        epsilon=f32(self.epsilon),
                        coefficient=f32(self.coefficient),
                        use_clip=self.use_clip,
                    )
                rescaled.append(grad)
        return opt._run(tuple(rescaled))

    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], *, by_name: bool | None = None) -> None:
        self.opt.load_state_dict(state_dict, by_name=by_name)

    _ID_KEYED = ("_names", "_lars_flags", "_decays")

    def __getstate__(self) -> dict[str, Any]:
        return self._by_position(self.__dict__.copy())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.update(self._by_id(state))

    def __repr__(self) -> str:
        return (
            f"LARS(epsilon={self.epsilon}, coefficient={self.coefficient}, "
            f"use_clip={self.use_clip}) wrapping {self.opt!r}"
        )
