"""MindSpore's ``nn.AdaFactor``: Adafactor in its original form, as fairseq and MindSpore
compute it, with descend's pure update functions (:mod:`descend.optim.adafactor`).

It keeps MindSpore's name, arguments, defaults, checks and state names.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.compat.mindspore._checks import check_flag, check_number, f32
from descend.compat.mindspore._optimizer import Optimizer, _state_tuple
from descend.hyperparams import (
    Rule,
    describe,
    in_open_unit_interval,
    in_unit_interval,
    nonnegative,
    positive,
)
from descend.optim.adafactor import adafactor_foreach, adafactor_loop

__all__ = ["AdaFactor"]


# --------------------------------------------------------------------------------------
# AdaFactor
# --------------------------------------------------------------------------------------


def _scalar_zero(param: Tensor) -> Tensor:
    """MindSpore's ``exp_avg`` entry without a first moment: a 0-d float32 zero."""
    return torch.zeros((), dtype=torch.float32, device=param.device)


def _one_zero(param: Tensor) -> Tensor:
    """MindSpore's placeholder for a second-moment buffer a parameter does not use."""
    return param.new_zeros(1)


class AdaFactor(Optimizer):
    r"""MindSpore's ``nn.AdaFactor``: Adafactor (Shazeer & Stern, 2018) in its original
    form, as fairseq and MindSpore compute it; not torch's ``Adafactor``.

    With the step :math:`t` (from 1), :math:`\hat\beta_{2t} = 1 - t^{-\text{decay\_rate}}`
    and :math:`(\epsilon_1, \epsilon_2)` = ``eps``:

    .. math::
        \rho_t &= \min(10^{-2}, 1/\sqrt{t}) \text{ (relative\_step; with warmup\_init }
            \min(10^{-6} t, 1/\sqrt{t})\text{)}, \text{ else } \text{lr}, \quad
        \alpha_t = \rho_t \max(\epsilon_2, \mathrm{RMS}(w)) \text{ (scale\_parameter, else }
            \rho_t) \\
        R &\leftarrow \hat\beta_{2t} R + (1 - \hat\beta_{2t})\,
            \mathrm{mean}_{\text{last}}(g^2 + \epsilon_1), \quad
        C \leftarrow \hat\beta_{2t} C + (1 - \hat\beta_{2t})\,
            \mathrm{mean}_{\text{second-last}}(g^2 + \epsilon_1), \quad
        U = \frac{g}{\sqrt{R C / \mathrm{mean}(R)}} \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) \frac{\alpha_t U}{\max(1, \mathrm{RMS}(U)/d)},
        \quad w \leftarrow w - \lambda \alpha_t w - m

    for tensors of 2+ dimensions (state ``exp_avg_sq_row``, ``exp_avg_sq_col``, shaped as
    MindSpore's: the parameter's shape without its last, or its second-to-last,
    dimension); others keep the full :math:`V \leftarrow \hat\beta_{2t} V + (1 -
    \hat\beta_{2t})(g^2 + \epsilon_1)`, :math:`U = g / \sqrt{V}` (state ``exp_avg_sq``).
    Without ``beta1`` (None or 0) there is no ``exp_avg`` and the step is the clipped
    :math:`\alpha_t U`.

    As MindSpore's AdaFactor, this one applies no loss scale, no gradient
    centralization and no group weight decay to the gradients: ``weight_decay``
    (:math:`\lambda`, decoupled) reaches every parameter, whatever its name or group.

    Args:
        params: ``(name, tensor)`` pairs, tensors, or group dicts (without ``lr``).
        learning_rate: None with ``relative_step`` (the default); otherwise a number,
            per-step values or a schedule. Anything but a number turns
            ``scale_parameter`` off, as in MindSpore.
        eps: :math:`(\epsilon_1, \epsilon_2)`, floats >= 0 (default (1e-30, 1e-3)).
        clip_threshold: :math:`d`, a float > 0 (default 1.0). MindSpore's check lets 0
            through, which makes every update 0 or NaN and which its CPU kernel refuses.
        decay_rate: a float in (0, 1) (default 0.8).
        beta1: the first-moment decay, >= 0 (default 0.9); None or 0 keeps no first
            moment.
        weight_decay: :math:`\lambda`, a float in [0, 1) (default 0.0).
        scale_parameter, relative_step, warmup_init: as in the formula (default True,
            True, False); ``warmup_init`` needs ``relative_step``.
        compression: keep ``exp_avg_sq`` in float16 (default False).
        loss_scale: checked and kept, but not applied, as in MindSpore.

    Follows ``nn/optim/adafactor.py`` (the graph MindSpore runs on Ascend and GPU). On
    CPU, MindSpore runs its ``FusedAdaFactor`` kernel instead, which also floors the
    column factors, the row mean and the second moments at 1e-30.
    """

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {
        **Optimizer.hyperparameter_rules,
        "eps": (nonnegative, nonnegative),
        "clip_threshold": positive,
        "decay_rate": in_open_unit_interval,
        "beta1": nonnegative,
    }
    flags = (*Optimizer.flags, "scale_parameter", "relative_step", "warmup_init", "compression")
    per_element_state = ("exp_avg",)

    def __init__(
        self,
        params: Any,
        learning_rate: Any = None,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        decay_rate: float = 0.8,
        beta1: float | None = 0.9,
        weight_decay: float = 0.0,
        scale_parameter: bool = True,
        relative_step: bool = True,
        warmup_init: bool = False,
        compression: bool = False,
        loss_scale: float = 1.0,
    ) -> None:
        cls = "AdaFactor"
        for name, flag in (  # first: the checks below branch on them
            ("scale_parameter", scale_parameter),
            ("relative_step", relative_step),
            ("warmup_init", warmup_init),
            ("compression", compression),
        ):
            check_flag(cls, name, flag)
        if learning_rate is not None and relative_step:
            raise ValueError(
                f"AdaFactor: learning_rate={describe(learning_rate)} cannot be combined with "
                "relative_step=True: give learning_rate=None, or relative_step=False"
            )
        if warmup_init and not relative_step:
            raise ValueError("AdaFactor: warmup_init=True needs relative_step=True")
        if learning_rate is None and not relative_step:
            raise ValueError("AdaFactor: relative_step=False needs a learning_rate, got None")
        if not isinstance(eps, (list, tuple)):
            raise TypeError(f"AdaFactor: eps must be a tuple of 2 floats, got {eps!r}")
        if len(eps) != 2:
            raise ValueError(f"AdaFactor: eps must have 2 values (eps1, eps2), got {eps!r}")
        for index, entry in enumerate(eps):
            check_number(cls, f"eps{index}", entry, nonnegative)
        check_number(cls, "clip_threshold", clip_threshold, positive)
        check_number(cls, "decay_rate", decay_rate, in_open_unit_interval)
        weight_decay = check_number(cls, "weight_decay", weight_decay, in_unit_interval)
        beta1 = check_number(cls, "beta1", 0.0 if beta1 is None else beta1, nonnegative, ints=True)
        learning_rate = 0.0 if learning_rate is None else learning_rate
        # a number may scale with the parameters; a tensor, per-step values or a
        # schedule may not (MindSpore's scale_lr)
        self.scale_lr = isinstance(learning_rate, (int, float))
        if not self.scale_lr and scale_parameter:
            warnings.warn(
                "AdaFactor: learning_rate is not a number, so scale_parameter is turned off, "
                "as MindSpore does",
                UserWarning,
                stacklevel=2,
            )
            scale_parameter = False
        super().__init__(
            learning_rate,
            params,
            weight_decay,
            loss_scale,
            eps=tuple(eps),
            clip_threshold=clip_threshold,
            decay_rate=decay_rate,
            beta1=beta1,
            scale_parameter=scale_parameter,
            relative_step=relative_step,
            warmup_init=warmup_init,
            compression=compression,
        )
        if self.is_group_lr:
            raise ValueError(
                "AdaFactor does not support group learning rates: MindSpore's AdaFactor "
                "ignores them (relative_step=True) or fails (relative_step=False); remove "
                "'lr' from the parameter groups"
            )
        ignored = [
            key
            for group in self.param_groups
            for key in ("weight_decay", "grad_centralization")
            if group[key] != self.defaults[key]
        ]
        if ignored:
            warnings.warn(
                f"AdaFactor: the groups' {sorted(set(ignored))} are ignored, as MindSpore's "
                "AdaFactor ignores them; weight_decay applies to every parameter",
                UserWarning,
                stacklevel=2,
            )
        self._weight_decay = weight_decay
        for group in self.param_groups:  # MindSpore makes its buffers at construction
            self._states(group, group["params"], group["beta1"])

    @property
    def weight_decay(self) -> float:
        r""":math:`\lambda`, as given (MindSpore's AdaFactor keeps its own ``weight_decay``)."""
        return self._weight_decay

    exp_avg = _state_tuple(
        "exp_avg",
        "The first moments (MindSpore's ``exp_avg``); a 0-d zero per parameter without beta1.",
        _scalar_zero,
    )
    exp_avg_sq = _state_tuple(
        "exp_avg_sq",
        "The full second moments of tensors with 0 or 1 dimensions (MindSpore's "
        "``exp_avg_sq``); a one-element zero for factored ones, as MindSpore keeps.",
        _one_zero,
    )
    exp_avg_sq_row = _state_tuple(
        "exp_avg_sq_row",
        "The row factors of tensors with 2+ dimensions (MindSpore's ``exp_avg_sq_row``); a "
        "one-element zero for others.",
        _one_zero,
    )
    exp_avg_sq_col = _state_tuple(
        "exp_avg_sq_col",
        "The column factors of tensors with 2+ dimensions (MindSpore's ``exp_avg_sq_col``); "
        "a one-element zero for others.",
        _one_zero,
    )

    def _states(self, group: dict[str, Any], params: list[Tensor], beta1: float) -> list[dict]:
        """Each parameter's state, made where missing: ``step``, ``exp_avg`` (with beta1),
        the factors of tensors with 2+ dimensions, the full second moment of others."""
        states = self._filled_state(params, {"exp_avg": 0.0} if beta1 > 0 else {}, step=True)
        for param, state in zip(params, states):
            if param.dim() > 1:
                if "exp_avg_sq_row" not in state:
                    state["exp_avg_sq_row"] = param.new_zeros(param.shape[:-1])
                    state["exp_avg_sq_col"] = param.new_zeros((*param.shape[:-2], param.shape[-1]))
            elif "exp_avg_sq" not in state:
                dtype = torch.float16 if group["compression"] else param.dtype
                state["exp_avg_sq"] = torch.zeros_like(param, dtype=dtype)
            elif group["compression"] and state["exp_avg_sq"].dtype != torch.float16:
                # load_state_dict casts state to the parameter's dtype; the values stored
                # were float16's, so this loses nothing
                state["exp_avg_sq"] = state["exp_avg_sq"].to(torch.float16)
        return states

    def construct(self, gradients: tuple[Tensor, ...]) -> Any:
        """MindSpore's AdaFactor step: the gradients as given, into each group's update."""
        return self._apply_groups(gradients)

    def _apply(
        self, group: dict[str, Any], values: dict[str, Any], params: list[Tensor], grads: list
    ) -> None:
        beta1 = values["beta1"]
        states = self._states(group, params, beta1)
        factored = [p.dim() > 1 for p in params]
        relative = self.scale_lr and group["relative_step"]
        eps1, eps2 = values["eps"]
        impl = self._impl_for(group, params, grads)
        update = adafactor_loop if impl == "loop" else adafactor_foreach
        update(
            params,
            grads,
            [s["exp_avg_sq_row"].unsqueeze(-1) if f else None for s, f in zip(states, factored)],
            [s["exp_avg_sq_col"].unsqueeze(-2) if f else None for s, f in zip(states, factored)],
            [None if f else s["exp_avg_sq"] for s, f in zip(states, factored)],
            [s["step"] for s in states],
            [s["exp_avg"] for s in states] if beta1 > 0 else None,
            lr=1e-2 if relative else f32(values["lr"]),
            beta2_decay=-f32(values["decay_rate"]),
            eps1=f32(eps1),
            eps2=f32(eps2),
            d=f32(values["clip_threshold"]),
            weight_decay=f32(self._weight_decay),
            maximize=False,
            beta1=f32(beta1),
            relative_step=relative,
            warmup_init=group["warmup_init"],
            scale_parameter=group["scale_parameter"] and self.scale_lr,
            add_eps1=True,
            decay_by_step_size=True,
        )
