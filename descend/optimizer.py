"""The descend ``Optimizer`` base: parameter groups, scheduled hyperparameters, torch-style state.

A descend optimizer is a :class:`torch.optim.Optimizer`, so it works wherever a torch
optimizer does (torch's LR schedulers, ``torch.amp.GradScaler``, hooks, checkpoints).
What the base adds:

- **Hyperparameters as data.** Each schedulable option may be a number, a one-element
  tensor, a sequence of per-step values or a schedule (see :mod:`descend.hyperparams`).
  Every parameter group counts its own steps in ``group["step"]`` and resolves its values
  at that count; :meth:`Optimizer.hyperparameters` shows the values in force.
- **Errors before effects.** Options are checked at construction, in
  :meth:`~Optimizer.add_param_group` and in :meth:`~Optimizer.load_state_dict`, and a step
  resolves and checks everything before it touches a parameter, so a step that raises
  leaves parameters and state as they were.
- **One implementation switch.** ``impl="loop"`` (the per-tensor reference) or
  ``impl="foreach"`` (multi-tensor); torch's ``foreach=``/``fused=`` keywords are accepted
  and translated, so descend is a drop-in.

A subclass declares its options (``hyperparameter_rules``, ``flags``), the state it keeps
per element (``per_element_state``), and implements :meth:`Optimizer._update`, which
gathers tensors and calls the algorithm's pure update function.
"""

from __future__ import annotations

import difflib
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any, ClassVar

import numpy as np
import torch

from descend.hyperparams import Rule, describe, is_step_sequence, resolve

Values = dict[str, Any]

# Keys that torch's own LR schedulers and SWALR write into parameter groups; counted as
# known, so that "base_momentum" is never taken for a misspelt "momentum".
SCHEDULER_KEYS = frozenset(
    {"initial_lr", "max_lr", "min_lr", "base_lr", "swa_lr", "base_momentum", "max_momentum"}
)
# On CPU, ``impl=None`` takes the multi-tensor path for groups whose tensors hold fewer
# elements than this on average, and the per-tensor loop otherwise (see Optimizer._impl).
CPU_FOREACH_MAX_MEAN_NUMEL = 16_384


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim gives ``state["step"]``: float64 under a float64 default."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def as_real(tensor: torch.Tensor) -> torch.Tensor:
    """A real view of a complex tensor (each element as a pair), else the tensor itself."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def per_device_and_dtype(update: Callable[..., None]) -> Callable[..., None]:
    """Run a multi-tensor update once per (device, dtype) of the tensors in its first list.

    ``torch._foreach_*`` ops want one device and dtype per call. The update's positional
    arguments are parallel lists (or None); entries it replaces in a bucket's lists (new
    state tensors, say) are written back into the caller's lists.
    """

    @functools.wraps(update)
    def wrapper(*lists: list | None, **scalars: Any) -> None:
        buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for index, tensor in enumerate(lists[0]):
            buckets.setdefault((tensor.device, tensor.dtype), []).append(index)
        if len(buckets) <= 1:
            update(*lists, **scalars)
            return
        for indices in buckets.values():
            parts = [None if lst is None else [lst[i] for i in indices] for lst in lists]
            update(*parts, **scalars)
            for lst, part in zip(lists, parts):
                if lst is not None:
                    for position, index in enumerate(indices):
                        lst[index] = part[position]

    return wrapper


def foreach_l2_grads(
    grads: list[torch.Tensor], params: list[torch.Tensor], weight_decay: float, maximize: bool
) -> list[torch.Tensor]:
    """The gradients a multi-tensor update steps along: negated when ``maximize``, plus
    ``weight_decay * param`` (L2). New tensors wherever they differ from the caller's
    gradients, which are never written."""
    grads = torch._foreach_neg(grads) if maximize else grads
    if weight_decay != 0:
        if maximize:  # already a copy
            torch._foreach_add_(grads, params, alpha=weight_decay)
        else:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
    return grads


def _where(index: int | None) -> str:
    return "" if index is None else f"param group {index}: "


class Optimizer(torch.optim.Optimizer):
    """Base class of every descend optimizer; a :class:`torch.optim.Optimizer`.

    Args:
        params: tensors, ``(name, tensor)`` pairs, or dicts defining parameter groups
            (``{"params": [...], "lr": 1e-2}``), as torch.optim accepts.
        defaults: the value of every option for groups that do not set it.
    """

    hyperparameter_rules: ClassVar[dict[str, Rule | tuple[Rule, ...]]] = {}
    """Schedulable options and the rule each resolved value must meet; a tuple of rules
    marks a tuple-valued option such as ``betas``, each of whose entries is schedulable."""
    flags: ClassVar[tuple[str, ...]] = ("maximize",)
    """Boolean options."""
    impls: ClassVar[tuple[str, ...]] = ("loop", "foreach")
    """Implementations this optimizer has; ``"loop"`` is the reference."""
    per_element_state: ClassVar[tuple[str, ...]] = ()
    """State entries shaped like their parameter (checked by ``load_state_dict``)."""
    sparse_grad: ClassVar[str] = "refused"
    """Sparse gradients: ``"refused"``, ``"accepted"`` (handled by the loop) or
    ``"required"`` (dense ones are refused, as SparseAdam does)."""

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        defaults = dict(defaults)
        self._translate_torch_flags(defaults, None)
        self._check_options(defaults, step=0, where="")
        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params must be an iterable of tensors, (name, tensor) pairs or dicts, got a "
                f"single tensor of shape {tuple(params.shape)}; wrap it in a list: [tensor]"
            )
        params = list(params)
        if not params:
            raise ValueError("params is empty: the optimizer got no parameters to optimize")
        super().__init__(params, defaults)

    # ----------------------------------------------------------------------------------
    # Options: translation, checks and resolution
    # ----------------------------------------------------------------------------------

    def _translate_torch_flags(self, options: dict[str, Any], index: int | None) -> None:
        """Replace torch.optim's ``foreach``/``fused``/``capturable``/``differentiable``
        keys in ``options`` by descend's ``impl``."""
        where = _where(index)
        foreach = options.pop("foreach", None)
        fused = options.pop("fused", None)
        options.pop("capturable", None)  # no effect: descend keeps step counts on the host
        differentiable = options.pop("differentiable", False)
        if differentiable:
            raise ValueError(
                f"{where}differentiable=True is not supported: descend updates parameters "
                "in place, outside autograd"
            )
        if foreach and fused:
            raise ValueError(f"{where}foreach=True and fused=True cannot be used together")
        if fused:
            wanted = None  # the fastest implementation descend has
        elif foreach is None:
            wanted = None
        else:
            wanted = "foreach" if foreach else "loop"
        impl = options.get("impl")
        if wanted is not None and impl is not None and impl != wanted:
            raise ValueError(
                f"{where}impl={impl!r} contradicts foreach={foreach!r}; give one of them"
            )
        if impl is None and wanted is not None:
            options["impl"] = wanted

    def _check_options(self, options: dict[str, Any], step: int, where: str) -> Values:
        """Check flags, ``impl`` and every hyperparameter at ``step``; return the values.

        Tuple-valued options given as a list or a tensor (``betas=[0.9, 0.99]``) become
        tuples here, as torch accepts them.
        """
        for name, rule in self.hyperparameter_rules.items():
            if isinstance(rule, tuple) and isinstance(options.get(name), (list, torch.Tensor)):
                options[name] = tuple(options[name])
        for flag in self.flags:
            if isinstance(options.get(flag), np.bool_):
                options[flag] = bool(options[flag])
            if flag in options and not isinstance(options[flag], bool):
                value = options[flag]
                raise TypeError(f"{where}{flag} must be True or False, got {value!r}")
        impl = options.get("impl")
        if impl is not None and impl not in self.impls:
            raise ValueError(
                f"{where}impl must be one of {', '.join(map(repr, self.impls))} or None, "
                f"got {impl!r}"
            )
        for name, value in options.items():
            if name in self.hyperparameter_rules:
                self._check_sequence_entries(name, value, self.hyperparameter_rules[name], where)
        return self._resolve(options, step, where)

    def _check_sequence_entries(self, name: str, value: Any, rule: Any, where: str) -> None:
        """Check every entry of a per-step sequence up front, not only when it is reached."""
        if isinstance(rule, tuple):
            if not isinstance(value, (tuple, list)) or len(value) != len(rule):
                raise TypeError(
                    f"{where}{name} must be a tuple of {len(rule)} values, got {value!r}"
                )
            for position, (entry, entry_rule) in enumerate(zip(value, rule)):
                self._check_sequence_entries(f"{name}[{position}]", entry, entry_rule, where)
            return
        if is_step_sequence(value):
            if len(value) == 0:
                raise ValueError(f"{where}{name} is an empty sequence of per-step values")
            if _all_within(value, rule):
                return
            for step in range(len(value)):  # find and name the first bad entry
                rule(f"{where}{name}[{step}]", resolve(f"{where}{name}", value, step))

    def _resolve(self, options: dict[str, Any], step: int, where: str) -> Values:
        values: Values = {}
        for name, rule in self.hyperparameter_rules.items():
            if name not in options:
                continue
            value = options[name]
            if isinstance(rule, tuple):
                values[name] = tuple(
                    None
                    if entry is None
                    else self._resolve_one(f"{name}[{i}]", entry, step, r, where)
                    for i, (entry, r) in enumerate(zip(value, rule))
                )
            else:
                values[name] = self._resolve_one(name, value, step, rule, where)
        self._check_values(values, options, where)
        return values

    @staticmethod
    def _resolve_one(name: str, value: Any, step: int, rule: Rule, where: str) -> float:
        resolved = resolve(f"{where}{name}", value, step)
        if is_step_sequence(value) or callable(value):
            rule(f"{where}{name} (at step {step})", resolved)
        else:
            rule(f"{where}{name}", resolved)
        return resolved

    def _check_values(self, values: Values, options: dict[str, Any], where: str) -> None:
        """Checks that relate several options (e.g. nesterov needs momentum); override."""

    def hyperparameters(self, group: int = 0, step: int | None = None) -> Values:
        """The values in force for parameter group ``group``: what its next step uses.

        Schedules and per-step sequences are evaluated at the group's step count (or at
        ``step``, when given), so this is how to read a scheduled ``lr``:
        ``optimizer.hyperparameters()["lr"]``. When a per-step sequence has no value for
        the next step, this raises ``IndexError`` as that step would; ``step=`` reads any
        other step, such as the last one taken.
        """
        options = self.param_groups[group]
        return self._resolve(options, options["step"] if step is None else step, _where(group))

    # ----------------------------------------------------------------------------------
    # Parameter groups
    # ----------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group, with options falling back to the defaults.

        Checks everything first, so a rejected group leaves the optimizer unchanged. As in
        torch, the dict given becomes the group (it is filled in place).
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        index = len(self.param_groups)
        where = _where(index)
        if "params" not in param_group:
            raise ValueError(f"{where}the dict has no 'params' entry")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, set):
            raise TypeError(
                f"{where}params must be an ordered collection (a list), not a set: a set's "
                "order changes between runs"
            )
        group["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        self._translate_torch_flags(group, index)
        known = set(self.defaults) | {"params", "param_names", "step"} | SCHEDULER_KEYS
        for key in sorted(set(group) - known):
            # Extra keys are carried along, as torch does (tools keep "name" or "lr_scale"
            # in groups); one that looks like a misspelt option is refused.
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.8)
            if close:
                raise ValueError(
                    f"{where}unknown option {key!r} for {type(self).__name__}: did you mean "
                    f"{close[0]!r}? Its options are {', '.join(sorted(self.defaults))}"
                )
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        group.setdefault("step", 0)
        self._check_params(group["params"], index)
        self._check_options(group, group["step"], where)
        param_group.clear()
        param_group.update(group)
        super().add_param_group(param_group)

    def _check_params(self, entries: list, index: int) -> None:
        where = _where(index)
        seen = set(chain.from_iterable(g["params"] for g in self.param_groups))
        for position, entry in enumerate(entries):
            name = f"parameter {position}"
            if isinstance(entry, tuple) and len(entry) == 2:
                name = f"parameter {entry[0]!r}"
                entry = entry[1]
            if not isinstance(entry, torch.Tensor):
                raise TypeError(f"{where}{name} must be a tensor, got {type(entry).__name__}")
            if not (entry.is_leaf or entry.retains_grad):
                raise ValueError(
                    f"{where}{name} (shape {tuple(entry.shape)}) is not a leaf tensor; "
                    "optimize the tensor it was computed from, or detach it"
                )
            if entry in seen:
                raise ValueError(
                    f"{where}{name} (shape {tuple(entry.shape)}) is already in a parameter "
                    "group; a tensor may belong to one group only"
                )

    # ----------------------------------------------------------------------------------
    # The step
    # ----------------------------------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the parameters once; return what ``closure`` (if given) returned.

        ``closure`` re-evaluates the model and returns the loss; it runs with gradients
        enabled before the update.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            work = [self._prepare(index, group) for index, group in enumerate(self.param_groups)]
            for group, values, params in work:
                if params:
                    self._update(group, values, params)
                group["step"] += 1
        return loss

    def _prepare(self, index: int, group: dict[str, Any]) -> tuple[dict, Values, list]:
        """Resolve and check everything a group's update needs, changing nothing."""
        where = _where(index)
        values = self._resolve(group, group["step"], where)
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if p.grad.is_sparse and self.sparse_grad == "refused":
                raise RuntimeError(
                    f"{where}{type(self).__name__} does not support sparse gradients; a "
                    f"parameter of shape {tuple(p.shape)} has one"
                )
            if not p.grad.is_sparse and self.sparse_grad == "required":
                raise RuntimeError(
                    f"{where}{type(self).__name__} needs sparse gradients, as from "
                    f"nn.Embedding(sparse=True); a parameter of shape {tuple(p.shape)} has a "
                    "dense one"
                )
            if p.grad.shape != p.shape:
                raise RuntimeError(
                    f"{where}a gradient of shape {tuple(p.grad.shape)} belongs to a parameter "
                    f"of shape {tuple(p.shape)}"
                )
        if params and params[0].is_cuda and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                f"{type(self).__name__}.step cannot be captured in a CUDA graph: descend "
                "computes step-dependent scalars on the host"
            )
        return group, values, params

    def _update(self, group: dict[str, Any], values: Values, params: list[torch.Tensor]) -> None:
        """Apply one update to ``params`` (those of ``group`` with a gradient)."""
        raise NotImplementedError

    def _lazy_state(self, params: Sequence[torch.Tensor], zeros: Iterable[str]) -> list[dict]:
        """Each parameter's state, given a ``step`` counter (a 0-d tensor, as torch keeps
        it) and zero tensors shaped like the parameter under the names in ``zeros``, where
        they are missing: at a parameter's first step, or when an option that needs one
        (AMSGrad, say) is switched on later."""
        zeros = tuple(zeros)
        states = []
        for param in params:
            state = self.state[param]
            if "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
            for name in zeros:
                if name not in state:
                    state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)
            states.append(state)
        return states

    def _impl(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> str:
        """The implementation for this group: its ``impl``, or the fastest one.

        Sparse gradients always take the loop. Otherwise, on an accelerator the
        multi-tensor path wins; on CPU it wins only for small tensors, where it saves
        per-tensor overhead, while large ones run faster one at a time, each still in
        cache (benchmarks/step_time.py: loop 2-20% faster on ResNet-50 shapes, foreach
        10-25% faster on 2,000 tensors of 1,000 elements; even near 16k elements).
        """
        chosen = group.get("impl")
        if any(p.grad.is_sparse for p in params):
            return "loop"
        if chosen is not None:
            return chosen
        if "foreach" not in self.impls:
            return "loop"
        if params[0].device.type != "cpu":
            return "foreach"
        mean_numel = sum(p.numel() for p in params) / len(params)
        return "foreach" if mean_numel < CPU_FOREACH_MAX_MEAN_NUMEL else "loop"

    # ----------------------------------------------------------------------------------
    # State dict
    # ----------------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load optimizer state, from descend or torch.optim: both use the same format.

        Everything is checked before anything changes; a state_dict that does not fit
        this optimizer raises ``ValueError`` saying what does not fit.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self._check_state_dict(state_dict)
        pre_hooks = self._optimizer_load_state_dict_pre_hooks
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()  # they have run already
        try:
            super().load_state_dict(state_dict)
        finally:
            self._optimizer_load_state_dict_pre_hooks = pre_hooks

    def _check_state_dict(self, state_dict: Any) -> None:
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups' entries")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} parameter groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        params_by_id: dict[Any, torch.Tensor] = {}
        for index, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"param group {index} of the state_dict has {len(saved['params'])} "
                    f"parameters, this optimizer's has {len(group['params'])}"
                )
            params_by_id.update(zip(saved["params"], group["params"]))
            options = {k: v for k, v in saved.items() if k not in ("params", "param_names")}
            self._translate_torch_flags(options, index)
            step = options.get("step", self._step_from_state(saved["params"], state_dict["state"]))
            try:
                self._check_options(options, step, _where(index))
            except IndexError:
                # a per-step sequence ends at the saved step (a checkpoint taken at the end
                # of a run): its entries are checked, and the other values at step 0
                self._check_options(options, 0, _where(index))
        for key, entries in state_dict["state"].items():
            param = params_by_id.get(key)
            if param is None or not isinstance(entries, dict):
                continue
            for name in self.per_element_state:
                value = entries.get(name)
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor) or value.shape != param.shape:
                    found = (
                        f"has shape {tuple(value.shape)}"
                        if isinstance(value, torch.Tensor)
                        else f"is a {type(value).__name__}"
                    )
                    raise ValueError(
                        f"state_dict state for parameter {key}: {name} {found}, the parameter "
                        f"has shape {tuple(param.shape)}"
                    )

    @staticmethod
    def _step_from_state(param_keys: Iterable, state: dict) -> int:
        """A group's step count recovered from per-parameter ``step`` entries (torch's
        state_dicts have no group count)."""
        steps = [
            int(state[key]["step"])
            for key in param_keys
            if isinstance(state.get(key), dict) and "step" in state[key]
        ]
        return max(steps, default=0)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._translate_torch_flags(self.defaults, None)  # torch's __setstate__ adds one
        for param_state in self.state.values():
            step = param_state.get("step") if isinstance(param_state, dict) else None
            if step is not None and not isinstance(step, torch.Tensor):
                # torch.optim before 1.12 saved plain numbers; torch converts them too
                param_state["step"] = torch.tensor(float(step), dtype=scalar_dtype())
        for index, group in enumerate(self.param_groups):
            self._translate_torch_flags(group, index)
            for name, default in self.defaults.items():
                group.setdefault(name, default)
            if "step" not in group:
                group["step"] = self._step_from_state(group["params"], self.state)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for index, group in enumerate(self.param_groups):
            count = sum(p.numel() for p in group["params"])
            lines.append(
                f"Parameter Group {index} ({len(group['params'])} tensors, {count} elements)"
            )
            in_force = None
            for key in sorted(group):
                if key in ("params", "param_names"):
                    continue
                text = describe(group[key])
                if key in self.hyperparameter_rules and _is_dynamic(group[key]):
                    if in_force is None:
                        try:
                            in_force = self.hyperparameters(index)
                        except Exception as error:  # a repr must not fail on a bad schedule
                            in_force = {"error": str(error)}
                    now = in_force.get(key, in_force.get("error"))
                    text += f" (now {now})"
                lines.append(f"    {key}: {text}")
        lines.append(")")
        return "\n".join(lines)


def _all_within(sequence: Any, rule: Rule) -> bool:
    """Whether every entry of a per-step sequence meets ``rule``, checked at once.

    Rules accept an interval of numbers, so checking the smallest and largest entries
    (and the absence of NaN) suffices. False when some entry fails or is not a number; the
    caller then scans the entries one by one to name the first bad one.
    """
    try:
        if isinstance(sequence, torch.Tensor):
            numbers = sequence.detach().to("cpu", torch.float64).numpy()
        else:
            numbers = np.asarray(
                [float(x) if isinstance(x, torch.Tensor) else x for x in sequence],
                dtype=np.float64,
            )
        if numbers.ndim != 1 or np.isnan(numbers).any():
            return False
        rule("", float(numbers.min()))
        rule("", float(numbers.max()))
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def _is_dynamic(value: Any) -> bool:
    if isinstance(value, tuple):
        return any(_is_dynamic(v) for v in value)
    return is_step_sequence(value) or (callable(value) and not isinstance(value, torch.Tensor))
